"""False positives under CPU starvation and pauses, on real nodes (issue 3's soak).

Scenarios, each on a fresh local mesh:

* **idle baseline**: the mesh with the CPU idle, observed for ``duration`` seconds;
* **starved**: busy-loop sibling processes hog every core for the same time, and one
  node (the *victim*) is SIGSTOPped now and then for ``pause`` seconds — less than
  the suspicion time — and SIGCONTed;
* **long pause**: at the end of the starved run the victim is stopped until every
  other node declares it dead, then resumed; it must come back alive everywhere
  without a restart (same process).

Counts come from the nodes' own logs ("is suspected", "declared dead"), split by
whether the subject was the victim, plus polls of every other node's ``/peers``.
A suspicion of the victim during a short pause is the detector doing its job; a
"dead" verdict during the starved run, or any verdict against another node, is a
false positive. Figures only: nothing here passes or fails.

``python -m bench.starvation --duration 600`` runs the 10-minute soak.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

from mesh.cluster import LocalCluster, LocalNode

BUSY = "import time\nt = time.time()\nwhile time.time() - t < {limit}: pass\n"
VERDICT = re.compile(r"peer (\S+) \(\S+\) (is suspected|declared dead)")


def _state(observer: LocalNode, target: LocalNode) -> str:
    peers = observer.client(timeout=10).get("/peers")
    return next((p["state"] for p in peers if p["peer_id"] == target.peer_id), "")


def _verdicts(cluster: LocalCluster, offsets: dict[str, int], victim: LocalNode) -> dict:
    """Verdict lines logged since ``offsets``, split by subject (victim or another node)."""
    counts = {"victim_suspected": 0, "victim_dead": 0, "others_suspected": 0, "others_dead": 0}
    for node in cluster.nodes:
        with open(node.log_path, "rb") as fh:
            fh.seek(offsets.get(node.name, 0))
            text = fh.read().decode(errors="replace")
        for subject, verdict in VERDICT.findall(text):
            who = "victim" if subject == victim.name else "others"
            counts[f"{who}_{'dead' if verdict == 'declared dead' else 'suspected'}"] += 1
    return counts


def _offsets(cluster: LocalCluster) -> dict[str, int]:
    return {n.name: n.log_path.stat().st_size for n in cluster.nodes}


class _Pauser(threading.Thread):
    """SIGSTOPs the victim for ``pause`` seconds every ``every`` seconds (±50 %, seeded)."""

    def __init__(self, victim: LocalNode, pause: float, every: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.victim, self.pause, self.every = victim, pause, every
        self.rng = random.Random(seed)
        self.done = threading.Event()
        self.held: list[float] = []  # how long each pause really lasted (the bench is starved too)

    def run(self) -> None:
        pid = self.victim.proc.pid
        while not self.done.wait(self.every * self.rng.uniform(0.5, 1.5)):
            os.kill(pid, signal.SIGSTOP)
            stopped = time.monotonic()
            try:
                self.done.wait(self.pause)
            finally:
                os.kill(pid, signal.SIGCONT)
                self.held.append(time.monotonic() - stopped)


def _observe(cluster: LocalCluster, victim: LocalNode, seconds: float) -> dict:
    """Poll every other node's view for ``seconds``; count non-alive sightings by subject."""
    seen = {"victim_gone_seen": 0, "others_not_alive_seen": 0, "polls": 0}
    observers = [n for n in cluster.nodes if n is not victim]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for node in observers:
            for peer in node.client(timeout=10).get("/peers"):
                if peer["peer_id"] == victim.peer_id:
                    seen["victim_gone_seen"] += peer["state"] == "gone"
                else:
                    seen["others_not_alive_seen"] += peer["state"] != "alive"
            seen["polls"] += 1
        time.sleep(0.5)
    return seen


