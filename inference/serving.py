"""A model as a node serves it: its partitions, their measured figures, and running a range of them.

Theory of operation
-------------------
Every node that holds a model file cuts it the same way, because the cuts are
a pure function of the file's bytes (``serving_cuts``): the single-tensor,
fusion-safe cuts whose activation weighs less than everything before it (the
input included) — the planner's "staircase" (``inference/planner.py``): a cut
that sends more than an earlier one rarely pays — of which at most
``MAX_SERVING_CUTS``, spread evenly through the model. A model with an
early-exit head (``inference/early_exit.py``) is cut exactly once, just after
its head: the device part answers or hands its features up. A model with no
cut (one node, a recurrent state the partitioner refuses, or a graph it cannot
size) is served whole and profiled whole.

The cut list has a signature (``cut_signature``: the file's sha256 and each
cut's position and tensors), sent with a split request and with the node's
profile; two nodes agree on what "boundary ``c``" means exactly when their
signatures match, and a node refuses a split request whose signature differs
(a different model version, or different partitioning code).

``prepare`` (blocking; run it in a worker thread) splits the model, loads each
part into a ``Runtime`` kept for parts (``{name}.part{k}``) and measures each
part on seeded generated inputs (``inference/profiler.py``), so adverts carry
figures from this node's own hardware. ``run_range`` runs parts ``[start,
stop)`` from the activation at ``start``; it returns the whole model's outputs
when ``stop`` is the end, or else the activation at ``stop`` plus any of the
model's outputs made on the way (an exit head's probabilities).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from inference.early_exit import EXIT_OUTPUT, FEATURES_KEY
from inference.errors import InferenceError
from inference.messages import MAX_PARTITIONS, ModelSpec, PartProfile
from inference.partition import Cut, PartitionPlan
from inference.profiler import initializer_bytes, profile_parts
from inference.quantize import generated_feeds
from inference.runtime import Runtime

MAX_SERVING_CUTS = 3  # cuts per served model: the planner's few (4 partitions at most)
PROFILE_RUNS = 3  # recorded runs per part when profiling at load


def serving_cuts(plan: PartitionPlan, max_cuts: int = MAX_SERVING_CUTS) -> list[Cut]:
    """The cuts a node serves ``plan``'s model at (see the module doc); the same list on every node."""
    if max_cuts < 1 or max_cuts >= MAX_PARTITIONS:
        raise InferenceError(f"inference: max_cuts must be in 1..{MAX_PARTITIONS - 1}, got {max_cuts}")
    meta = {p.key: p.value for p in plan.model.metadata_props}
    if FEATURES_KEY in meta:
        return [_exit_cut(plan, meta[FEATURES_KEY])]
    cuts = [c for c in plan.cuts(1) if c.nbytes is not None]
    inputs = [v for v in plan.model.graph.input if v.name in set(plan._graph_inputs)]  # noqa: SLF001 - same package
    lightest = sum(_input_bytes(v) for v in inputs)
    stair = []
    for cut in cuts:
        if cut.nbytes < lightest:
            stair.append(cut)
            lightest = cut.nbytes
    if len(stair) <= max_cuts:
        return stair
    # Spread: the cut nearest each of max_cuts evenly spaced fractions of the staircase.
    picks = sorted({round((i + 1) * (len(stair) - 1) / (max_cuts + 1)) for i in range(max_cuts)})
    return [stair[i] for i in picks]


