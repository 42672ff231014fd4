"""int8 variants of a model for weak tiers: build one, measure its drift, decide whether to use it.

Issue 6, Execution: "a static QDQ int8 variant for weak tiers when it is
faster there, with its accuracy drift reported". On CPU, static QDQ
per-channel int8 made CNNs ~1.5-2x faster while dynamic int8 made them 2-8x
slower (DEPENDENCY-NOTES.md; ``python -m bench quantize`` measures it here).

Calibration feeds are generated from the model's spec with a seeded generator,
so the same model always yields the same variant. The quantizer itself is
onnxruntime's, reached through ``inference.runtime`` (the one module allowed to
import onnxruntime). ``choose_variant`` is pure: measured times and drift in,
``"fp32"`` or ``"int8"`` out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from inference.errors import InferenceError
from inference.messages import ModelSpec
from inference.runtime import Runtime, quantize_dynamic_int8, quantize_static_qdq
from inference.spec import model_spec_from_bytes

Feed = dict[str, np.ndarray]
Variant = Literal["fp32", "int8"]


def generated_feeds(spec: ModelSpec, count: int, seed: int, *, batch: int = 1, free_dim: int = 64) -> list[Feed]:
    """``count`` input feeds for ``spec``: standard-normal float32 from ``random.Generator(seed)``.

    A symbolic or unknown first dimension becomes ``batch``, any other one ``free_dim``.
    """
    if count < 1 or batch < 1 or free_dim < 1:
        raise InferenceError(f"inference: need count, batch and free_dim >= 1, got {count}, {batch}, {free_dim}")
    rng = np.random.default_rng(seed)
    shapes = {}
    for tensor in spec.inputs:
        if tensor.dtype != "float32" or tensor.shape is None:
            raise InferenceError(
                f"inference: generated calibration covers float32 inputs of known rank; input "
                f"{tensor.name!r} is {tensor.dtype} with shape {tensor.shape}; pass real feeds instead"
            )
        shapes[tensor.name] = tuple(
            d if isinstance(d, int) else (batch if i == 0 else free_dim) for i, d in enumerate(tensor.shape)
        )
    return [{name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()} for _ in range(count)]


def static_int8(model: bytes, *, samples: int = 16, seed: int = 0, feeds: Sequence[Feed] | None = None) -> bytes:
    """The static QDQ int8 variant of ``model``, calibrated on ``feeds`` (default: ``samples`` generated ones)."""
    if feeds is None:
        feeds = generated_feeds(model_spec_from_bytes(model), samples, seed)
    return quantize_static_qdq(model, feeds)


def dynamic_int8(model: bytes) -> bytes:
    """The dynamic int8 variant of ``model`` (kept for comparison: slower for CNNs on CPU)."""
    return quantize_dynamic_int8(model)


@dataclass(frozen=True, slots=True, kw_only=True)
class Drift:
    """How far a variant's first output strays from the fp32 model's on the same feeds."""

    max_abs_diff: float
    rel_max_abs_diff: float  # max_abs_diff / the largest fp32 output magnitude
    top1_agreement: float  # share of rows whose argmax is the same
    rows: int


def measure_drift(
    reference: Callable[[Feed], np.ndarray], candidate: Callable[[Feed], np.ndarray], feeds: Sequence[Feed]
) -> Drift:
    """Run both models on ``feeds`` and compare their outputs (``[N, classes]`` or anything flattened to rows)."""
    if not feeds:
        raise InferenceError("inference: drift needs at least one feed")
    refs, cands = [], []
    for feed in feeds:
        a, b = np.asarray(reference(feed), np.float64), np.asarray(candidate(feed), np.float64)
        if a.shape != b.shape:
            raise InferenceError(f"inference: variant output shape {b.shape} differs from the model's {a.shape}")
        refs.append(a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1))
        cands.append(b.reshape(-1, b.shape[-1]) if b.ndim else b.reshape(1, 1))
    ref, cand = np.concatenate(refs), np.concatenate(cands)
    diff = float(np.max(np.abs(ref - cand)))
    scale = float(np.max(np.abs(ref)))
    return Drift(
        max_abs_diff=diff,
        rel_max_abs_diff=diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf")),
        top1_agreement=float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1))),
        rows=int(ref.shape[0]),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Tolerance:
    """What an int8 variant must meet to replace fp32: speed-up and bounds on its drift."""

    min_speedup: float = 1.1  # fp32_ms / int8_ms; a margin over run-to-run noise
    min_top1_agreement: float = 0.95
    max_rel_diff: float = 0.1

    def __post_init__(self) -> None:
        if not self.min_speedup > 0 or not 0 <= self.min_top1_agreement <= 1 or not self.max_rel_diff >= 0:
            raise InferenceError(
                f"inference: tolerance needs min_speedup > 0, 0 <= min_top1_agreement <= 1 and "
                f"max_rel_diff >= 0, got {self.min_speedup}, {self.min_top1_agreement}, {self.max_rel_diff}"
            )


def choose_variant(*, fp32_ms: float, int8_ms: float, drift: Drift, tolerance: Tolerance = Tolerance()) -> Variant:
    """``"int8"`` if it is faster here by ``tolerance.min_speedup`` and its drift is within bounds, else ``"fp32"``.

    Times are this node's own measurements: int8 helps on one CPU and hurts on
    another (dynamic int8 is slower for CNNs), so nothing is assumed.
    """
    if not (fp32_ms > 0 and int8_ms > 0):
        raise InferenceError(f"inference: run times must be > 0 ms, got fp32 {fp32_ms}, int8 {int8_ms}")
    fast_enough = fp32_ms / int8_ms >= tolerance.min_speedup
    close_enough = (
        drift.top1_agreement >= tolerance.min_top1_agreement and drift.rel_max_abs_diff <= tolerance.max_rel_diff
    )
    return "int8" if fast_enough and close_enough else "fp32"


def session_runner(runtime: Runtime, name: str) -> Callable[[Feed], np.ndarray]:
    """A ``Feed -> first output`` function over model ``name`` loaded in ``runtime``."""
    def run(feed: Mapping[str, np.ndarray]) -> np.ndarray:
        return next(iter(runtime.run(name, feed).values()))
    return run
