"""Hypothesis strategies for crdt values and write histories (shared by the crdt property tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

from crdt import CausalContext, Delta, Dot, Entry, HybridLogicalClock, LWWMap, Timestamp, VersionVector

NODES = ("a", "b", "c")
KEYS = ("k1", "k2", "k3", "k4")

nodes = st.sampled_from(NODES)
dots = st.builds(Dot, nodes, st.integers(1, 8))
version_vectors = st.dictionaries(nodes, st.integers(0, 6)).map(VersionVector)
contexts = st.builds(CausalContext, version_vectors, st.lists(dots, max_size=8))
timestamps = st.builds(Timestamp, st.integers(0, 2**40), st.integers(0, 20), nodes)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def dots_of(ctx: CausalContext) -> frozenset[Dot]:
    """The set of dots a context stands for (the model the compact form must agree with)."""
    return frozenset(Dot(n, c) for n, top in ctx.vv.items() for c in range(1, top + 1)) | ctx.cloud


@st.composite
def deltas(draw) -> Delta:
    """A valid delta: entries on distinct keys whose dots lie in the context."""
    context = draw(contexts)
    entries = []
    for key in draw(st.lists(st.text(max_size=5), unique=True, max_size=4)):
        dot = draw(st.sampled_from(sorted(dots_of(context)))) if context else None
        if dot is None:
            break
        ts = Timestamp(draw(st.integers(0, 2**40)), draw(st.integers(0, 9)), dot.node)
        entries.append(Entry(key=key, value=draw(json_values), ts=ts, dot=dot))
    return Delta(entries=tuple(entries), context=context)


@dataclass
class History:
    """Writers that wrote, and now and then synced with each other; every delta they produced."""

    writers: dict[str, LWWMap]
    deltas: list[Delta] = field(default_factory=list)  # every delta, in the order made
    write_deltas: list[Delta] = field(default_factory=list)  # those ``put`` returned
    writes: dict[Dot, Entry] = field(default_factory=dict)

    def join(self) -> LWWMap:
        """The state every replica must reach: all writers merged."""
        total = LWWMap("z")
        for writer in self.writers.values():
            total.merge(writer)
        return total


DELETE = 4  # a write op with this value deletes the key instead (a tombstone)
write_ops = st.tuples(st.just("write"), nodes, st.sampled_from(KEYS), st.integers(0, DELETE), st.integers(0, 5))
sync_ops = st.tuples(st.just("sync"), nodes, nodes)


@st.composite
def histories(draw, max_ops: int = 12) -> History:
    """Writes by a few nodes with coarse wall clocks (so timestamps tie and counters matter), and syncs."""
    writers = {n: LWWMap(n) for n in NODES}
    clocks = {n: HybridLogicalClock(n) for n in NODES}
    history = History(writers)
    for op in draw(st.lists(write_ops | sync_ops, min_size=1, max_size=max_ops)):
        if op[0] == "write":
            _, node, key, value, wall = op
            if value == DELETE:
                delta = writers[node].delete(key, clocks[node].now(wall))
            else:
                delta = writers[node].put(key, value, clocks[node].now(wall))
            history.writes[delta.entries[0].dot] = delta.entries[0]
            history.write_deltas.append(delta)
        else:
            # An answer to dst's context: it may name writes it does not carry, so it is only
            # meant for dst (SyncCore sends it to no one else).
            _, src, dst = op
            delta = writers[src].delta_since(writers[dst].context)
            for entry in writers[dst].apply_delta(delta):
                clocks[dst].observe(entry.ts, 0)
        history.deltas.append(delta)
    return history


def state(replica: LWWMap) -> tuple:
    """What must be equal between converged replicas (tombstones included)."""
    return replica.all_entries(), replica.context


def copy_of(replica: LWWMap) -> LWWMap:
    """An independent replica with the same state."""
    return LWWMap.restore(replica.node, replica.all_entries(), replica.context)


def check_invariant(replica: LWWMap, writes: dict[Dot, Entry]) -> None:
    """Every write the context names is stored or lost to the stored entry of its key (see LWWMap)."""
    for dot, write in writes.items():
        if replica.context.contains(dot):
            held = next((e for e in replica.all_entries() if e.key == write.key), None)
            assert held is not None and held.ts >= write.ts, (dot, write, held)
