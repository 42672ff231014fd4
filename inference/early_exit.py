"""Early exit: a backbone with a cheap exit head part-way up, and the rule that uses it.

Theory of operation (after BranchyNet, Teerapittayanon et al. 2016, and DDNN,
2017, which put the exit on the device and the rest of the network a tier up).
We pick a single-tensor cut of the backbone from ``partition.py`` about
``fraction`` of the way through; the tensor crossing it is the *features*. On
them we hang a small head — GlobalAveragePool, Flatten, Gemm, Softmax — whose
probabilities become an extra graph output, ``exit_probs``. The head only reads
the features, so the backbone's own output is unchanged (bit for bit with
graph optimisations off). The head nodes sit right after the features' producer,
so the cut just after the head still carries the features alone:
``split_for_exit`` cuts there, and the device part gives ``exit_probs`` (it
"leaves the part that makes it", partition.py) plus the features to send up.

The head is fitted in closed form, numpy only: seeded synthetic inputs (smooth
random images and their 180-degree rotations) run through the backbone; the
head's Gemm is ridge regression from the pooled features (standardised, the
scaling folded back into the weights) to the full model's centred
log-probabilities, so the head's argmax learns the full model's top-1 and its
softmax roughly its confidence. The fraction of fitted inputs on which the head's
top-1 agrees with the full model's is written into the model's metadata.

``decide`` is the pure rule: answer locally when the head's confidence (its
largest probability) is strictly above the threshold, otherwise escalate. So
threshold 0 always answers and threshold 1 always escalates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from inference.catalog import shipped_model
from inference.errors import InferenceError
from inference.partition import Cut, PartitionPlan
from inference.runtime import Runtime
from inference.spec import model_spec_from_bytes

EXIT_OUTPUT = "exit_probs"
FEATURES_KEY = "meshnode.early_exit.features"  # metadata: the tensor the head reads and the device part sends on
AGREEMENT_KEY = "meshnode.early_exit.fit_agreement"  # metadata: head/full top-1 agreement on the fitting inputs
DEFAULT_BACKBONE = "ppocr-cls"
DEFAULT_INPUT_SHAPE = (3, 48, 192)  # ppocr-cls: one text line, [N,3,48,192]
ANSWER, ESCALATE = "answer", "escalate"
_PREFIX = "early_exit/"
_LOG_FLOOR = math.log(1e-4)  # the full model's log-probabilities are clipped here before fitting


def build_early_exit(
    backbone: onnx.ModelProto | bytes | None = None,
    *,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    fraction: float = 0.4,
    samples: int = 64,
    ridge: float = 1e-3,
) -> onnx.ModelProto:
    """``backbone`` (default: the shipped ppocr-cls) with a fitted exit head; deterministic per seed.

    ``input_shape`` is one item's shape (no batch dimension); it defaults to
    the model's declared one, or ppocr-cls's line size for the default backbone.
    """
    if backbone is None:
        backbone = onnx.load(str(shipped_model(DEFAULT_BACKBONE).path()))
        input_shape = DEFAULT_INPUT_SHAPE if input_shape is None else input_shape
    plan = PartitionPlan(backbone)
    model = plan.model
    if not 0 < fraction < 1:
        raise InferenceError(f"inference: early-exit fraction must be between 0 and 1, got {fraction}")
    if samples < 2:
        raise InferenceError(f"inference: early-exit head needs at least 2 fitting samples, got {samples}")
    inputs = [v for v in model.graph.input if v.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise InferenceError(
            f"inference: early exit needs a backbone with one input and one output, got "
            f"{[v.name for v in inputs]} and {[v.name for v in model.graph.output]}"
        )
    cut = _pick_cut(plan, fraction)
    features = cut.tensors[0]
    shape = tuple(input_shape) if input_shape is not None else _declared_shape(inputs[0])

    # Run the backbone once on the fitting inputs, keeping the features as an extra output.
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(plan._value_info(features))
    x = synthetic_inputs(shape, samples, seed)
    out = _run(probe, {inputs[0].name: x})
    final, feats = out[model.graph.output[0].name], out[features]
    pooled = feats.reshape(feats.shape[0], feats.shape[1], -1).mean(axis=2).astype(np.float64)
    weights, bias = _fit_head(pooled, _log_probs(final), ridge)
    head_top1 = np.argmax(pooled @ weights + bias, axis=1)
    agreement = float(np.mean(head_top1 == np.argmax(final.reshape(len(final), -1), axis=1)))

    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    head = _head_nodes(features)
    # Right after the features' producer, so a cut just after the head carries the features alone.
    producer = plan.nodes[cut.position - 1]
    at = next(i for i, node in enumerate(graph.node) if node is producer or node == producer) + 1
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes[:at] + head + nodes[at:])
    graph.initializer.extend([
        numpy_helper.from_array(weights.astype(np.float32), _PREFIX + "gemm.weight"),
        numpy_helper.from_array(bias.astype(np.float32), _PREFIX + "gemm.bias"),
    ])
    graph.output.append(helper.make_tensor_value_info(EXIT_OUTPUT, onnx.TensorProto.FLOAT, [None, weights.shape[1]]))
    for key, value in ((FEATURES_KEY, features), (AGREEMENT_KEY, f"{agreement:.4f}")):
        result.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    return result


def early_exit_bytes(backbone: onnx.ModelProto | bytes | None = None, *, seed: int = 0, **options) -> bytes:
    """The serialized early-exit model (see ``build_early_exit``); the same bytes for the same seed."""
    return build_early_exit(backbone, seed=seed, **options).SerializeToString(deterministic=True)


def split_for_exit(model: onnx.ModelProto | bytes) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(device part: input -> ``exit_probs`` + features, upper part: features -> the backbone's output)."""
    plan = PartitionPlan(model)
    meta = {p.key: p.value for p in plan.model.metadata_props}
    features = meta.get(FEATURES_KEY)
    if features is None:
        raise InferenceError(
            f"inference: this model has no early-exit head (no {FEATURES_KEY!r} metadata); build one with build_early_exit"
        )
    after_head = next(i for i, node in enumerate(plan.nodes) if EXIT_OUTPUT in node.output) + 1
    cut = next((c for c in plan.cuts(1) if c.position == after_head), None)
    if cut is None or cut.tensors != (features,):
        raise InferenceError(
            f"inference: the early-exit head's cut at {after_head} does not carry {features!r} alone; "
            "the model was changed after build_early_exit"
        )
    device, upper = plan.split([cut])
    return device, upper


