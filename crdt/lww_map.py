"""``LWWMap``: a map of last-writer-wins registers with per-writer dots (the sensor-state map).

Theory of operation. The state is ``(entries, context)``: at most one entry
per key, and the causal context of every write this replica has seen. Merge
keeps, per key, the entry with the higher ``Timestamp`` and unions the
contexts; that join is commutative, associative and idempotent, so replicas
that have seen the same writes hold the same state whatever the order.

Timestamps decide who wins; dots decide who still needs what. The invariant
that makes ``delta_since`` correct:

    every dot in ``context`` belongs to a write that is either stored here or
    lost to the stored entry of its key (which has a higher timestamp).

So a peer that has seen a dot needs nothing for it, and a delta that carries
every entry whose dot the peer lacks may carry the sender's whole context:
the dots it names without entries are covered by entries the peer already
has or receives in the same delta (Almeida et al. 2018, §4 and §7).

A replica that lost its state must not write under its old node id before it
has re-synced: its counter would restart and reuse dots that peers have
already seen, and they would skip those writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from ._checks import check_node
from ._dot_set import DotSet
from .causal_context import CausalContext
from .delta import Delta
from .dot import Dot
from .entry import Entry
from .errors import LocalProtocolError
from .timestamp import Timestamp
from .version_vector import VersionVector


_DOT_OF = itemgetter(3)


class LWWMap:
    """A replica of the sensor-state map: ``put``/``get`` plus ``delta_since``/``apply_delta``."""

    __slots__ = ("_node", "_entries", "_seen", "_by_dot", "_tombstones")

    def __init__(self, node: str) -> None:
        self._node = check_node(node)
        self._entries: dict[str, Entry] = {}
        # The causal context, mutable (see ``DotSet``); ``context`` freezes it.
        self._seen = DotSet()
        # node -> dot counter -> key of the stored entry with that dot; lets
        # delta_since look at the missing dots instead of every entry.
        self._by_dot: dict[str, dict[int, str]] = {}
        self._tombstones = 0  # how many stored entries are tombstones

    @classmethod
    def restore(cls, node: str, entries: Iterable[Entry], context: CausalContext) -> LWWMap:
        """Rebuild a replica from persisted rows and the context saved with them."""
        replica = cls(node)
        if not isinstance(context, CausalContext):
            raise LocalProtocolError(f"crdt: restore() needs a CausalContext, got {type(context).__name__}")
        for entry in entries:
            if not isinstance(entry, Entry):
                raise LocalProtocolError(f"crdt: restore() got a {type(entry).__name__}, not an Entry")
            if entry.key in replica._entries:
                raise LocalProtocolError(f"crdt: restore() got two entries for key {entry.key!r}")
            if not context.contains(entry.dot):
                raise LocalProtocolError(
                    f"crdt: restored entry {entry.key!r} has dot {entry.dot.to_wire()} outside the restored "
                    "context; entries and context must be saved in the same transaction"
                )
            replica._store(entry, None)
        replica._seen = DotSet.of(context)
        return replica

    @property
    def node(self) -> str:
        """The node that writes through this replica."""
        return self._node

    @property
    def context(self) -> CausalContext:
        """Every write this replica has seen (persist it with the entries)."""
        return self._seen.freeze()

    def __len__(self) -> int:
        """How many keys hold a value (tombstones are not counted)."""
        return len(self._entries) - self._tombstones

    def __contains__(self, key: object) -> bool:
        entry = self._entries.get(key)  # type: ignore[call-overload]
        return entry is not None and not entry[4]

    def get(self, key: str) -> Entry | None:
        """The entry for ``key``, or None if it has none or was deleted."""
        entry = self._entries.get(key)
        return None if entry is None or entry[4] else entry

    def entries(self, prefix: str = "") -> list[Entry]:
        """Entries whose key starts with ``prefix``, sorted by key (tombstones left out)."""
        return [e for key in sorted(self._entries) if key.startswith(prefix) and not (e := self._entries[key])[4]]

    @property
    def tombstone_count(self) -> int:
        """How many stored entries are tombstones (kept as a count: no scan)."""
        return self._tombstones

    def tombstones(self) -> list[Entry]:
        """The stored tombstones, sorted by key."""
        return sorted((e for e in self._entries.values() if e[4]), key=lambda e: e.key)

    def forget_tombstones(self, seen_by_all: Callable[[Dot], bool]) -> list[Entry]:
        """Drop each tombstone whose write ``seen_by_all`` says every member has seen; returns them.

        The tombstone's dot stays in the context, so a peer that has not seen
        the delete is never sent it again — which is why only writes every
        current member has seen may go (the caller decides who that is).
        """
        gone = [e for e in self._entries.values() if e[4] and seen_by_all(e.dot)]
        for entry in gone:
            del self._entries[entry.key]
            by_counter = self._by_dot[entry.dot.node]
            del by_counter[entry.dot.counter]
            if not by_counter:
                del self._by_dot[entry.dot.node]
        self._tombstones -= len(gone)
        return gone

    def delete(self, key: str, ts: Timestamp) -> Delta:
        """Delete ``key`` at ``ts`` (from this node's clock) by writing its tombstone; returns the delta.

        A key this replica has not seen can be deleted too: the tombstone
        beats every older write of it that arrives later.
        """
        return self._write(key, None, ts, deleted=True)

    def put(self, key: str, value: Any, ts: Timestamp) -> Delta:
        """Write ``value`` under ``key`` at ``ts`` (from this node's clock); returns the write's delta.

        The delta carries just this entry and its dot, ready for ``SyncCore.local_write``.
        """
        return self._write(key, value, ts, deleted=False)

    def _write(self, key: str, value: Any, ts: Timestamp, *, deleted: bool) -> Delta:
        if not isinstance(key, str):
            raise LocalProtocolError(f"crdt: put() needs a string key, got {type(key).__name__}")
        if not isinstance(ts, Timestamp):
            raise LocalProtocolError(f"crdt: put() needs a Timestamp, got {type(ts).__name__}")
        if ts.node != self._node:
            raise LocalProtocolError(
                f"crdt: put() on {self._node!r}'s replica needs a timestamp from its own clock, "
                f"got one from {ts.node!r}"
            )
        current = self._entries.get(key)
        if current is not None and ts <= current.ts:
            raise LocalProtocolError(
                f"crdt: timestamp {ts.to_wire()} for {key!r} is not newer than the current entry's "
                f"{current.ts.to_wire()}; observe every entry learned from peers with "
                "HybridLogicalClock.observe before writing"
            )
        dot = Dot(self._node, self._seen.max_counter(self._node) + 1)
        entry = Entry(key=key, value=value, ts=ts, dot=dot, deleted=deleted)
        self._store(entry, current)
        self._seen.add(dot.node, dot.counter)
        return Delta._implicit((entry,), ())

    def delta_since(self, since: VersionVector | CausalContext) -> Delta:
        """What a peer that has seen ``since`` lacks: those entries plus the part of this replica's context above ``since``.

        Empty when the peer has seen everything this replica has.
        """
        if isinstance(since, VersionVector):
            since = DotSet.of(CausalContext(since))
        elif isinstance(since, CausalContext):
            since = DotSet.of(since)
        elif not isinstance(since, DotSet):
            raise LocalProtocolError(
                f"crdt: delta_since() needs a VersionVector or CausalContext, got {type(since).__name__}"
            )
        if self._seen.within(since):
            return Delta._explicit((), CausalContext())
        missing: list[Entry] = []
        seen = self._seen
        for node, by_counter in self._by_dot.items():
            floor = since.vv.get(node, 0)
            top = seen.max_counter(node)
            if top <= floor:
                continue
            if top - floor <= len(by_counter):
                counters: Iterable[int] = (c for c in range(floor + 1, top + 1) if c in by_counter)
            else:
                counters = (c for c in by_counter if c > floor)
            for counter in counters:
                if not since.contains(node, counter):
                    missing.append(self._entries[by_counter[counter]])
        missing.sort(key=lambda entry: entry.key)
        # Only the part of our context above ``since``: joined into a context holding ``since`` it
        # gives the same as our whole context, and an answer stays O(writers that moved).
        return Delta._explicit(tuple(missing), seen.above(since))

    def apply_delta(self, delta: Delta) -> list[Entry]:
        """Join ``delta`` into this replica; returns the entries that changed here (to persist)."""
        if not isinstance(delta, Delta):
            raise LocalProtocolError(f"crdt: apply_delta() needs a Delta, got {type(delta).__name__}")
        changed: list[Entry] = []
        entries = self._entries
        by_dot = self._by_dot
        for entry in delta._entries:
            key = entry[0]
            current = entries.get(key)
            if current is not None:
                # Index 2 is the timestamp: compare tuples directly, ``beats`` only breaks exact ties.
                if not (entry[2] > current[2] if entry[2] != current[2] else entry.beats(current)):
                    continue
                if entry[4] or current[4]:
                    self._tombstones += entry[4] - current[4]
                # _store, inlined (the hot path of every received write)
                old_node, old_counter = current[3]
                by_counter = by_dot.get(old_node)
                if by_counter is not None and by_counter.get(old_counter) == key:
                    del by_counter[old_counter]
                    if not by_counter:
                        del by_dot[old_node]
            elif entry[4]:
                self._tombstones += 1
            entries[key] = entry
            node, counter = entry[3]
            by_counter = by_dot.get(node)
            if by_counter is None:
                by_dot[node] = {counter: key}
            else:
                by_counter[counter] = key
            changed.append(entry)
        seen = self._seen
        if delta._is_implicit:
            pushed = delta._entries
            if len(pushed) == 1:
                node, counter = pushed[0][3]
                seen.add(node, counter)
            else:
                seen.add_all(list(map(_DOT_OF, pushed)))
            for node, counter in delta._superseded:
                seen.add(node, counter)
        else:
            seen.update(delta.context)
        return changed

    def merge(self, other: LWWMap) -> list[Entry]:
        """Join another replica's whole state into this one; returns the entries that changed here."""
        if not isinstance(other, LWWMap):
            raise LocalProtocolError(f"crdt: can only merge an LWWMap, got {type(other).__name__}")
        return self.apply_delta(Delta(entries=tuple(other._entries.values()), context=other.context))

    def all_entries(self) -> list[Entry]:
        """Every stored entry, tombstones included, sorted by key (what a full sync carries)."""
        return [self._entries[key] for key in sorted(self._entries)]

    def _store(self, entry: Entry, replaced: Entry | None) -> None:
        if entry[4] or (replaced is not None and replaced[4]):
            self._tombstones += entry[4] - (replaced is not None and replaced[4])
        if replaced is not None:
            old = replaced.dot
            by_counter = self._by_dot.get(old.node)
            if by_counter is not None and by_counter.get(old.counter) == replaced.key:
                del by_counter[old.counter]
                if not by_counter:
                    del self._by_dot[old.node]
        self._entries[entry.key] = entry
        dot = entry.dot
        by_counter = self._by_dot.get(dot.node)
        if by_counter is None:
            self._by_dot[dot.node] = {dot.counter: entry.key}
        else:
            by_counter[dot.counter] = entry.key

    def __repr__(self) -> str:
        return f"LWWMap({self._node!r}, {len(self._entries)} entries, {self.context!r})"