def cut_signature(sha256: str, cuts: list[Cut]) -> str:
    """A 32-hex-digit name for ``cuts`` of the model file ``sha256`` (equal on two nodes iff they cut alike)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(sha256.encode())
    for cut in cuts:
        h.update(f"|{cut.position}:{','.join(cut.tensors)}".encode())
    return h.hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServedModel:
    """One model as this node serves it: cut list, loaded parts, measured profile."""

    name: str
    sha256: str
    signature: str
    part_names: tuple[str, ...]  # in the parts runtime; () when the model is served whole
    part_inputs: tuple[tuple[str, ...], ...]
    output_names: tuple[str, ...]  # the whole model's outputs
    profile: PartProfile
    early_exit: bool  # the first part ends with an exit head (``exit_probs``)

    @property
    def partitions(self) -> int:
        """K: how many partitions (1 when served whole)."""
        return max(1, len(self.part_names))


def prepare(runtime: Runtime, parts_runtime: Runtime, name: str, data: bytes, spec: ModelSpec) -> ServedModel:
    """Cut ``data`` (already loaded whole as ``name`` in ``runtime``), load and profile its parts; blocking."""
    feeds = generated_feeds(spec, 1, seed=0)[0] if _generatable(spec) else None
    try:
        plan = PartitionPlan(data)
        cuts = serving_cuts(plan)
    except InferenceError:
        plan, cuts = None, []  # not cuttable (recurrent state, say): served whole
    output_names = tuple(spec.output_names)
    if plan is None or not cuts:
        ms = _time_whole(runtime, name, feeds)
        in_bytes = sum(a.nbytes for a in feeds.values()) if feeds else 0
        out_bytes = 0
        if feeds is not None:
            out_bytes = sum(a.nbytes for a in runtime.run(name, feeds).values())
        memory = initializer_bytes(onnx.load_model_from_string(data)) if plan is not None else len(data)
        profile = PartProfile(cuts=cut_signature(spec.sha256, []), compute_ms=(ms,), memory_bytes=(memory,),
                              boundary_bytes=(in_bytes, out_bytes))
        return ServedModel(name=name, sha256=spec.sha256, signature=profile.cuts, part_names=(), part_inputs=(),
                           output_names=output_names, profile=profile, early_exit=False)
    parts = plan.split(cuts)
    signature = cut_signature(spec.sha256, cuts)
    if feeds is not None:
        timings = profile_parts(parts_runtime, parts, feeds, name=name, warm=1, runs=PROFILE_RUNS)
        profile = PartProfile(cuts=signature, compute_ms=tuple(round(x, 4) for x in timings.compute_ms),
                              memory_bytes=timings.memory_bytes, boundary_bytes=timings.boundary_bytes)
    else:  # inputs we cannot generate (integer ids, say): load the parts, figures from the planner's sizes
        from inference.spec import model_spec_from_bytes

        for k, part in enumerate(parts):
            blob = part.SerializeToString(deterministic=True)
            parts_runtime.load_bytes(f"{name}.part{k}", blob, model_spec_from_bytes(blob, origin=f"{name}.part{k}"))
        sizes = [0, *(c.nbytes or 0 for c in cuts), 0]
        profile = PartProfile(cuts=signature, compute_ms=tuple(0.0 for _ in parts),
                              memory_bytes=tuple(initializer_bytes(p) for p in parts), boundary_bytes=tuple(sizes))
    return ServedModel(
        name=name, sha256=spec.sha256, signature=signature,
        part_names=tuple(f"{name}.part{k}" for k in range(len(parts))),
        part_inputs=tuple(tuple(v.name for v in p.graph.input) for p in parts),
        output_names=output_names, profile=profile,
        early_exit=EXIT_OUTPUT in output_names and len(parts) == 2,
    )


def run_range(parts_runtime: Runtime, served: ServedModel, feeds: Mapping[str, np.ndarray], start: int,
              stop: int) -> dict[str, np.ndarray]:
    """Run partitions ``[start, stop)`` of ``served`` on ``feeds``; blocking (see the module doc for what returns)."""
    k = served.partitions
    if not served.part_names or not 0 <= start < stop <= k:
        raise InferenceError(f"inference: {served.name} has partitions 0..{k - 1}; cannot run [{start}, {stop})")
    missing = [n for n in served.part_inputs[start] if n not in feeds]
    if missing:
        raise InferenceError(
            f"inference: partition {start} of {served.name!r} needs {missing}; got {sorted(feeds)}"
        )
    values: dict[str, np.ndarray] = dict(feeds)
    for j in range(start, stop):
        values.update(parts_runtime.run(served.part_names[j], {n: values[n] for n in served.part_inputs[j]}))
    made = {n: values[n] for n in served.output_names if n in values and n not in feeds}
    if stop == k:
        return made
    return {**{n: values[n] for n in served.part_inputs[stop]}, **made}


def _exit_cut(plan: PartitionPlan, features: str) -> Cut:
    after_head = next((i for i, node in enumerate(plan.nodes) if EXIT_OUTPUT in node.output), None)
    cut = next((c for c in plan.cuts(1) if after_head is not None and c.position == after_head + 1), None)
    if cut is None or cut.tensors != (features,):
        raise InferenceError(f"inference: the early-exit head's cut does not carry {features!r} alone")
    return cut


def _input_bytes(value: onnx.ValueInfoProto) -> int:
    count = 1
    for d in value.type.tensor_type.shape.dim:
        count *= d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
    return count * 4


def _generatable(spec: ModelSpec) -> bool:
    return all(t.dtype == "float32" and t.shape is not None for t in spec.inputs)


def _time_whole(runtime: Runtime, name: str, feeds: Mapping[str, np.ndarray] | None) -> float:
    import statistics
    import time

    if feeds is None:
        return 0.0
    runtime.run(name, feeds)
    samples = []
    for _ in range(PROFILE_RUNS):
        started = time.perf_counter()
        runtime.run(name, feeds)
        samples.append((time.perf_counter() - started) * 1e3)
    return round(statistics.median(samples), 4)


# used by tests and the planner glue
__all__ = ["MAX_SERVING_CUTS", "ServedModel", "cut_signature", "prepare", "run_range", "serving_cuts"]
