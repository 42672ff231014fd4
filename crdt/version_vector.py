"""``VersionVector``: how many writes of each node a replica has seen."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ._checks import check_int, check_node, wire_errors
from .dot import Dot
from .errors import LocalProtocolError


class VersionVector(Mapping[str, int]):
    """An immutable map node -> counter; absent nodes count as 0.

    ``vv[node] = n`` means "I have seen ``node``'s writes 1..n". Merge is the
    pointwise maximum, which is commutative, associative and idempotent.
    Zero counters are never stored, so equal vectors have equal contents.
    """

    __slots__ = ("_counters", "_hash")

    def __init__(self, counters: Mapping[str, int] | None = None) -> None:
        clean: dict[str, int] = {}
        if counters is not None:
            if not isinstance(counters, Mapping):
                raise LocalProtocolError(f"crdt: VersionVector needs a mapping, got {type(counters).__name__}")
            for node, counter in counters.items():
                check_node(node, "version vector node")
                if check_int(counter, f"version vector counter for {node!r}"):
                    clean[node] = counter
        self._counters = clean
        self._hash: int | None = None

    @classmethod
    def _trusted(cls, counters: dict[str, int]) -> VersionVector:
        # Internal fast path: ``counters`` is already clean and owned by the new vector.
        vv = cls.__new__(cls)
        vv._counters = counters
        vv._hash = None
        return vv

    def __getitem__(self, node: str) -> int:
        return self._counters[node]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counters)

    def __len__(self) -> int:
        return len(self._counters)

    def get(self, node: str, default: int = 0) -> int:  # type: ignore[override]
        """The counter for ``node``; 0 if it never wrote."""
        return self._counters.get(node, default)

    def increment(self, node: str) -> tuple[VersionVector, Dot]:
        """The vector with ``node``'s next write added, and that write's dot."""
        dot = Dot(node, self._counters.get(node, 0) + 1)
        counters = dict(self._counters)
        counters[node] = dot.counter
        return VersionVector._trusted(counters), dot

    def merge(self, other: VersionVector) -> VersionVector:
        """The pointwise maximum of both vectors."""
        if not isinstance(other, VersionVector):
            raise LocalProtocolError(f"crdt: can only merge a VersionVector, got {type(other).__name__}")
        counters = dict(self._counters)
        for node, counter in other._counters.items():
            if counter > counters.get(node, 0):
                counters[node] = counter
        return VersionVector._trusted(counters)

    def contains(self, dot: Dot) -> bool:
        """Whether the write ``dot`` is covered by this vector."""
        return dot.counter <= self._counters.get(dot.node, 0)

    def dominates(self, other: VersionVector) -> bool:
        """Whether this vector has seen everything ``other`` has (``>=`` pointwise)."""
        mine = self._counters
        return all(mine.get(node, 0) >= counter for node, counter in other._counters.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return self._counters == other._counters

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._counters.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"VersionVector({dict(sorted(self._counters.items()))!r})"

    def to_wire(self) -> dict:
        """``{node: counter}`` with positive counters, sorted by node."""
        return dict(sorted(self._counters.items()))

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "version vector") -> VersionVector:
        """Read ``{node: counter}``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            if not isinstance(obj, dict):
                raise LocalProtocolError(f"crdt: expected a map {{node: counter}}, got {type(obj).__name__}")
            for node, counter in obj.items():
                check_node(node, "version vector node")
                check_int(counter, f"counter for {node!r}", minimum=1)
            return cls._trusted(dict(obj))
