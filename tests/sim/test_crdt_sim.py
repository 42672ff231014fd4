"""Sensor-state sync on the simulated network (STYLE §18): partitions, heals, loss, an hour offline.

The real ``LWWMap`` and ``SyncCore`` run on ``crdt_sim.CrdtSim``. Every assertion names its
seed and the call that replays the run (``HealRun.replay``). The issue's targets (issue 5,
"Scale by simulation" and "Durability and offline") are quoted where they are checked. The
oracle, ``expected_state``, is computed from the log of acknowledged writes alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from crdt_sim import (
    CrdtSim,
    Write,
    diverged,
    expected_state,
    fingerprint,
    lost_writes,
    neighbour_sets,
    offline_for,
    partition_heal,
)

from crdt import CausalContext, Dot, Entry, LWWMap, Timestamp

ROUNDS = 10  # "After heal all replicas are equal within ≤ 10 gossip rounds"


def check_heal(run) -> None:
    """Converged within ``ROUNDS``, equal to the oracle everywhere, nothing acknowledged lost."""
    sim, where = run.sim, f"seed={run.sim.seed} (replay: {run.replay})"
    assert run.rounds is not None and run.rounds <= ROUNDS, (
        f"{where}: not converged {ROUNDS} rounds after the heal (rounds={run.rounds}, replicas still "
        f"diverged after each round: {run.convergence.progress}); first: {diverged(sim.replicas(), sim.writes, limit=3)}"
    )
    assert not diverged(sim.replicas(), sim.writes), where
    assert not lost_writes(sim.replicas(), sim.writes), f"{where}: {lost_writes(sim.replicas(), sim.writes)[:3]}"


@pytest.mark.parametrize("seed", range(4))
def test_two_sides_that_wrote_apart_converge_within_ten_rounds_of_the_heal(seed):
    """"After heal all replicas are equal within ≤ 10 gossip rounds" — 100 nodes, both sides writing."""
    run = partition_heal(100, seed=seed)
    assert run.partition_writes > 0 and any(w.deleted for w in run.sim.writes), f"seed={seed}: no conflicts written"
    check_heal(run)


@pytest.mark.parametrize("seed", range(3))
def test_heal_converges_under_loss_duplication_and_reordering(seed):
    """"seeded loss": 5 % of messages lost, 2 % delivered twice, 5 % a round late, each round shuffled."""
    run = partition_heal(100, seed=seed, loss=0.05, duplicate=0.02, delay=0.05, reorder=True)
    assert run.traffic.dropped > 0, f"seed={seed}: the loss never struck after the heal"
    check_heal(run)


@pytest.mark.parametrize("seed", range(2))
def test_three_way_partition_converges_within_ten_rounds(seed):
    """Three groups write apart, then heal at once."""
    check_heal(partition_heal(100, seed=seed, groups=3, loss=0.02))


@pytest.mark.slow
@pytest.mark.long
def test_a_thousand_nodes_converge_within_ten_rounds_of_the_heal_with_5pct_loss():
    """"the real sync core with 1,000 simulated nodes, seeded loss, partitions and heals" (~2 min)."""
    run = partition_heal(1000, seed=1, loss=0.05)
    check_heal(run)


def test_a_node_cut_off_for_an_hour_keeps_writing_and_syncs_when_it_returns():
    """"A node cut off for an hour keeps accepting writes ... and syncs them when it returns."

    One reading a second for 3,600 simulated seconds (the rest of the mesh writing too, 2 % loss);
    after the heal every replica holds every write or a later write of the same key.
    """
    seed = 5
    run = offline_for(3600.0, 10, seed=seed, loss=0.02)
    sim, where = run.sim, f"seed={seed} (replay: {run.replay})"
    assert run.loner_writes >= 3600, f"{where}: only {run.loner_writes} writes acknowledged while away"
    # Away, the core drops its peers (failure detector) and buffers nothing: the writes wait in the map.
    assert run.peers_while_away == 0 and run.buffered_while_away == 0, where
    check_heal(run)
    loner_minutes = [e for e in sim.nodes[sim.ids[-1]].map.entries(f"{run.loner[-6:]}/minute/")]
    assert len(loner_minutes) == 60, f"{where}: a far node holds {len(loner_minutes)} of the loner's 60 minute keys"


# ---- the checker itself ---------------------------------------------------------------------


def _converged_sim(seed: int = 7) -> CrdtSim:
    sim = CrdtSim(12, seed=seed)
    for i, node in enumerate(sim.ids):
        sim.write(node, "shared", i)
        sim.write(node, f"own/{i}", i)
    sim.delete(sim.ids[3], "own/3")
    assert sim.run_until_converged(10).rounds is not None, f"seed={seed}"
    return sim


def _broken(sim: CrdtSim, drop: str | None = None, stale: str | None = None, lose_dot: bool = False) -> LWWMap:
    """A copy of the first replica with ``drop`` missing, ``stale`` rolled back, or a dot gone from its context."""
    good = sim.nodes[sim.ids[0]].map
    entries = [e for e in good.entries() + good.tombstones() if e.key != drop]
    if stale is not None:
        older = max((w for w in sim.writes if w.key == stale and w.ts < good.get(stale).ts), key=lambda w: w.ts)
        entries = [Entry(key=w.key, value=w.value, ts=w.ts, dot=w.dot) if e.key == stale else e
                   for e in entries for w in [older]]
    context = good.context
    if lose_dot:
        writer = max(context.vv, key=lambda node: context.vv[node])
        kept = [Dot(node, c) for node, top in context.vv.items() for c in range(1, top + 1)
                if (node, c) != (writer, context.vv[writer])]
        context = CausalContext.from_dots(kept)
        entries = [e for e in entries if context.contains(e.dot)]
    return LWWMap.restore(good.node, entries, context)


@pytest.mark.parametrize("damage", [{"drop": "own/5"}, {"stale": "shared"}, {"drop": "own/3"}, {"lose_dot": True}],
                         ids=["missing entry", "stale value", "missing tombstone", "context gap"])
def test_the_checker_flags_a_diverged_replica(damage):
    """The convergence check can fail: feed it one deliberately broken replica among good ones."""
    sim = _converged_sim()
    replicas = sim.replicas()
    assert diverged(replicas, sim.writes) == [], "seed=7: the good replicas should agree"
    broken = _broken(sim, **damage)
    problems = diverged(replicas[1:] + [("broken", broken)], sim.writes)
    assert len(problems) == 1 and problems[0].startswith("broken:"), problems
    if "lose_dot" not in damage:
        assert lost_writes([("broken", broken)], sim.writes), "a missing or stale write must count as lost"


def test_the_oracle_is_last_writer_wins_by_timestamp():
    """``expected_state`` from the writes alone: highest (wall, counter, node) wins, deletes included."""
    def w(node, counter, wall, key, value=None, deleted=False, c=0):
        return Write(0, node, key, value, Timestamp(wall, c, node), Dot(node, counter), deleted)

    writes = [w("a", 1, 100, "k", 1), w("b", 1, 100, "k", 2), w("a", 2, 99, "j", 3),
              w("b", 2, 99, "j", None, deleted=True, c=1), w("a", 3, 101, "j", 4, c=0)]
    expected = expected_state(writes)
    assert expected.winners["k"].value == 2  # same wall and counter: node "b" > "a"
    assert expected.winners["j"].value == 4  # a later put beats the delete
    assert expected.context == CausalContext.from_dots([Dot("a", 1), Dot("a", 2), Dot("a", 3), Dot("b", 1), Dot("b", 2)])


# ---- the simulator --------------------------------------------------------------------------


def test_neighbour_sets_are_bounded_symmetric_and_connected():
    """The 1,000-node topology: every degree in 8..12, every edge both ways, one component."""
    import random

    ids = [f"n{i:04d}" for i in range(1000)]
    graph = neighbour_sets(ids, random.Random(3), (8, 12))
    assert all(8 <= len(peers) <= 12 for peers in graph.values()), "seed=3: a degree outside 8..12"
    assert all(a in graph[b] for a, peers in graph.items() for b in peers), "seed=3: an edge one way only"
    seen, frontier = {ids[0]}, [ids[0]]
    while frontier:
        frontier = [b for a in frontier for b in graph[a] if b not in seen and not seen.add(b)]
    assert len(seen) == 1000, f"seed=3: {1000 - len(seen)} nodes unreachable"
    assert CrdtSim(200, seed=3).diameter() <= 5


def test_a_cut_drops_messages_both_ways_and_peers_go_down_then_come_back():
    """Partition semantics: nothing crosses; ``down_after`` rounds later peers are removed; heal re-adds them."""
    sim = CrdtSim(20, seed=2, down_after=4)
    left, right = sim.ids[:10], sim.ids[10:]
    sim.partition(left, right)
    sim.write(left[0], "only-left", 1)
    sim.run(6)
    assert all(sim.nodes[r].map.get("only-left") is None for r in right), "seed=2: a write crossed the cut"
    crossing = [p for p in sim.nodes[left[0]].neighbours if p in right]
    assert crossing and not set(crossing) & set(sim.nodes[left[0]].core.peers()), "seed=2: cut peers not removed"
    sim.heal()
    assert set(sim.nodes[left[0]].core.peers()) == set(sim.nodes[left[0]].neighbours), "seed=2: heal did not re-add"
    assert sim.run_until_converged(10).rounds is not None, "seed=2"


def test_same_seed_replays_the_same_run():
    """Determinism is what makes a printed seed worth printing: in this process twice, and in two
    more processes with different hash seeds (no set iteration order may leak into a run)."""
    def run():
        r = partition_heal(40, seed=3, loss=0.05, duplicate=0.02, delay=0.05, reorder=True)
        return r.rounds, fingerprint(r.sim)

    first = run()
    assert first == run()
    script = Path(__file__).with_name("crdt_sim.py")
    root = Path(__file__).resolve().parents[2]
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(root))
        out = subprocess.run([sys.executable, str(script), "40", "3"], env=env, capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()
        assert (int(out[0]), out[1]) == first, f"PYTHONHASHSEED={hash_seed} changed the run"
