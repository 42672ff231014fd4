"""Failure detection on real processes: time from SIGKILL until every other node says "gone".

Six local nodes; three are killed in turn. The baseline beside it is the time
libp2p itself notices the closed connection (a hint the mesh deliberately does
not take as a verdict, because a hung peer closes nothing).
"""

from __future__ import annotations

import statistics
import time

from mesh.cluster import LocalCluster


def _state(node, target: str) -> str:
    return next((p["state"] for p in node.client(timeout=5).get("/peers") if p["peer_id"] == target), "")


def run(nodes: int = 6, victims: int = 3) -> list[dict]:
    """Per-victim detection times and their summary."""
    dead_times: list[float] = []
    hint_times: list[float] = []
    with LocalCluster.formed(nodes, prefix="meshnode-bench-fd-") as cluster:
        for victim in cluster.nodes[nodes - victims:]:
            observers = [n for n in cluster.nodes if n.running and n is not victim]
            started = time.monotonic()
            victim.proc.kill()
            victim.proc.wait()
            pending = {o.name: o for o in observers}
            hinted = set()
            while pending and time.monotonic() - started < 30:
                for name, obs in list(pending.items()):
                    state = _state(obs, victim.peer_id)
                    if state == "suspect" and name not in hinted:
                        hinted.add(name)
                        hint_times.append(time.monotonic() - started)
                    if state == "gone":
                        dead_times.append(time.monotonic() - started)
                        del pending[name]
                time.sleep(0.05)
    return [
        {"name": "connection lost (libp2p hint, shown as suspect)", "median_s": round(statistics.median(hint_times), 2)
         if hint_times else None, "samples": len(hint_times)},
        {"name": "declared dead by the failure detector", "median_s": round(statistics.median(dead_times), 2),
         "max_s": round(max(dead_times), 2), "samples": len(dead_times), "target_s": 5.0},
    ]
