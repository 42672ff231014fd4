"""The planner: predicted completion = local compute + RTT + bytes/bandwidth + remote compute + remote queue (issue 6)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import LocalProtocolError
from inference import InferenceError, Runtime
from inference.cnn import INPUT_NAME, resnet18
from inference.partition import PartitionPlan
from inference.planner import (
    Measurements,
    ModelProfile,
    NodeMeasurement,
    PeerMeasurement,
    PlanOptions,
    candidate_cuts,
    plan,
    price,
    replan_needed,
)
from inference.profiler import initializer_bytes, profile_parts

# Four partitions: a heavy input, a heavier first activation, then lighter ones; small logits back.
BYTES = (1_000_000, 2_000_000, 400_000, 10_000, 4_000)
LOCAL_MS = (5.0, 5.0, 5.0, 100.0)
MEM = (1_000_000, 2_000_000, 3_000_000, 4_000_000)


def node(name: str = "here", compute=LOCAL_MS, **kw) -> NodeMeasurement:
    return NodeMeasurement(node=name, compute_ms=tuple(compute), memory_bytes=MEM, **kw)


def peer(name: str = "p", *, speed: float = 4.0, bandwidth: float = 1e9, rtt_ms: float = 1.0, **kw) -> PeerMeasurement:
    return PeerMeasurement(node=name, compute_ms=tuple(t / speed for t in LOCAL_MS), memory_bytes=MEM,
                           rtt_ms=rtt_ms, bandwidth=bandwidth, **kw)


def measurements(*peers: PeerMeasurement, local: NodeMeasurement | None = None, bytes_=BYTES) -> Measurements:
    return Measurements(profile=ModelProfile(model="m", boundary_bytes=bytes_), local=local or node(), peers=peers)


def test_fast_link_and_fast_peer_send_it_all_away():
    d = plan(measurements(peer(bandwidth=1e9)))
    assert (d.best.kind, d.best.peer) == ("remote", "p")
    assert d.runner_up is not None and d.runner_up.predicted_ms >= d.best.predicted_ms


def test_slow_link_keeps_it_here():
    d = plan(measurements(peer(bandwidth=10_000)))
    assert d.best.kind == "local" and d.best.predicted_ms == pytest.approx(sum(LOCAL_MS))


def test_mid_link_cuts_where_the_activation_is_small():
    # 1 MB/s: the input costs 1 s, the 10 kB activation after partition 3 costs 10 ms; the last partition is heavy here.
    d = plan(measurements(peer(bandwidth=1e6)))
    assert (d.best.kind, d.best.cut) == ("split", 3)
    b = d.best
    assert b.predicted_ms == pytest.approx(15 + 1 + (10_000 + 4_000) / 1e6 * 1e3 + 25)
    assert b.predicted_ms == pytest.approx(b.local_ms + b.network_ms + b.remote_ms + b.local_wait_ms + b.remote_wait_ms)


def test_choice_flips_with_peer_speed():
    slow_peer = PeerMeasurement(node="p", compute_ms=tuple(t * 2 for t in LOCAL_MS), memory_bytes=MEM,
                                rtt_ms=1.0, bandwidth=1e9)
    assert plan(measurements(slow_peer)).best.kind == "local"
    assert plan(measurements(peer(speed=4.0))).best.kind == "remote"


def test_remote_queue_pushes_work_away_from_a_busy_peer():
    assert plan(measurements(peer(queue=0))).best.kind == "remote"
    busy = plan(measurements(peer(queue=5)))
    assert busy.best.kind == "local"
    free = plan(measurements(peer("busy", queue=5), peer("free", queue=0)))
    assert free.best.peer == "free"


def test_local_queue_pushes_work_to_a_peer():
    # A slow peer loses to an idle node, but wins once this node's queue is long.
    slow = peer(speed=0.8, bandwidth=1e9)
    assert plan(measurements(slow)).best.kind == "local"
    d = plan(measurements(slow, local=node(queue=3)))
    assert d.best.kind == "remote" and d.best.local_wait_ms == 0.0


def test_fp16_halves_the_bytes_and_can_flip_the_choice():
    m = measurements(peer(bandwidth=1e6))
    full = price(m, m.peers[0], 0)
    half = price(m, m.peers[0], 0, PlanOptions(allow_fp16=True))
    assert half.bytes_sent * 2 == full.bytes_sent and half.fp16
    # Cuts off: the 1 MB input at 7 MB/s takes 143 ms fp32 (slower than 115 ms here), 72 ms as fp16.
    m = measurements(peer(bandwidth=7e6, speed=10))
    assert plan(m, PlanOptions(max_cuts=0)).best.kind == "local"
    assert plan(m, PlanOptions(max_cuts=0, allow_fp16=True)).best.kind == "remote"


def test_memory_limit_excludes_a_node():
    small_peer = peer(memory_limit_bytes=5_000_000)  # the whole model needs 10 MB, the last partition 4 MB
    d = plan(measurements(small_peer))
    assert d.best.kind in ("split", "local") and sum(MEM[d.best.cut:]) <= 5_000_000
    assert all(p.kind != "remote" for p in d.considered)
    tiny_here = node(memory_limit_bytes=0)
    assert plan(measurements(peer(bandwidth=10_000), local=tiny_here)).best.kind == "remote"
    with pytest.raises(InferenceError, match="fits the memory limits"):
        plan(measurements(peer(memory_limit_bytes=0), local=tiny_here))


def test_memory_penalty_charges_a_pressed_node():
    m = measurements(peer(bandwidth=1e6))
    assert plan(m).best.kind == "split"
    pressed = measurements(peer(bandwidth=1e6), local=node(memory_ms_per_mb=1000.0))  # 6 MB here: +6 s
    assert plan(pressed).best.kind == "remote"


def test_partition_penalty_discourages_splits():
    m = measurements(peer(bandwidth=1e6))
    assert plan(m).best.kind == "split"
    assert plan(m, PlanOptions(partition_penalty_ms=100.0)).best.kind == "local"


def test_ties_break_the_same_way_everywhere_and_say_why():
    d = plan(measurements(peer("b"), peer("a")))
    assert d.best.peer == "a" and d.runner_up.peer == "b"
    assert "lower peer id" in d.tie_break
    assert plan(measurements(peer(bandwidth=10_000))).tie_break is None


def test_candidate_cuts_are_the_staircase_or_the_callers():
    profile = ModelProfile(model="m", boundary_bytes=(100, 200, 50, 60, 40, 10, 30, 4))
    assert candidate_cuts(profile) == (2, 4, 5)
    assert candidate_cuts(profile, PlanOptions(max_cuts=2)) == (4, 5)
    assert candidate_cuts(profile, PlanOptions(max_cuts=0)) == ()
    assert candidate_cuts(profile, PlanOptions(cuts=(6, 1, 0, 7))) == (1, 6)
    with pytest.raises(LocalProtocolError, match="outside boundaries"):
        candidate_cuts(profile, PlanOptions(cuts=(9,)))


@pytest.mark.parametrize("build, match", [
    (lambda: NodeMeasurement(node="x", compute_ms=(-1.0,), memory_bytes=(0,)), "compute_ms"),
    (lambda: NodeMeasurement(node="x", compute_ms=(math.nan,), memory_bytes=(0,)), "compute_ms"),
    (lambda: NodeMeasurement(node="x", compute_ms=[1.0], memory_bytes=(0,)), "compute_ms"),
    (lambda: NodeMeasurement(node="x", compute_ms=(1.0,), memory_bytes=(0, 0)), "memory_bytes"),
    (lambda: NodeMeasurement(node="", compute_ms=(1.0,), memory_bytes=(0,)), "node id"),
    (lambda: NodeMeasurement(node="x", compute_ms=(1.0,), memory_bytes=(0,), queue=-1), "queue"),
    (lambda: NodeMeasurement(node="x", compute_ms=(1.0,), memory_bytes=(0,), memory_limit_bytes=1.5), "memory_limit"),
    (lambda: peer(bandwidth=0), "bandwidth"),
    (lambda: peer(rtt_ms=math.inf), "rtt_ms"),
    (lambda: ModelProfile(model="m", boundary_bytes=(1,)), "boundary_bytes"),
    (lambda: PlanOptions(partition_penalty_ms=-1), "partition_penalty_ms"),
    (lambda: PlanOptions(max_cuts=-1), "max_cuts"),
    (lambda: measurements(peer(), bytes_=(1, 2, 3)), "measured 4 partitions but model m has 2"),
    (lambda: measurements(peer("here")), "unique"),
    (lambda: replan_needed(plan(measurements(peer())), measurements(peer()), -0.1), "threshold"),
])
def test_bad_inputs_are_refused_clearly(build, match):
    with pytest.raises(LocalProtocolError, match=match) as err:
        build()
    assert str(err.value).startswith("inference: ")


def test_replan_when_the_measurements_move():
    old = plan(measurements(peer(bandwidth=1e9)))
    assert old.best.kind == "remote"
    assert not replan_needed(old, measurements(peer(bandwidth=1e9)), 0.1)
    assert not replan_needed(old, measurements(peer(bandwidth=0.99e9)), 0.1)  # within the threshold
    assert replan_needed(old, measurements(peer(bandwidth=1e6)), 0.1)  # the link collapsed
    assert replan_needed(old, measurements(peer(queue=3)), 0.1)  # the peer got busy
    assert replan_needed(old, measurements(peer("other")), 0.1)  # the peer is gone
    assert replan_needed(old, measurements(peer(memory_limit_bytes=0), peer("other")), 0.1)


def test_replan_when_another_plan_becomes_much_better():
    old = plan(measurements(peer("p", speed=4.0)))
    # Same cost for the old plan, but a new, far faster peer appears.
    assert replan_needed(old, measurements(peer("p", speed=4.0), peer("q", speed=40.0)), 0.1)
    assert not replan_needed(old, measurements(peer("p", speed=4.0), peer("q", speed=4.1)), 0.1)


finite_ms = st.floats(0.0, 200.0, allow_nan=False)


@st.composite
def random_measurements(draw):
    k = draw(st.integers(1, 6))
    bytes_ = tuple(draw(st.lists(st.integers(0, 5_000_000), min_size=k + 1, max_size=k + 1)))
    mem = tuple(draw(st.lists(st.integers(0, 10), min_size=k, max_size=k)))

    def figures():
        return dict(compute_ms=tuple(draw(st.lists(finite_ms, min_size=k, max_size=k))), memory_bytes=mem,
                    queue=draw(st.integers(0, 4)), memory_limit_bytes=draw(st.one_of(st.none(), st.integers(0, 60))))

    local = NodeMeasurement(node="here", **figures())
    peers = tuple(
        PeerMeasurement(node=f"p{i}", rtt_ms=draw(finite_ms), bandwidth=draw(st.floats(1e3, 1e10)), **figures())
        for i in range(draw(st.integers(0, 3)))
    )
    options = PlanOptions(allow_fp16=draw(st.booleans()), partition_penalty_ms=draw(finite_ms),
                          max_cuts=draw(st.integers(0, 4)))
    return Measurements(profile=ModelProfile(model="m", boundary_bytes=bytes_), local=local, peers=peers), options


@settings(max_examples=60, deadline=None)
@given(random_measurements())
def test_the_choice_is_never_worse_than_any_plan_it_considered(drawn):
    m, options = drawn
    cuts = candidate_cuts(m.profile, options)
    own = [price(m, None, m.profile.partitions, options)]
    own += [price(m, p, c, options) for p, c in itertools.product(m.peers, (0, *cuts))]
    feasible = [p for p in own if p is not None]
    if not feasible:
        with pytest.raises(InferenceError):
            plan(m, options)
        return
    d = plan(m, options)
    assert len(d.considered) == len(feasible)
    assert all(d.best.predicted_ms <= p.predicted_ms + 1e-9 for p in feasible)
    assert d.runner_up is None or d.runner_up.predicted_ms >= d.best.predicted_ms - 1e-9
    assert plan(m, options) == d  # deterministic


def test_profiler_times_each_part_through_the_runtime_with_the_clock_passed_in():
    model = resnet18(0, size=32, width=0.125, classes=10)
    p = PartitionPlan(model)
    cuts = [c for c in p.cuts() if c.single][2::4]
    parts = p.split(cuts)
    ticks = itertools.count()
    image = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    timings = profile_parts(Runtime(), parts, {INPUT_NAME: image}, name="planner-test", warm=1, runs=3,
                            clock=lambda: next(ticks) * 1e-3)
    assert timings.compute_ms == pytest.approx((1.0,) * len(parts))  # every run is one tick of the fake clock
    assert timings.boundary_bytes == (image.nbytes, *(c.nbytes for c in cuts), 10 * 4)
    assert timings.memory_bytes == tuple(initializer_bytes(part) for part in parts)
    assert sum(timings.memory_bytes) == initializer_bytes(model)
    d = plan(Measurements(profile=timings.model_profile("r18"), local=timings.node("here")))
    assert d.best.kind == "local" and d.runner_up is None
