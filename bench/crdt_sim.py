"""Sensor-state sync at scale, on the simulator: rounds and bytes to converge after a heal, vs N.

``python -m bench crdt-sim``: for N in (10, 100, 1000) and loss 0 % and 5 %, run
``tests/sim/crdt_sim.partition_heal`` — the real ``LWWMap`` + ``SyncCore`` on N simulated
nodes, each syncing with 8-12 random neighbours, messages through the real codec and msgpack,
one gossip round (0.5 s, the node's sync interval) per hop. 10 % of the nodes write during the
warm-up, 10 % write on both sides of a random two-way cut for 12 rounds (own keys, 16 shared
keys, 10 % of the shared writes deletes), then the cut heals. Columns:

- ``rounds``: rounds from the heal until every replica holds the oracle's entries and
  context (target ≤ 10); ``entries_rounds``: until the entries alone agree;
- ``bytes``/``messages``: everything sent from the heal until then, every copy counted;
  ``bytes_per_node``; ``digest_share`` (the part that was digests) and ``answer_share``
  (answers to digests: deltas carrying a whole causal context); the rest is pushes and relays;
- ``entries_per_change``: over the whole run, entries received per entry that changed a
  replica (the redundancy of flooding relays over 8-12 neighbours);
- ``steady_B_per_node_s``: after convergence (``SETTLE_ROUNDS`` later, over ``STEADY_ROUNDS``),
  what a node keeps sending per second with nothing to sync, and ``steady_summary_share``, the
  part of those messages that were ``SyncSummary`` fingerprints (the rest whole digests);
  ``digest_B_all_writers``: what one *whole* digest would weigh if every one of the N nodes had
  written (a sensor mesh) — the steady cost per pair before summaries, now paid only when a pair
  is out of sync;
- ``writers``: distinct writers in the contexts; ``diameter``: of the neighbour graph.

Simulated time only; ``sim_s`` is the wall time the run took (the N=1000 rows take ~2 min each).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sim"))

from crdt_sim import node_id, partition_heal  # noqa: E402

from crdt import CausalContext, SyncDigest, VersionVector, encode_message  # noqa: E402
from mesh.wire import pack  # noqa: E402

SIZES = (10, 100, 1000)
LOSSES = (0.0, 0.05)
SEEDS = (1,)
SETTLE_ROUNDS = 10
STEADY_ROUNDS = 10


def digest_bytes(writers: int, counter: int = 1000) -> int:
    """Bytes of one digest whose context names ``writers`` libp2p-id writers at ``counter`` writes each."""
    context = CausalContext(VersionVector({node_id(i): counter for i in range(writers)}))
    return len(pack(encode_message(SyncDigest(context=context))))


def _summaries(sim) -> int:
    return sum(node.core.statistics()["summaries_sent"] for node in sim.nodes.values())


def _redundancy(sim) -> float:
    stats = [node.core.statistics() for node in sim.nodes.values()]
    return sum(s["entries_received"] for s in stats) / max(1, sum(s["entries_changed"] for s in stats))


def measure(n: int, loss: float, seed: int) -> dict:
    """One partition-heal run and its steady state afterwards."""
    started = time.perf_counter()
    run = partition_heal(n, seed=seed, loss=loss)
    sim = run.sim
    if run.rounds is None:
        raise AssertionError(f"bench: seed={seed} n={n} loss={loss}: no convergence ({run.replay})")
    sim.run(SETTLE_ROUNDS)
    summaries_before = _summaries(sim)
    before = sim.traffic.copy()
    sim.run(STEADY_ROUNDS)
    steady = sim.traffic.since(before)
    summaries = _summaries(sim) - summaries_before
    seconds = STEADY_ROUNDS * sim.interval
    writers = len(sim.nodes[sim.ids[0]].map.context.vv)
    one_digest = steady.digest_bytes / max(1, steady.digest_messages)
    all_writers = digest_bytes(n)
    return {
        "rounds": run.rounds,
        "entries_rounds": run.convergence.entries_rounds,
        "messages": run.traffic.messages,
        "bytes": run.traffic.bytes,
        "bytes_per_node": round(run.bytes_per_node),
        "digest_share": round(run.traffic.digest_bytes / run.traffic.bytes, 3),
        "answer_share": round(run.traffic.answer_bytes / run.traffic.bytes, 3),
        "entries_per_change": round(_redundancy(sim), 1),
        "dropped": run.traffic.dropped,
        "steady_B_per_node_s": round(steady.bytes / n / seconds),
        "steady_summary_share": round(summaries / max(1, steady.messages), 3),
        "digest_B": round(one_digest),
        "digest_B_all_writers": all_writers,
        "writers": writers,
        "diameter": sim.diameter(),
        "sim_s": round(time.perf_counter() - started, 1),
    }


def run(sizes: tuple[int, ...] = SIZES, losses: tuple[float, ...] = LOSSES, seeds: tuple[int, ...] = SEEDS) -> list[dict]:
    """One row per (N, loss): medians over ``seeds``."""
    rows = []
    for n in sizes:
        for loss in losses:
            runs = [measure(n, loss, seed) for seed in seeds]
            row = {"n": n, "loss": loss}
            for key in runs[0]:
                values = [r[key] for r in runs]
                row[key] = statistics.median(values) if len(values) > 1 else values[0]
            row["target_rounds"] = "<= 10"
            row["seeds"] = len(seeds)
            rows.append(row)
    return rows


def main() -> None:
    """Print the table."""
    print("crdt-sim: rounds and bytes after a partition heals, vs N (simulated; 0.5 s rounds)")
    for row in run():
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
