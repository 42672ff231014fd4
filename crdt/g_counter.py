"""``GCounter``: a grow-only counter with one entry per node.

Theory of operation (Shapiro et al., "A comprehensive study of Convergent and
Commutative Replicated Data Types", 2011, §3.1.1; the delta form is Almeida
et al. 2018 §3): each node only ever raises its own entry; the value is the
sum of the entries. Merge is the pointwise maximum, so it is commutative,
associative and idempotent, and a duplicated or re-ordered delta changes
nothing.

Each entry only grows, so the entries themselves are a version vector:
``version`` is what a peer sends, and ``delta_since(version)`` returns the
entries that are ahead of it.

Values are immutable. A mutator returns the delta; the new state is
``counter.apply_delta(delta)`` (the delta-mutator of Almeida et al.:
``X' = X ⊔ mδ(X)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._checks import check_int, check_node, wire_errors
from ._dot_store import check_size, check_type
from .errors import LocalProtocolError
from .version_vector import VersionVector


class GCounter:
    """An immutable grow-only counter: node -> that node's total of increments."""

    __slots__ = ("_counts",)

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        clean: dict[str, int] = {}
        if counts is not None:
            if not isinstance(counts, Mapping):
                raise LocalProtocolError(f"crdt: GCounter needs a mapping, got {type(counts).__name__}")
            check_size(counts, "GCounter")
            for node, count in counts.items():
                check_node(node, "GCounter node")
                if check_int(count, f"GCounter count of {node!r}"):
                    clean[node] = count
        self._counts = clean

    @property
    def value(self) -> int:
        """The counter's value: the sum of every node's entry."""
        return sum(self._counts.values())

    @property
    def version(self) -> VersionVector:
        """The entries as a version vector: what a peer passes to ``delta_since``."""
        return VersionVector._trusted(dict(self._counts))

    def count_of(self, node: str) -> int:
        """``node``'s entry (0 if it never incremented)."""
        return self._counts.get(node, 0)

    def increment(self, node: str, amount: int = 1) -> GCounter:
        """The delta of ``node`` adding ``amount`` (at least 1); apply it to get the new state."""
        check_node(node)
        check_int(amount, "GCounter increment", minimum=1)
        total = self._counts.get(node, 0) + amount
        check_int(total, f"GCounter count of {node!r}")
        return GCounter({node: total})

    def merge(self, other: GCounter) -> GCounter:
        """The pointwise maximum of both counters."""
        check_type(other, GCounter, "merge")
        counts = dict(self._counts)
        for node, count in other._counts.items():
            if count > counts.get(node, 0):
                counts[node] = count
        return _trusted(counts)

    def apply_delta(self, delta: GCounter) -> GCounter:
        """This state joined with ``delta`` (deltas are counters too)."""
        check_type(delta, GCounter, "apply_delta")
        return self.merge(delta)

    def delta_since(self, since: VersionVector) -> GCounter:
        """The entries ahead of ``since`` (a peer's ``version``); empty when the peer is current."""
        if not isinstance(since, VersionVector):
            raise LocalProtocolError(f"crdt: delta_since() needs a VersionVector, got {type(since).__name__}")
        return _trusted({node: count for node, count in self._counts.items() if count > since.get(node)})

    def __bool__(self) -> bool:
        return bool(self._counts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GCounter):
            return NotImplemented
        return self._counts == other._counts

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GCounter({dict(sorted(self._counts.items()))!r})"

    def to_wire(self) -> dict:
        """``{node: count}``, sorted by node, positive counts only."""
        return dict(sorted(self._counts.items()))

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "g_counter") -> GCounter:
        """Read ``{node: count}``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            if not isinstance(obj, dict):
                raise LocalProtocolError(f"crdt: expected a map {{node: count}}, got {type(obj).__name__}")
            return cls(obj)


def _trusted(counts: dict[str, int]) -> GCounter:
    counter = GCounter.__new__(GCounter)
    counter._counts = counts
    return counter