def _long_pause(cluster: LocalCluster, victim: LocalNode, timeout: float = 60.0) -> dict:
    """Stop the victim until all others say "gone", resume it, time its return to "alive"."""
    observers = [n for n in cluster.nodes if n is not victim]
    pid = victim.proc.pid
    offsets = _offsets(cluster)
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        detected = _wait_all(observers, victim, "gone", stopped, timeout)
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    rejoined = _wait_all(observers, victim, "alive", resumed, timeout)
    counts = _verdicts(cluster, offsets, victim)
    return {
        "name": "long pause until declared dead, then SIGCONT",
        "declared_dead_everywhere_s": detected,
        "alive_everywhere_after_resume_s": rejoined,
        "same_process": victim.running and victim.proc.pid == pid,
        "others_dead": counts["others_dead"],
        "others_suspected": counts["others_suspected"],
    }


def _wait_all(observers: list[LocalNode], victim: LocalNode, state: str, since: float, timeout: float) -> float | None:
    """Seconds from ``since`` until every observer shows ``state`` for the victim (None: never)."""
    pending = set(range(len(observers)))
    while pending and time.monotonic() - since < timeout:
        pending = {i for i in pending if _state(observers[i], victim) != state}
        time.sleep(0.05)
    return None if pending else round(time.monotonic() - since, 2)


def scenario(nodes: int, seconds: float, *, hogs: int, pause: float = 0.0, every: float = 5.0,
             long_pause: bool = False, seed: int = 1) -> list[dict]:
    """One fresh mesh: observe it for ``seconds`` (with hogs and short pauses), then maybe the long pause."""
    busy: list[subprocess.Popen] = []
    rows = []
    try:
        with LocalCluster.formed(nodes, prefix="meshnode-bench-starve-") as cluster:
            victim = cluster.nodes[-1]
            budget = seconds + (90 if long_pause else 15)
            busy = [subprocess.Popen([sys.executable, "-c", BUSY.format(limit=budget)]) for _ in range(hogs)]
            offsets = _offsets(cluster)
            pauser = _Pauser(victim, pause, every, seed) if pause > 0 else None
            if pauser:
                pauser.start()
            try:
                seen = _observe(cluster, victim, seconds)
            finally:
                if pauser:
                    pauser.done.set()
                    pauser.join()
            held = pauser.held if pauser else []
            name = f"{nodes} nodes, {hogs} busy-loop siblings, {seconds:g} s"
            if pauser:
                name += f", victim SIGSTOPped {len(held)}x for {pause:g} s every ~{every:g} s"
            rows.append({"name": name, **_verdicts(cluster, offsets, victim), **seen,
                         "pauses": len(held), "longest_pause_s": round(max(held), 2) if held else 0.0})
            if long_pause:
                rows.append(_long_pause(cluster, victim))
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    return rows


def run(nodes: int = 6, seconds: float = 60.0, *, hogs: int = 3, pause: float = 1.0, every: float = 5.0,
        baseline: bool = True, seed: int = 1) -> list[dict]:
    """Idle baseline, then the starved run with short pauses and the long-pause check."""
    rows = scenario(nodes, seconds, hogs=0) if baseline else []
    return rows + scenario(nodes, seconds, hogs=hogs, pause=pause, every=every, long_pause=True, seed=seed)


def main() -> None:
    """``python -m bench.starvation``: the soak with every knob on the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.starvation", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds each run is observed (600: the soak).")
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--hogs", type=int, default=3, help="Busy-loop sibling processes.")
    parser.add_argument("--pause", type=float, default=1.0, help="Seconds of each short SIGSTOP (0: none).")
    parser.add_argument("--every", type=float, default=5.0, help="Mean seconds between short pauses.")
    parser.add_argument("--no-baseline", action="store_true", help="Skip the idle baseline run.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", dest="json_file", help="Also write the rows to this file.")
    args = parser.parse_args()
    rows = run(args.nodes, args.duration, hogs=args.hogs, pause=args.pause, every=args.every,
               baseline=not args.no_baseline, seed=args.seed)
    for row in rows:
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if args.json_file:
        with open(args.json_file, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
