"""Measuring a split model on this node, for the planner: per-partition run time, memory and boundary bytes.

This is the impure side of ``inference/planner.py``: it loads each part into a
``Runtime`` (the only onnxruntime user) and times it with a monotonic clock.

What is measured:

* ``compute_ms``: the median wall time of ``Runtime.run`` on each part, after
  ``warm`` unrecorded runs, over ``runs`` recorded ones, fed the activations the
  chain really produces. It includes the wrapper's input check and the session
  call overhead (tens of µs), which a part really pays when it runs alone.
* ``memory_bytes``: the bytes of the part's initializers (its weights), a
  floor on what its session holds: onnxruntime's arena for activations, the
  prepacked weight copies and the kernels' scratch come on top and are not
  visible from the Python API.
* ``boundary_bytes``: the fp32 bytes that really crossed each boundary in the
  profiling run (input, each part's declared inputs, the last part's outputs),
  for the batch size of ``inputs``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from inference.errors import InferenceError
from inference.partition import run_chain
from inference.planner import ModelProfile, NodeMeasurement
from inference.runtime import Runtime
from inference.spec import model_spec_from_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionTimings:
    """What ``profile_parts`` measured: per part ms and weight bytes, per boundary bytes."""

    compute_ms: tuple[float, ...]
    memory_bytes: tuple[int, ...]
    boundary_bytes: tuple[int, ...]

    def model_profile(self, model: str) -> ModelProfile:
        """The boundaries as the planner takes them."""
        return ModelProfile(model=model, boundary_bytes=self.boundary_bytes)

    def node(self, node: str, **figures) -> NodeMeasurement:
        """This node's measurement for the planner (``figures``: queue, memory limit, ...)."""
        return NodeMeasurement(node=node, compute_ms=self.compute_ms, memory_bytes=self.memory_bytes, **figures)


def initializer_bytes(part: onnx.ModelProto) -> int:
    """Bytes of ``part``'s weights (raw or typed data), the floor of its session memory."""
    total = 0
    for t in part.graph.initializer:
        if t.HasField("data_location") and t.data_location == onnx.TensorProto.EXTERNAL:
            raise InferenceError(f"inference: cannot size external initializer {t.name!r}; load the weights first")
        count = 1
        for d in t.dims:
            count *= d
        total += count * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return total


def profile_parts(
    runtime: Runtime,
    parts: Sequence[onnx.ModelProto],
    inputs: Mapping[str, np.ndarray],
    *,
    name: str = "profile",
    warm: int = 2,
    runs: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> PartitionTimings:
    """Load ``parts`` into ``runtime`` as ``{name}.part{k}`` and time each (see the module doc)."""
    if not parts or warm < 0 or runs < 1:
        raise InferenceError(f"inference: profiling needs parts, warm >= 0 and runs >= 1; got {len(parts)} parts, "
                             f"warm {warm}, runs {runs}")
    names = []
    for k, part in enumerate(parts):
        data = part.SerializeToString(deterministic=True)
        names.append(f"{name}.part{k}")
        runtime.load_bytes(names[-1], data, model_spec_from_bytes(data, origin=names[-1]))
    feeds: list[dict[str, np.ndarray]] = []
    last: dict[str, np.ndarray] = {}

    def record(k: int, f: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds.append(dict(f))
        out = runtime.run(names[k], f)
        if k == len(parts) - 1:
            last.update(out)
        return out

    run_chain(parts, inputs, record)
    boundary = [sum(a.size * 4 if a.dtype.kind == "f" else a.nbytes for a in f.values())
                for f in feeds]
    boundary.append(sum(a.nbytes for a in last.values()))
    compute = []
    for k, feed in enumerate(feeds):
        for _ in range(warm):
            runtime.run(names[k], feed)
        samples = []
        for _ in range(runs):
            started = clock()
            runtime.run(names[k], feed)
            samples.append((clock() - started) * 1e3)
        compute.append(statistics.median(samples))
    return PartitionTimings(compute_ms=tuple(compute), memory_bytes=tuple(initializer_bytes(p) for p in parts),
                            boundary_bytes=tuple(boundary))
