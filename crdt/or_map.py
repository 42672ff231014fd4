"""``ORMap``: an add-wins observed-remove map of last-writer-wins registers.

Theory of operation (Almeida et al. 2018, §7.2 "add-wins map" built on the
dot-store join of §4.4, and Riak's ``riak_dt_map``): the state is a map
dot -> ``Entry`` (every put that is still live, with its key, JSON value and
HLC timestamp) and a causal context of every operation seen. A key is in the
map while it has a live entry; its value is the live entry that wins under
last-writer-wins (``Entry.beats``: higher timestamp, ties by node id).

- ``put(key, value, ts)``: a fresh dot of ``ts.node``; the delta holds the new
  entry and, in its context, its dot plus the dots of ``key``'s live entries
  here (a put supersedes what it saw, whatever their timestamps: timestamps
  only order *concurrent* puts).
- ``remove(node, key)``: a context naming ``key``'s live dots and one fresh
  dot of ``node``; no entries.
- merge: the dot-store join, as in ``ORSet``. A remove kills only the puts it
  saw; a concurrent put survives (*add wins*).

Removal does not resurrect: each value lives in the entry of the put that
wrote it, so killing the put kills the value with it. (A map keeping one
merged register per key would bring back a value a replica had removed when a
concurrent put of an *older* value arrived.) The register is an LWW register;
nested counters or sets are later work.

No tombstones: a removal lives on only in the compact causal context. As in
``ORSet``, a remove takes a dot of its own so the context names every
operation; ``delta_since`` answers nothing to a peer that has seen all of it
and the whole live state otherwise.

Precondition of ``delta_since`` (found by probing, not yet handled): its
"nothing" answer is exact between replicas that are causally closed — built
from their own mutations, whole states and ``delta_since`` answers. A pushed
mutator delta applied *ahead of its causal past* registers the dots it
supersedes without what those superseded, so two replicas can hold equal
contexts and different live dots, which comparing contexts never repairs
(a whole-state merge does). A sync core must deliver these deltas in causal
order per source (the delta-intervals of Almeida et al. §6) or fall back to
whole states.

Values are immutable; a mutator returns the delta and the new state is
``m.apply_delta(delta)`` (Almeida et al.: ``X' = X ⊔ mδ(X)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._checks import check_fields, check_node, check_sequence, wire_errors
from ._dot_store import CausalDotStore, check_size, check_type, join_dots, next_dot
from .causal_context import CausalContext
from .dot import Dot
from .entry import Entry
from .errors import LocalProtocolError
from .timestamp import Timestamp


def _pick(a: Entry, b: Entry) -> Entry:
    # The same dot twice is the same put; a peer that reused one still gets one winner everywhere.
    return a if a == b or a.beats(b) else b


class ORMap(CausalDotStore):
    """An immutable add-wins map of string keys to LWW registers; ``ORMap()`` is the empty one."""

    __slots__ = ("_entries", "_context")

    def __init__(self, entries: Iterable[Entry] = (), context: CausalContext | None = None) -> None:
        context = CausalContext() if context is None else context
        if not isinstance(context, CausalContext):
            raise LocalProtocolError(f"crdt: ORMap.context must be a CausalContext, got {type(context).__name__}")
        clean: dict[Dot, Entry] = {}
        for entry in entries:
            if not isinstance(entry, Entry):
                raise LocalProtocolError(f"crdt: ORMap entries must be Entry values, got {type(entry).__name__}")
            if entry.dot in clean:
                raise LocalProtocolError(f"crdt: ORMap holds two entries with dot {entry.dot.to_wire()}")
            if not context.contains(entry.dot):
                raise LocalProtocolError(f"crdt: ORMap entry {entry.key!r} has a dot outside the map's context")
            clean[entry.dot] = entry
        check_size(clean, "ORMap")
        self._entries = clean
        self._context = context

    @property
    def context(self) -> CausalContext:
        """Every operation this replica has seen: what a peer passes to ``delta_since``."""
        return self._context

    def live_entries(self) -> list[Entry]:
        """Every live entry (concurrent puts of a key each have one), sorted by key then dot."""
        return sorted(self._entries.values(), key=lambda e: (e.key, e.dot))

    def get(self, key: str) -> Entry | None:
        """The winning entry of ``key``, or None if the key is absent."""
        best: Entry | None = None
        for entry in self._entries.values():
            if entry.key == key and (best is None or entry.beats(best)):
                best = entry
        return best

    def items(self) -> list[tuple[str, Any]]:
        """``(key, winning value)`` pairs, sorted by key."""
        winners: dict[str, Entry] = {}
        for entry in self._entries.values():
            held = winners.get(entry.key)
            if held is None or entry.beats(held):
                winners[entry.key] = entry
        return [(key, winners[key].value) for key in sorted(winners)]

    def keys(self) -> list[str]:
        """The present keys, sorted."""
        return sorted({entry.key for entry in self._entries.values()})

    def __contains__(self, key: object) -> bool:
        return any(entry.key == key for entry in self._entries.values())

    def __len__(self) -> int:
        return len({entry.key for entry in self._entries.values()})

    def _dots_of(self, key: str) -> list[Dot]:
        return [dot for dot, entry in self._entries.items() if entry.key == key]

    def put(self, key: str, value: Any, ts: Timestamp) -> ORMap:
        """The delta of ``ts.node`` writing ``value`` under ``key`` at ``ts`` (from its clock)."""
        if not isinstance(ts, Timestamp):
            raise LocalProtocolError(f"crdt: put() needs a Timestamp, got {type(ts).__name__}")
        dot = next_dot(self._context, ts.node)
        entry = Entry(key=key, value=value, ts=ts, dot=dot)
        return ORMap((entry,), CausalContext.from_dots([dot, *self._dots_of(key)]))

    def remove(self, node: str, key: str) -> ORMap:
        """The delta of ``node`` removing ``key`` as this replica sees it (empty if absent)."""
        if not isinstance(key, str):
            raise LocalProtocolError(f"crdt: remove() needs a string key, got {type(key).__name__}")
        seen = self._dots_of(key)
        if not seen:
            return ORMap()
        return ORMap((), CausalContext.from_dots([next_dot(self._context, check_node(node)), *seen]))

    def merge(self, other: ORMap) -> ORMap:
        """The dot-store join of both maps (see the module docstring)."""
        check_type(other, ORMap, "merge")
        out = ORMap.__new__(ORMap)
        out._entries = join_dots(self._entries, self._context, other._entries, other._context, _pick)
        out._context = self._context.merge(other._context)
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ORMap):
            return NotImplemented
        return self._entries == other._entries and self._context == other._context

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ORMap({self.items()!r}, {self._context!r})"

    def to_wire(self) -> dict:
        """``{"entries": [[key, value, ts, dot], ...], "context": context}``, sorted by key then dot."""
        return {"entries": [entry.to_wire() for entry in self.live_entries()], "context": self._context.to_wire()}

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "or_map") -> ORMap:
        """Read ``{"entries", "context"}``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            fields = check_fields(obj, ("entries", "context"))
            items = check_sequence(fields["entries"], "of entries")
            check_size(items, f"{where}.entries")
        entries = [Entry.from_wire(item, where=f"{where}.entries[{i}]") for i, item in enumerate(items)]
        context = CausalContext.from_wire(fields["context"], where=f"{where}.context")
        with wire_errors(where):
            return cls(entries, context)
