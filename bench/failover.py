"""Raft failover on real ``meshnode`` processes: leader SIGKILL → next committed write, and idle stability.

A 3-voter mesh on 127.0.0.1. Each round kills the Raft leader's process with
SIGKILL and at once starts writing (``config set``) through one of the
survivors' HTTP APIs, one write at a time; the figure is the time from the kill
to the first acknowledged write. The killed node is restarted before the next
round. Then the mesh idles for ``seconds`` and every term change is counted: an
election nobody caused is a spurious one.

``python -m bench failover`` (``--duration S`` sets the idle watch; 600 for the
10-minute check).
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import time

from crdt.errors import MeshError
from mesh.cluster import LocalCluster

ROUNDS = 7
IDLE_SECONDS = 60.0


def _terms(nodes) -> dict[str, int]:
    return {n.name: n.client(timeout=5).get("/status")["raft"]["term"] for n in nodes}


def _failover_once(cluster: LocalCluster, rng: random.Random, n: int) -> float:
    leader_id = cluster.wait_leader(timeout=60)
    leader = next(node for node in cluster.nodes if node.peer_id == leader_id)
    survivor = rng.choice([node for node in cluster.nodes if node is not leader])
    client = survivor.client(timeout=10)
    started = time.monotonic()
    os.kill(leader.proc.pid, signal.SIGKILL)
    deadline = started + 30
    while time.monotonic() < deadline:
        try:
            client.post("/config/set", {"key": f"failover-{n}", "value": n})
            took = time.monotonic() - started
            break
        except MeshError:
            continue
    else:
        raise RuntimeError("bench: no write committed within 30 s of killing the leader")
    leader.proc.wait(10)
    leader.proc = None
    cluster.start(leader)
    cluster.wait_api(leader)
    cluster.wait_leader(timeout=60)
    return took


def run(rounds: int = ROUNDS, seconds: float = IDLE_SECONDS, seed: int = 7) -> list[dict]:
    """Failover times over ``rounds`` leader kills, then spurious elections over ``seconds`` idle."""
    rng = random.Random(seed)
    with LocalCluster.formed(3, prefix="meshnode-bench-failover-") as cluster:
        cluster.wait_leader(timeout=60)
        times = sorted(_failover_once(cluster, rng, n) for n in range(rounds))
        cluster.wait_mesh(timeout=60)
        before = _terms(cluster.nodes)
        time.sleep(seconds)  # the idle watch itself: nothing to wait for
        after = _terms(cluster.nodes)
    return [
        {"name": "leader SIGKILL -> next committed write", "rounds": rounds,
         "median_s": round(statistics.median(times), 3), "max_s": round(times[-1], 3),
         "min_s": round(times[0], 3)},
        {"name": f"idle {seconds:g} s, 3 voters", "elections": max(after.values()) - max(before.values()),
         "terms_before": before, "terms_after": after},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
