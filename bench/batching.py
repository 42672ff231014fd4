"""Does batching pay on this CPU? B requests as one batched run vs B single runs, B in 1, 2, 4, 8.

For each model that batches (``inference.batching.batch_axis_ok``): the generated
CNNs (random weights, seeded, 64x64) and the shipped PP-OCR text-line
classifier and recogniser when installed. Both sides go through
``inference.Runtime`` with default options (per-session pools, ``cores``
intra-op threads, spinning off), same Runtime, same process, same inputs:

* ``single_ms``: per request, B batch-1 ``Runtime.run`` calls one after another;
* ``batched_ms``: per request, ``stack`` + one ``Runtime.run`` on B rows + ``unstack``;
* ``batched/single``: < 1 means batching is faster per request (0.5: twice the throughput).

Each figure is the best of ``repeats`` means over ``runs`` rounds, the two
sides taking turns; B=1 (the same work on both sides) shows the noise. A batch
finishes all its requests together, so latency of the first request in it
grows with B even when throughput improves. ``python -m bench batching``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from inference import InferenceError, Runtime
from inference.batching import batch_axis_ok, stack, unstack
from inference.catalog import shipped_model
from inference.cnn import mobilenet_v2, resnet18
from inference.spec import model_spec_from_bytes

BATCHES = (1, 2, 4, 8)


def _generated(build: Callable[[], object]) -> Callable[[], tuple[bytes, tuple[int, ...]]]:
    return lambda: (build().SerializeToString(deterministic=True), (3, 64, 64))


def _shipped(name: str, shape: tuple[int, ...]) -> Callable[[], tuple[bytes, tuple[int, ...]]]:
    return lambda: (shipped_model(name).path().read_bytes(), shape)


# name -> () -> (model bytes, the shape of one request's input past the batch axis)
MODELS = {
    "mobilenet_v2 (generated)": _generated(lambda: mobilenet_v2(0)),
    "mobilenet_v2 width 0.5": _generated(lambda: mobilenet_v2(0, width=0.5)),
    "resnet18 (generated)": _generated(lambda: resnet18(0)),
    "ppocr-cls 48x192": _shipped("ppocr-cls", (3, 48, 192)),
    "ppocr-rec 48x320": _shipped("ppocr-rec", (3, 48, 320)),
}


def _best_ms(sides: list[Callable[[], None]], runs: int, repeats: int) -> list[float]:
    """Best mean ms per call of each side; sides take turns each repeat, so load from others hits both alike."""
    for work in sides:
        work()  # warm-up: the first run of a shape allocates
    best = [float("inf")] * len(sides)
    for _ in range(repeats):
        for i, work in enumerate(sides):
            started = time.perf_counter()
            for _ in range(runs):
                work()
            best[i] = min(best[i], (time.perf_counter() - started) / runs)
    return [b * 1e3 for b in best]


def run(runs: int = 20, repeats: int = 5, batches: tuple[int, ...] = BATCHES,
        models: list[str] | None = None) -> list[dict]:
    """One row per model and batch size B: per-request ms single and batched, and their ratio."""
    runtime = Runtime()
    rows: list[dict] = []
    for name in models or list(MODELS):
        try:
            data, trailing = MODELS[name]()
        except InferenceError as exc:  # a shipped model that is not installed
            rows.append({"name": name, "skipped": str(exc).split(";")[0]})
            continue
        spec = model_spec_from_bytes(data)
        if not batch_axis_ok(spec):
            rows.append({"name": name, "skipped": "no free first dimension on every input and output"})
            continue
        runtime.load_bytes(name, data, spec)
        (input_name,) = spec.input_names
        rng = np.random.default_rng(0)
        pool = [{input_name: rng.standard_normal((1, *trailing)).astype(np.float32)} for _ in range(max(batches))]
        for b in batches:
            requests = pool[:b]

            def single(name: str = name, requests: list = requests) -> None:
                for request in requests:
                    runtime.run(name, request)

            def batched(name: str = name, requests: list = requests) -> None:
                inputs, sizes = stack(requests)
                unstack(runtime.run(name, inputs), sizes)

            single_ms, batched_ms = (ms / b for ms in _best_ms([single, batched], runs, repeats))
            rows.append({
                "name": f"{name}: B={b}",
                "single_ms": round(single_ms, 3),
                "batched_ms": round(batched_ms, 3),
                "batched/single": round(batched_ms / single_ms, 3),
            })
    return rows
