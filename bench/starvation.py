"""False positives under CPU starvation: 6 real nodes while busy-loop siblings hog both cores.

The baseline is the same mesh with the CPU idle, observed for the same time;
both should show no suspicion and no "dead" verdict at all.
"""

from __future__ import annotations

import subprocess
import sys
import time

from mesh.cluster import LocalCluster

BUSY = "import time\nt = time.time()\nwhile time.time() - t < {limit}: pass\n"


def _observe(nodes: int, seconds: float, hogs: int) -> dict:
    busy: list[subprocess.Popen] = []
    not_alive = 0
    try:
        with LocalCluster.formed(nodes, prefix="meshnode-bench-starve-") as cluster:
            busy = [subprocess.Popen([sys.executable, "-c", BUSY.format(limit=seconds + 15)]) for _ in range(hogs)]
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                for node in cluster.nodes:
                    not_alive += sum(p["state"] != "alive" for p in node.client(timeout=10).get("/peers"))
                time.sleep(0.5)
            logs = "".join(n.log_path.read_text() for n in cluster.nodes)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    return {"name": f"{nodes} nodes, {hogs} busy-loop siblings, {seconds:g} s", "declared_dead": logs.count("declared dead"),
            "suspected": logs.count("is suspected"), "non_alive_observations": not_alive}


def run(nodes: int = 6, seconds: float = 60.0) -> list[dict]:
    """Idle baseline, then the starved run."""
    return [_observe(nodes, seconds, hogs=0), _observe(nodes, seconds, hogs=3)]
