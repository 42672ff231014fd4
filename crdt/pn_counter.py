"""``PNCounter``: a counter that goes up and down, with one entry per node.

Theory of operation (Shapiro et al. 2011, §3.1.2): two grow-only counters per
node, ``p`` for increments and ``n`` for decrements; the value is
``sum(p) - sum(n)``. Merge is the pointwise maximum of both, so it is
commutative, associative and idempotent.

Only node X changes X's entry, and every change raises ``p + n``, so
``p + n`` per node orders X's entries like a version vector: ``version`` is
what a peer sends, and ``delta_since(version)`` returns the entries ahead of
it. ``p + n`` must fit in 63 bits.

Values are immutable; a mutator returns the delta and the new state is
``counter.apply_delta(delta)`` (Almeida et al. 2018: ``X' = X ⊔ mδ(X)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._checks import MAX_INT, check_int, check_node, check_sequence, wire_errors
from ._dot_store import check_size, check_type
from .errors import LocalProtocolError
from .version_vector import VersionVector


class PNCounter:
    """An immutable increment/decrement counter: node -> ``(p, n)``, that node's ups and downs."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Mapping[str, tuple[int, int]] | None = None) -> None:
        clean: dict[str, tuple[int, int]] = {}
        if entries is not None:
            if not isinstance(entries, Mapping):
                raise LocalProtocolError(f"crdt: PNCounter needs a mapping, got {type(entries).__name__}")
            check_size(entries, "PNCounter")
            for node, pair in entries.items():
                check_node(node, "PNCounter node")
                p, n = check_sequence(pair, "[p, n]", 2)
                check_int(p, f"PNCounter p of {node!r}")
                check_int(n, f"PNCounter n of {node!r}")
                if p + n > MAX_INT:
                    raise LocalProtocolError(f"crdt: PNCounter entry of {node!r} has p + n above {MAX_INT}")
                if p or n:
                    clean[node] = (p, n)
        self._entries = clean

    @property
    def value(self) -> int:
        """Increments minus decrements, over every node."""
        return sum(p - n for p, n in self._entries.values())

    @property
    def version(self) -> VersionVector:
        """``p + n`` per node: what a peer passes to ``delta_since``."""
        return VersionVector._trusted({node: p + n for node, (p, n) in self._entries.items()})

    def entry_of(self, node: str) -> tuple[int, int]:
        """``node``'s ``(p, n)`` (``(0, 0)`` if it never changed the counter)."""
        return self._entries.get(node, (0, 0))

    def increment(self, node: str, amount: int = 1) -> PNCounter:
        """The delta of ``node`` adding ``amount`` (negative to decrement, never 0)."""
        check_node(node)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise LocalProtocolError(f"crdt: PNCounter increment must be a non-zero int, got {amount!r}")
        p, n = self._entries.get(node, (0, 0))
        if amount > 0:
            p += amount
        else:
            n -= amount
        return PNCounter({node: (p, n)})

    def decrement(self, node: str, amount: int = 1) -> PNCounter:
        """The delta of ``node`` subtracting ``amount`` (at least 1)."""
        check_int(amount, "PNCounter decrement", minimum=1)
        return self.increment(node, -amount)

    def merge(self, other: PNCounter) -> PNCounter:
        """The pointwise maximum of both counters' ``p`` and ``n``."""
        check_type(other, PNCounter, "merge")
        entries = dict(self._entries)
        for node, (p, n) in other._entries.items():
            mine = entries.get(node)
            entries[node] = (p, n) if mine is None else (max(p, mine[0]), max(n, mine[1]))
        return _trusted(entries)

    def apply_delta(self, delta: PNCounter) -> PNCounter:
        """This state joined with ``delta`` (deltas are counters too)."""
        check_type(delta, PNCounter, "apply_delta")
        return self.merge(delta)

    def delta_since(self, since: VersionVector) -> PNCounter:
        """The entries ahead of ``since`` (a peer's ``version``); empty when the peer is current."""
        if not isinstance(since, VersionVector):
            raise LocalProtocolError(f"crdt: delta_since() needs a VersionVector, got {type(since).__name__}")
        return _trusted({node: pn for node, pn in self._entries.items() if sum(pn) > since.get(node)})

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PNCounter):
            return NotImplemented
        return self._entries == other._entries

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PNCounter({dict(sorted(self._entries.items()))!r})"

    def to_wire(self) -> dict:
        """``{node: [p, n]}``, sorted by node."""
        return {node: list(pn) for node, pn in sorted(self._entries.items())}

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "pn_counter") -> PNCounter:
        """Read ``{node: [p, n]}``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            if not isinstance(obj, dict):
                raise LocalProtocolError(f"crdt: expected a map {{node: [p, n]}}, got {type(obj).__name__}")
            return cls(obj)


def _trusted(entries: dict[str, tuple[int, int]]) -> PNCounter:
    counter = PNCounter.__new__(PNCounter)
    counter._entries = entries
    return counter
