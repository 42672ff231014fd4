"""Failure-detection time against cluster size, on the membership simulator (simulated time only).

``python -m bench.membership_curve``: for N in (10, 30, 100, 300, 1000), start N converged
nodes on the simulated network (1-5 ms latency, 1 % loss), crash one, and measure the simulated
seconds until the first live node, and until every live node, declares it dead. Medians over a
few seeds. SWIM predicts first detection ≈ one probe round plus the suspicion timeout, which
Lifeguard scales with log10 N, and the spread to everyone another O(log N) gossip rounds; the
``per_log10_n`` column makes "about logarithmic" easy to judge (flat means logarithmic).
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sim"))

from membership_sim import Simulation  # noqa: E402

from mesh.membership import MemberDead, State  # noqa: E402

SIZES = (10, 30, 100, 300, 1000)
SEEDS = (1, 2, 3)


def detect(n: int, seed: int, *, loss: float = 0.01, warmup: float = 5.0, limit: float = 60.0) -> tuple[float, float]:
    """Simulated seconds from a crash to the first, and to the last live node's, verdict."""
    sim = Simulation(n, seed=seed, loss=loss)
    sim.run_until(warmup)
    victim = sim.ids[n // 2]
    sim.crash(victim)
    crashed_at = sim.now
    if not sim.run_until(crashed_at + limit, lambda: sim.all_see(victim, {State.DEAD}), check_every=0.25):
        raise AssertionError(f"seed={seed} n={n}: crash not detected everywhere within {limit} s")
    first_verdict: dict[str, float] = {}
    for o in sim.log:
        if isinstance(o.event, MemberDead) and o.event.peer == victim:
            first_verdict.setdefault(o.observer, o.at)
    times = sorted(first_verdict.values())
    return times[0] - crashed_at, times[-1] - crashed_at


def run(sizes: tuple[int, ...] = SIZES, seeds: tuple[int, ...] = SEEDS) -> list[dict]:
    """One row per N: median simulated seconds to the first and to the full detection."""
    rows = []
    for n in sizes:
        firsts, alls = zip(*(detect(n, seed) for seed in seeds))
        first, everyone = statistics.median(firsts), statistics.median(alls)
        rows.append({
            "n": n,
            "first_dead_s": round(first, 2),
            "all_dead_s": round(everyone, 2),
            "per_log10_n": round(everyone / math.log10(n), 2),
            "seeds": len(seeds),
        })
    return rows


def main() -> None:
    """Print the curve."""
    print("membership: simulated detection time of one crashed node (1 % loss, 1-5 ms latency)")
    for row in run():
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
