"""int8 variants beside fp32 on this machine: speed ratio and accuracy drift, static QDQ vs dynamic.

Issue 6: "a static QDQ int8 variant for weak tiers when it is faster there,
with its accuracy drift reported (dynamic quantization makes CNNs slower on
CPU — measure)". For each generated CNN (random weights, seeded) this builds
the static QDQ variant (per-channel int8 weights, calibrated on 16 generated
inputs, seed 0) and the dynamic int8 one, then reports for each variant:

* ``ms``: one batch-1 run, best of ``repeats`` means over ``runs`` runs, same Runtime, same process;
* ``fp32/variant``: the speed ratio (> 1: the variant is faster);
* drift on ``drift_rows`` fresh inputs (seed 1): max |diff|, that over the largest fp32 logit,
  and top-1 agreement (random weights give near-tied logits over 1000 classes, a harsh case);
* ``use``: what ``inference.quantize.choose_variant`` picks with its default tolerance.

``python -m bench quantize``.
"""

from __future__ import annotations

import time

from inference import Runtime
from inference.cnn import mobilenet_v2, resnet18
from inference.quantize import (
    choose_variant,
    dynamic_int8,
    generated_feeds,
    measure_drift,
    session_runner,
    static_int8,
)
from inference.spec import model_spec_from_bytes

MODELS = {
    "mobilenet_v2 (generated)": lambda: mobilenet_v2(0),
    "mobilenet_v2 width 0.5": lambda: mobilenet_v2(0, width=0.5),
    "resnet18 (generated)": lambda: resnet18(0),
}


def _ms_per_run(run, feed, runs: int, repeats: int) -> float:
    run(feed)  # warm-up: first run allocates
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(runs):
            run(feed)
        best = min(best, (time.perf_counter() - started) / runs)
    return best * 1e3


def run(runs: int = 20, repeats: int = 3, drift_rows: int = 64, models: list[str] | None = None) -> list[dict]:
    """One row per model and variant (fp32, static QDQ int8, dynamic int8)."""
    runtime = Runtime()
    rows = []
    for name in models or list(MODELS):
        fp32 = MODELS[name]().SerializeToString(deterministic=True)
        spec = model_spec_from_bytes(fp32)
        started = time.perf_counter()
        variants = {"fp32": fp32, "static QDQ int8": static_int8(fp32)}
        static_s = time.perf_counter() - started
        started = time.perf_counter()
        variants["dynamic int8"] = dynamic_int8(fp32)
        dynamic_s = time.perf_counter() - started
        feed = generated_feeds(spec, 1, seed=2)[0]
        drift_feeds = generated_feeds(spec, drift_rows, seed=1)
        fp32_ms = None
        for label, data in variants.items():
            key = f"{name}/{label}"
            runtime.load_bytes(key, data, model_spec_from_bytes(data))
            runner = session_runner(runtime, key)
            ms = _ms_per_run(runner, feed, runs, repeats)
            row = {"name": f"{name}: {label}", "MB": round(len(data) / 1e6, 1), "ms": round(ms, 3)}
            if label == "fp32":
                fp32_ms, reference = ms, runner
            else:
                drift = measure_drift(reference, runner, drift_feeds)
                row.update({
                    "fp32/variant": round(fp32_ms / ms, 2),
                    "max_abs_diff": round(drift.max_abs_diff, 4),
                    "rel_diff": round(drift.rel_max_abs_diff, 4),
                    "top1_agree": round(drift.top1_agreement, 3),
                    "quantize_s": round(static_s if label.startswith("static") else dynamic_s, 2),
                    "use": choose_variant(fp32_ms=fp32_ms, int8_ms=ms, drift=drift),
                })
            rows.append(row)
    return rows
