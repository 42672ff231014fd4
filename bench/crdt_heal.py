"""Sensor-state convergence of 5 real nodes after a partition heals (issue 5: target ≤ 1 s).

Five ``meshnode`` processes, each in its own network namespace on a private
LAN (``mesh.netlab``; needs root). Each round splits them 2|3 (seeded),
waits until both sides' failure detectors have lost the other side (the
nodes have really been away from each other), writes on both sides (new
keys and the same keys), then heals and measures:

- ``converge``: heal → every node holds every write of the round, polled
  node after node (a node that has them keeps them);
- ``reconnect``: heal → every node sees every other alive again.

The baseline is the sync interval (one digest round per peer): after the
links are back, convergence cannot be expected faster than reconnect plus
about one interval.

``python -m bench crdt-heal``
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from mesh.cluster import wait_for
from mesh.config import SyncSettings
from mesh.netlab import LanCluster, time_until, why_unavailable

NODES = 5
ROUNDS = 5
WRITES = 10  # per side per round, plus as many to keys both sides write
TARGET_S = 1.0


def _cut_off(lab: LanCluster, side: list, others: list) -> None:
    lab.partition(side)
    for group, far in ((side, others), (others, side)):
        far_ids = {n.peer_id for n in far}
        for node in group:
            wait_for(lambda node=node, far_ids=far_ids: not lab.alive_peers(node) & far_ids, 60,
                     f"{node.name} to lose sight of the other side")


def _round(lab: LanCluster, rng: random.Random, n: int) -> tuple[float, float]:
    nodes = list(lab.nodes)
    rng.shuffle(nodes)
    side, others = nodes[:2], nodes[2:]
    _cut_off(lab, side, others)
    prefix = f"heal{n}/"
    for i in range(WRITES):
        for group, tag in ((side, "a"), (others, "b")):
            client = group[i % len(group)].client()
            client.post("/state/put", {"key": f"{prefix}{tag}/{i}", "value": i})
            client.post("/state/put", {"key": f"{prefix}both/{i}", "value": f"{tag}{i}"})
    expected = 3 * WRITES
    started = time.monotonic()
    lab.heal()
    for node in lab.nodes:
        left = 60 - (time.monotonic() - started)
        if time_until(lambda node=node: len(node.client(timeout=5).get("/state/list", prefix=prefix)) == expected,
                      left, interval=0.01) is None:
            raise RuntimeError(f"bench: {node.name} did not converge within 60 s of the heal (round {n})")
    converge = time.monotonic() - started
    everyone = {node.peer_id for node in lab.nodes}
    for node in lab.nodes:
        left = 60 - (time.monotonic() - started)
        if time_until(lambda node=node: everyone - {node.peer_id} <= lab.alive_peers(node), left) is None:
            raise RuntimeError(f"bench: {node.name} did not see every peer within 60 s of the heal")
    reconnect = time.monotonic() - started
    lab.wait_mesh(timeout=60)
    return converge, reconnect


def run(rounds: int = ROUNDS, seed: int = 5) -> list[dict]:
    """Convergence and reconnect times after ``rounds`` heals of a 2|3 partition."""
    reason = why_unavailable()
    if reason:
        return [{"name": "crdt heal (skipped)", "reason": reason}]
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="meshnode-bench-heal-"))
    lab = LanCluster(root, prefix="bheal")
    try:
        for _ in range(NODES):
            lab.add_node()
        lab.start_all()
        lab.wait_mesh(timeout=60)
        results = [_round(lab, rng, n) for n in range(rounds)]
    finally:
        lab.close()
        shutil.rmtree(root, ignore_errors=True)
    converge = sorted(r[0] for r in results)
    reconnect = sorted(r[1] for r in results)
    interval = SyncSettings().interval  # the nodes run the default
    return [
        {"name": f"{NODES} nodes, 2|3 partition healed: all hold every write", "rounds": rounds,
         "median_s": round(statistics.median(converge), 3), "max_s": round(converge[-1], 3),
         "target_s": TARGET_S},
        {"name": "  every node sees every other alive again", "rounds": rounds,
         "median_s": round(statistics.median(reconnect), 3), "max_s": round(reconnect[-1], 3)},
        {"name": "baseline: sync interval (one digest round)", "seconds": interval},
        {"name": "ratio converge median / sync interval", "ratio": round(statistics.median(converge) / interval, 2)},
    ]


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
