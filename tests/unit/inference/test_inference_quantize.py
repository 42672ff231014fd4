"""int8 variants: the static QDQ MobileNetV2 loads, runs and stays close; the variant decision."""

from __future__ import annotations

import numpy as np
import pytest

from inference import InferenceError, Runtime
from inference.cnn import mobilenet_v2
from inference.quantize import (
    Drift,
    Tolerance,
    choose_variant,
    generated_feeds,
    measure_drift,
    session_runner,
    static_int8,
)
from inference.spec import model_spec_from_bytes


@pytest.fixture(scope="module")
def small_mobilenet() -> bytes:
    # Reduced width and classes keep quantizing it well under a second on 2 cores.
    return mobilenet_v2(0, size=32, width=0.25, classes=10).SerializeToString(deterministic=True)


def test_static_qdq_variant_loads_runs_and_stays_within_drift(small_mobilenet: bytes) -> None:
    int8 = static_int8(small_mobilenet, samples=8, seed=0)
    assert static_int8(small_mobilenet, samples=8, seed=0) == int8  # seeded calibration: same variant
    assert b"QuantizeLinear" in int8 and b"DequantizeLinear" in int8
    spec, int8_spec = model_spec_from_bytes(small_mobilenet), model_spec_from_bytes(int8)
    assert [t.name for t in int8_spec.inputs] == [t.name for t in spec.inputs]
    assert int8_spec.outputs == spec.outputs
    rt = Runtime()
    rt.load_bytes("fp32", small_mobilenet, spec)
    rt.load_bytes("int8", int8, int8_spec)
    drift = measure_drift(session_runner(rt, "fp32"), session_runner(rt, "int8"), generated_feeds(spec, 32, seed=1))
    assert drift.rows == 32
    # Stated bound for this random-weight net (measured 0.16 relative, top-1 32 of 32): int8
    # moves the logits by at most a quarter of their range and keeps 9 in 10 argmaxes.
    assert 0 < drift.rel_max_abs_diff < 0.25
    assert drift.top1_agreement >= 0.9


def test_generated_feeds_are_seeded_and_follow_the_spec(small_mobilenet: bytes) -> None:
    spec = model_spec_from_bytes(small_mobilenet)
    a, b = generated_feeds(spec, 2, seed=3, batch=2), generated_feeds(spec, 2, seed=3, batch=2)
    assert all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, b))
    assert a[0]["image"].shape == (2, 3, 32, 32) and a[0]["image"].dtype == np.float32
    assert not np.array_equal(a[0]["image"], a[1]["image"])


def test_measure_drift_counts_argmax_agreement() -> None:
    feeds = [{"x": np.zeros(1)}] * 2
    ref = lambda feed: np.array([[1.0, 0.0, 0.0], [0.0, 4.0, 0.0]])  # noqa: E731
    cand = lambda feed: np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 2.0]])  # noqa: E731
    drift = measure_drift(ref, cand, feeds)
    assert drift == Drift(max_abs_diff=3.0, rel_max_abs_diff=0.75, top1_agreement=0.5, rows=4)
    assert measure_drift(ref, ref, feeds).max_abs_diff == 0


CLOSE = Drift(max_abs_diff=0.01, rel_max_abs_diff=0.01, top1_agreement=1.0, rows=64)


@pytest.mark.parametrize(
    ("fp32_ms", "int8_ms", "drift", "expected"),
    [
        (10.0, 5.0, CLOSE, "int8"),  # 2x faster, close: use it
        (10.0, 40.0, CLOSE, "fp32"),  # dynamic-int8-like: slower, never used
        (10.0, 9.5, CLOSE, "fp32"),  # within the 1.1x noise margin
        (10.0, 5.0, Drift(max_abs_diff=1, rel_max_abs_diff=0.01, top1_agreement=0.8, rows=64), "fp32"),  # argmax moves
        (10.0, 5.0, Drift(max_abs_diff=9, rel_max_abs_diff=0.5, top1_agreement=1.0, rows=64), "fp32"),  # logits move
    ],
)
def test_int8_only_when_faster_here_and_close_enough(fp32_ms, int8_ms, drift, expected) -> None:
    assert choose_variant(fp32_ms=fp32_ms, int8_ms=int8_ms, drift=drift) == expected


def test_tolerance_is_the_callers_choice_and_is_checked() -> None:
    loose = Tolerance(min_speedup=1.0, min_top1_agreement=0.5, max_rel_diff=1.0)
    rough = Drift(max_abs_diff=1, rel_max_abs_diff=0.3, top1_agreement=0.7, rows=64)
    assert choose_variant(fp32_ms=10, int8_ms=10, drift=rough, tolerance=loose) == "int8"
    with pytest.raises(InferenceError, match="^inference: run times must be > 0"):
        choose_variant(fp32_ms=0, int8_ms=1, drift=CLOSE)
    with pytest.raises(InferenceError, match="^inference: tolerance needs"):
        Tolerance(min_top1_agreement=2)
