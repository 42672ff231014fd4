"""Reading a model's spec from its file, and checking inputs against a spec.

``read_model_spec`` is how a model gets its identity (sha256 of the file bytes)
and its calling convention (the graph's inputs minus initializers, and its
outputs). ``validate_inputs`` runs before every inference so a caller gets one
clear line instead of an onnxruntime stack trace. Models that keep weights in
external data files are not supported: the hash would not cover them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from crdt.errors import LocalProtocolError
from inference.errors import InferenceError, InvalidInput
from inference.messages import SPEC_DTYPES, Dim, ModelSpec, TensorSpec


def read_model_spec(path: Path) -> ModelSpec:
    """The spec of the ONNX model at ``path``; InferenceError if it is not one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InferenceError(f"inference: cannot read model file {path}: {exc}") from exc
    return model_spec_from_bytes(data, origin=str(path))


def model_spec_from_bytes(data: bytes, origin: str = "<bytes>") -> ModelSpec:
    """The spec of a serialized ONNX model; ``origin`` names it in errors."""
    try:
        model = onnx.load_model_from_string(data)
        # An empty or random byte string can still parse as a (meaningless)
        # ModelProto, so only the checker tells a model from garbage.
        onnx.checker.check_model(model)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InferenceError(f"inference: {origin} is not a valid ONNX model: {reason}") from exc
    graph = model.graph
    initializers = {t.name for t in graph.initializer} | {t.name for t in graph.sparse_initializer}
    try:
        inputs = tuple(_tensor_spec(v) for v in graph.input if v.name not in initializers)
        outputs = tuple(_tensor_spec(v) for v in graph.output)
        return ModelSpec(hashlib.sha256(data).hexdigest(), len(data), inputs, outputs)
    except (InferenceError, LocalProtocolError) as exc:
        raise InferenceError(f"inference: {origin} cannot be served: {exc}") from exc


def _tensor_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise InferenceError(f"{value.name!r} is a {kind}, only tensors are supported")
    tensor = value.type.tensor_type
    type_name = onnx.TensorProto.DataType.Name(tensor.elem_type)
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
    except Exception:
        dtype = type_name
    if dtype not in SPEC_DTYPES:
        raise InferenceError(f"{value.name!r} has element type {type_name}, which is not supported")
    if not tensor.HasField("shape"):
        return TensorSpec(value.name, dtype, None)
    dims: list[Dim] = []
    for d in tensor.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param != "?":
            dims.append(d.dim_param)
        else:
            # Unknown. paddle2onnx says "any size" with a dim_value of -1 and with the
            # dim_param "?" on several axes at once (PP-OCR's [N,3,?,?] takes H != W);
            # onnxruntime reads both as free, so must we.
            dims.append(None)
    return TensorSpec(value.name, dtype, tuple(dims))


def validate_inputs(spec: ModelSpec, inputs: Mapping[str, np.ndarray]) -> None:
    """Raise InvalidInput, with one clear line, unless ``inputs`` fit ``spec``.

    Checks, in order: missing names, unexpected names, then per input its type,
    dtype, rank, fixed dimensions, and that a symbolic dimension (``"N"``) has
    the same size in every input that uses it (ONNX: same dim_param, same size).
    """
    expected = spec.input_names
    for name in expected:
        if name not in inputs:
            raise InvalidInput(
                f"inference: missing input {name!r}; the model expects inputs {expected}, "
                f"got {list(inputs)}"
            )
    for name in inputs:
        if name not in expected:
            raise InvalidInput(
                f"inference: unexpected input {name!r}; the model expects inputs {expected}"
            )
    bound: dict[str, tuple[int, str]] = {}
    for ts in spec.inputs:
        array = inputs[ts.name]
        if not isinstance(array, np.ndarray):
            raise InvalidInput(
                f"inference: input {ts.name!r} must be a numpy array, got {type(array).__name__}"
            )
        if array.dtype.name != ts.dtype:
            raise InvalidInput(
                f"inference: input {ts.name!r} has dtype {array.dtype.name}, expected {ts.dtype}"
            )
        if ts.shape is None:
            continue
        got = list(array.shape)
        if len(got) != len(ts.shape):
            raise InvalidInput(
                f"inference: input {ts.name!r} has shape {got} (rank {len(got)}), "
                f"expected {ts.format_shape()} (rank {len(ts.shape)})"
            )
        for axis, (want, have) in enumerate(zip(ts.shape, got)):
            if isinstance(want, int) and want != have:
                raise InvalidInput(
                    f"inference: input {ts.name!r} has shape {got}, expected {ts.format_shape()} "
                    f"(dimension {axis} must be {want})"
                )
            if isinstance(want, str):
                first = bound.setdefault(want, (have, ts.name))
                if first[0] != have:
                    raise InvalidInput(
                        f"inference: input {ts.name!r} has {want}={have} (dimension {axis}) but "
                        f"input {first[1]!r} has {want}={first[0]}; they must agree"
                    )