def decide(exit_probs: Sequence[float] | np.ndarray, threshold: float) -> str:
    """``"answer"`` when the head's confidence (its largest probability) is above ``threshold``, else ``"escalate"``."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)):
        raise InferenceError(f"inference: early-exit threshold must be a number in [0, 1], got {threshold!r}")
    if not 0.0 <= float(threshold) <= 1.0:  # NaN fails this too
        raise InferenceError(f"inference: early-exit threshold must be in [0, 1], got {threshold!r}")
    probs = np.asarray(exit_probs, dtype=np.float64).reshape(-1)
    if probs.size == 0 or not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise InferenceError(
            f"inference: exit probabilities must be non-empty, finite and non-negative, got {probs.tolist()[:8]}"
        )
    return ANSWER if float(probs.max()) > float(threshold) else ESCALATE


def synthetic_inputs(shape: Sequence[int], count: int, seed: int) -> np.ndarray:
    """``count`` seeded images of one item's ``shape`` in [-1, 1]: smooth random fields, the second half rotated 180°."""
    c, h, w = (int(d) for d in shape)
    rng = np.random.default_rng(seed)
    half = (count + 1) // 2
    coarse = rng.standard_normal((half, c, max(1, h // 8), max(1, w // 8)))
    smooth = np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3)[:, :, :h, :w]
    smooth = np.pad(smooth, ((0, 0), (0, 0), (0, h - smooth.shape[2]), (0, w - smooth.shape[3])), mode="edge")
    images = np.tanh(smooth + 0.3 * rng.standard_normal(smooth.shape))
    both = np.concatenate([images, images[:, :, ::-1, ::-1]])[:count]
    return np.ascontiguousarray(both, dtype=np.float32)


def _pick_cut(plan: PartitionPlan, fraction: float) -> Cut:
    """The single-tensor cut nearest ``fraction`` of the way through, on a 4-D (N, C, H, W) tensor."""
    cuts = [c for c in plan.cuts(1) if _rank(plan, c.tensors[0]) == 4]
    if not cuts:
        raise InferenceError("inference: the backbone has no single-tensor cut on an image-shaped (N,C,H,W) tensor")
    target = fraction * len(plan)
    return min(cuts, key=lambda c: (abs(c.position - target), c.position))


def _rank(plan: PartitionPlan, name: str) -> int:
    return len(plan._value_info(name).type.tensor_type.shape.dim)


def _declared_shape(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    dims = value.type.tensor_type.shape.dim[1:]
    if len(dims) != 3 or not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
        raise InferenceError(
            f"inference: input {value.name!r} has no fixed (C, H, W) shape; pass input_shape to build_early_exit"
        )
    return tuple(d.dim_value for d in dims)


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    data = model.SerializeToString(deterministic=True)
    runtime = Runtime(optimize=False)  # the fit must not depend on which fusions this machine's onnxruntime does
    runtime.load_bytes("early-exit-probe", data, model_spec_from_bytes(data))
    return runtime.run("early-exit-probe", feeds)


def _log_probs(final: np.ndarray) -> np.ndarray:
    """The full model's log-probabilities, centred per row: from its probabilities, or from logits."""
    y = final.reshape(len(final), -1).astype(np.float64)
    is_distribution = np.all(y >= 0) and np.allclose(y.sum(axis=1), 1.0, atol=1e-3)
    if is_distribution:
        logp = np.log(np.maximum(y, 1e-300))
    else:
        shifted = y - y.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    logp = np.maximum(logp, _LOG_FLOOR)
    return logp - logp.mean(axis=1, keepdims=True)


def _fit_head(pooled: np.ndarray, targets: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression ``pooled @ W + b ≈ targets`` on standardised features; W and b in raw feature units."""
    mean = pooled.mean(axis=0)
    scale = pooled.std(axis=0)
    scale[scale < 1e-8] = 1.0  # a dead channel: its weight comes out 0 anyway
    z = (pooled - mean) / scale
    t_mean = targets.mean(axis=0)
    gram = z.T @ z
    gram[np.diag_indices_from(gram)] += ridge * len(z)
    w_std = np.linalg.solve(gram, z.T @ (targets - t_mean))
    weights = w_std / scale[:, None]
    bias = t_mean - mean @ weights
    return weights, bias


def _head_nodes(features: str) -> list[onnx.NodeProto]:
    p = _PREFIX
    return [
        helper.make_node("GlobalAveragePool", [features], [p + "pooled"], name=p + "pool"),
        helper.make_node("Flatten", [p + "pooled"], [p + "flat"], name=p + "flatten", axis=1),
        helper.make_node("Gemm", [p + "flat", p + "gemm.weight", p + "gemm.bias"], [p + "logits"], name=p + "gemm"),
        helper.make_node("Softmax", [p + "logits"], [EXIT_OUTPUT], name=p + "softmax", axis=1),
    ]
