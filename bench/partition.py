"""Partitioner cost beside loading the model: finding cuts and slicing vs parsing and opening a session.

Issue 6: "Slicing must be fast (no full re-check per part)". For each model
(the demo, the generated ResNet-18/MobileNetV2, the shipped PP-OCR models) this
times, best of ``repeats``:

* ``load_ms``: ``onnx.load_model_from_string`` on the file's bytes (baseline);
* ``session_ms``: opening an onnxruntime session on them (the other baseline);
* ``plan_ms``: ``PartitionPlan(model).cuts()`` — sort, shape inference, liveness sweep, fusion groups;
* ``split_ms``: ``split`` at every ``stride``-th single-tensor cut, then serializing the parts
  (what a node does before shipping them).

and prints ``plan/load``, ``split/load`` and ``(plan+split)/session`` ratios.
``python -m bench partition``.
"""

from __future__ import annotations

import time

import onnx

from inference import Runtime
from inference.catalog import shipped_model
from inference.cnn import mobilenet_v2, resnet18
from inference.demo_model import demo_model_bytes
from inference.errors import InferenceError
from inference.partition import PartitionPlan
from inference.spec import model_spec_from_bytes

MODELS = {
    "demo": lambda: demo_model_bytes(0),
    "resnet18 (generated)": lambda: resnet18(0).SerializeToString(deterministic=True),
    "mobilenet_v2 (generated)": lambda: mobilenet_v2(0).SerializeToString(deterministic=True),
    **{name: (lambda name=name: shipped_model(name).path().read_bytes()) for name in ("ppocr-det", "ppocr-rec", "ppocr-cls")},
}


def _best(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best * 1e3, result


def run(repeats: int = 5, stride: int = 4, models: list[str] | None = None) -> list[dict]:
    """One row per model: times in ms and the ratios to loading it."""
    runtime = Runtime()
    rows = []
    for name in models or list(MODELS):
        try:
            data = MODELS[name]()
        except InferenceError as exc:  # a shipped model not installed here
            rows.append({"name": name, "skipped": str(exc).split(";")[0]})
            continue
        load_ms, model = _best(lambda: onnx.load_model_from_string(data), repeats)
        load_ms = max(load_ms, 1e-6)  # a tiny model can parse below the clock's resolution
        spec = model_spec_from_bytes(data)
        session_ms, _ = _best(lambda: runtime.load_bytes(f"{name}-{time.perf_counter_ns()}", data, spec), max(1, repeats // 2))
        plan_ms, plan = _best(lambda: (p := PartitionPlan(model), p.cuts())[0], repeats)
        cuts = [c for c in plan.cuts() if c.single][stride - 1 :: stride]
        split_ms, parts = _best(lambda: [p.SerializeToString() for p in plan.split(cuts)], repeats)
        rows.append({
            "name": name,
            "nodes": len(plan),
            "MB": round(len(data) / 1e6, 1),
            "cuts": len(plan.cuts()),
            "single": sum(1 for c in plan.cuts() if c.single),
            "parts": len(parts),
            "load_ms": round(load_ms, 3),
            "session_ms": round(session_ms, 1),
            "plan_ms": round(plan_ms, 2),
            "split_ms": round(split_ms, 2),
            "plan/load": round(plan_ms / load_ms, 2),
            "split/load": round(split_ms / load_ms, 2),
            "(plan+split)/session": round((plan_ms + split_ms) / session_ms, 3),
        })
    return rows
