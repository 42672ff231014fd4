"""SyncCores on a faulty in-memory network converge once it heals (STYLE §18, in miniature).

Messages are dropped, duplicated and delayed (so reordered) at random; writes
land on any node at any time. After the network heals, within a few intervals,
every replica must hold exactly the last-writer-wins winner of every key and
have seen every write — and at every step no replica may claim to have seen a
write it neither holds nor has a newer value for (the invariant ``delta_since``
relies on). The seed comes from Hypothesis, which shrinks and replays it.
"""

from __future__ import annotations

import random

import msgpack
from crdt_strategies import check_invariant
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import Dot, Entry, HybridLogicalClock, LWWMap, SyncCore, decode_message, encode_message

NAMES = "abc"
DT = 0.1
INTERVAL = 0.5


def simulate(seed: int, links: list[str], loss: float, max_entries: int, relay: bool) -> None:
    rng = random.Random(seed)
    maps = {n: LWWMap(n) for n in NAMES}
    clocks = {n: HybridLogicalClock(n) for n in NAMES}
    cores = {n: SyncCore(maps[n], interval=INTERVAL, max_entries=max_entries, relay=relay) for n in NAMES}
    writes: dict[Dot, Entry] = {}
    for a, b in links:
        cores[a].add_peer(b, 0.0)
        cores[b].add_peer(a, 0.0)
    in_flight: list[tuple[int, str, str, object]] = []  # (deliver at step, src, dst, wire)

    def wall(step: int, node: str) -> int:
        return step * 100 + rng.randint(-150, 150)  # skewed clocks, sometimes jumping back

    for step in range(80):
        now = step * DT
        healed = step >= 40
        if not healed and rng.random() < 0.5:
            node = rng.choice(NAMES)
            key = rng.choice(("k1", "k2", "k3", "k4", "k5"))
            delta = maps[node].put(key, rng.randint(0, 9), clocks[node].now(max(0, wall(step, node))))
            writes[delta.entries[0].dot] = delta.entries[0]
            cores[node].local_write(delta, now)
        if not healed and rng.random() < 0.05:  # a link drops and comes back
            a, b = rng.choice(links)
            cores[a].remove_peer(b)
            cores[a].add_peer(b, now)
        for src, core in cores.items():
            for dst, msg in core.outgoing(now):
                wire = msgpack.packb(encode_message(msg))
                copies = 1 if healed else (0 if rng.random() < loss else 1 + (rng.random() < 0.2))
                for _ in range(copies):
                    in_flight.append((step + (0 if healed else rng.randint(0, 3)), src, dst, wire))
        due = [m for m in in_flight if m[0] <= step]
        in_flight = [m for m in in_flight if m[0] > step]
        rng.shuffle(due)
        for _, src, dst, wire in due:
            for entry in cores[dst].receive(src, decode_message(msgpack.unpackb(wire)), now):
                clocks[dst].observe(entry.ts, max(0, wall(step, dst)))
            check_invariant(maps[dst], writes)

    winners: dict[str, Entry] = {}
    for entry in writes.values():
        if entry.key not in winners or entry.beats(winners[entry.key]):
            winners[entry.key] = entry
    expected = [winners[key] for key in sorted(winners)]
    for name, replica in maps.items():
        assert replica.entries() == expected, name
        assert all(replica.context.contains(dot) for dot in writes), name
    assert len({replica.context for replica in maps.values()}) == 1


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    links=st.sampled_from([["ab", "bc", "ac"], ["ab", "bc"]]),
    loss=st.sampled_from([0.0, 0.3, 0.7]),
    max_entries=st.sampled_from([1, 2, 128]),
    relay=st.booleans(),
)
def test_sync_cores_converge_after_loss_duplication_and_reordering(seed, links, loss, max_entries, relay):
    simulate(seed, links, loss, max_entries, relay)
