"""Planner quality and cost: its choice against brute force over every single cut, and its time per call.

Issue 6: "its chosen plan within 10% of the best plan measured by brute force,
over a sweep of emulated link bandwidths and node speeds; per-partition
overhead <= 0.1 ms". For each generated CNN (ResNet-18, MobileNetV2):

1. split it at every single-tensor cut and profile the parts once on this
   machine (``inference.profiler``: median of ``runs`` warm runs per part);
2. for every emulated link (``bandwidths_mbit``, RTT ``rtt_ms``) and peer
   speed (``speeds``: the peer's per-partition times are this node's divided
   by the factor) and local slowness (``slowdowns``: this node's measured
   times multiplied, to stand for a weaker device than this machine), ask the planner (default options: all-local, all-remote and
   at most ``max_cuts`` staircase cuts) and brute force (every boundary 0..K on the peer,
   and all-local, priced by the same ``planner.price``);
3. report ``chosen/best`` (predicted times; 1.0 = the planner found the best)
   and the planner's time per call, per partition.

Times are predicted completions from measured figures, not runs over a real
link; the emulation is in the bandwidth and speed numbers. ``python -m bench planner``.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from inference import Runtime
from inference.cnn import INPUT_NAME, mobilenet_v2, resnet18
from inference.partition import PartitionPlan
from inference.planner import Measurements, NodeMeasurement, PeerMeasurement, PlanOptions, plan, price
from inference.profiler import profile_parts

MODELS = {"resnet18": resnet18, "mobilenet_v2": mobilenet_v2}


def brute_force(m: Measurements, options: PlanOptions):
    """The best plan over every boundary of every peer, and all-local, by predicted time."""
    k = m.profile.partitions
    plans = [price(m, None, k, options)]
    plans += [price(m, peer, c, options) for peer in m.peers for c in range(k)]
    return min((p for p in plans if p is not None), key=lambda p: p.predicted_ms)


def _time_per_call(m: Measurements, options: PlanOptions, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        plan(m, options)
    return (time.perf_counter() - started) / calls * 1e3


def run(
    models: tuple[str, ...] = tuple(MODELS),
    *,
    size: int = 224,
    width: float = 1.0,
    bandwidths_mbit: tuple[float, ...] = (1, 10, 100, 1000),
    speeds: tuple[float, ...] = (1, 2, 4),
    slowdowns: tuple[float, ...] = (1, 10),
    rtt_ms: float = 2.0,
    runs: int = 5,
    calls: int = 200,
    max_cuts: int = 4,
) -> list[dict]:
    """One row per (model, link, peer speed), then a summary row per model."""
    runtime = Runtime()
    rows = []
    for name in models:
        model = MODELS[name](0, size=size, width=width)
        cuts = [c for c in PartitionPlan(model).cuts() if c.single]
        parts = PartitionPlan(model).split(cuts)
        image = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        timings = profile_parts(runtime, parts, {INPUT_NAME: image}, name=f"bench-planner-{name}-{size}", runs=runs)
        profile = timings.model_profile(name)
        ratios, per_call, missed = [], [], 0
        options = PlanOptions(max_cuts=max_cuts)
        for slow, mbit, speed in itertools.product(slowdowns, bandwidths_mbit, speeds):
            here = tuple(t * slow for t in timings.compute_ms)
            local = NodeMeasurement(node="here", compute_ms=here, memory_bytes=timings.memory_bytes)
            peer = PeerMeasurement(node="peer", compute_ms=tuple(t / speed for t in here),
                                   memory_bytes=timings.memory_bytes, rtt_ms=rtt_ms, bandwidth=mbit * 1e6 / 8)
            m = Measurements(profile=profile, local=local, peers=(peer,))
            decision = plan(m, options)
            best = brute_force(m, options)
            missed += decision.best.key != best.key
            ratio = decision.best.predicted_ms / best.predicted_ms
            ms = _time_per_call(m, options, calls)
            ratios.append(ratio)
            per_call.append(ms)
            rows.append({
                "name": f"{name}: here {slow:g}x slower, {mbit:g} Mbit/s, peer {speed:g}x faster",
                "chosen": decision.best.describe(),
                "best": best.describe(),
                "chosen/best": round(ratio, 3),
                "considered": len(decision.considered),
                "plan_us": round(ms * 1e3, 1),
            })
        k = profile.partitions
        rows.append({
            "name": f"{name}: summary",
            "partitions": k,
            "whole_ms_measured": round(sum(timings.compute_ms), 2),
            "worst chosen/best": round(max(ratios), 3),
            "best_not_chosen": missed,
            "within_10pct": f"{sum(r <= 1.1 for r in ratios)}/{len(ratios)}",
            "plan_us_median": round(sorted(per_call)[len(per_call) // 2] * 1e3, 1),
            "per_partition_ms": round(max(per_call) / k, 5),
        })
    return rows
