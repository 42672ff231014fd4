"""read_model_spec, the spec wire format and validate_inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from crdt.errors import LocalProtocolError, RemoteProtocolError
from inference import (
    InferenceError,
    InvalidInput,
    ModelSpec,
    TensorSpec,
    read_model_spec,
    validate_inputs,
)

SHA = "ab" * 32


def test_read_model_spec_of_the_demo_model(demo_path: Path) -> None:
    spec = read_model_spec(demo_path)
    data = demo_path.read_bytes()
    assert spec.sha256 == hashlib.sha256(data).hexdigest()
    assert spec.size == len(data)
    assert spec.inputs == (TensorSpec("image", "float32", ("N", 3, 32, 32)),)
    assert spec.outputs == (TensorSpec("probs", "float32", ("N", 10)),)


def test_read_model_spec_leaves_out_initializers_listed_as_inputs(tmp_path: Path) -> None:
    # Before IR 4 every initializer also had to appear in graph.input; such
    # models are still common and the weights are not something a caller sends.
    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "mm.onnx"
    onnx.save(model, path)
    spec = read_model_spec(path)
    assert spec.inputs == (TensorSpec("x", "float32", (None, 4)),)
    assert spec.outputs == (TensorSpec("y", "float32", (None, 2)),)


@pytest.mark.parametrize("content", [b"", b"garbage, not a model", bytes(range(256)) * 4])
def test_read_model_spec_refuses_a_file_that_is_not_onnx(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(InferenceError) as info:
        read_model_spec(path)
    message = str(info.value)
    assert message.startswith(f"inference: {path} is not a valid ONNX model: ")
    assert "\n" not in message


def test_read_model_spec_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InferenceError, match="^inference: cannot read model file"):
        read_model_spec(tmp_path / "nope.onnx")


def test_model_spec_wire_round_trip(demo_spec: ModelSpec) -> None:
    assert ModelSpec.from_wire(demo_spec.to_wire()) == demo_spec
    unknown_rank = ModelSpec(SHA, 1, (TensorSpec("x", "int64", None),), (TensorSpec("y", "bool", ()),))
    assert ModelSpec.from_wire(unknown_rank.to_wire()) == unknown_rank


@pytest.mark.parametrize(
    "mutate",
    [
        lambda w: w.pop("size"),
        lambda w: w.update(extra=1),
        lambda w: w.update(sha256="AB" * 32),
        lambda w: w.update(sha256="ab"),
        lambda w: w.update(size=-1),
        lambda w: w.update(size=True),
        lambda w: w.update(inputs="image"),
        lambda w: w.update(outputs=[]),
        lambda w: w["inputs"][0].update(dtype="float128"),
        lambda w: w["inputs"][0].update(dtype=None),
        lambda w: w["inputs"][0].update(shape=[-1, 3]),
        lambda w: w["inputs"][0].update(shape=[1.5]),
        lambda w: w["inputs"][0].update(shape="N"),
        lambda w: w["inputs"][0].update(name=""),
        lambda w: w["inputs"].append(dict(w["inputs"][0])),
    ],
)
def test_model_spec_from_malformed_wire(demo_spec: ModelSpec, mutate) -> None:
    wire = demo_spec.to_wire()
    mutate(wire)
    with pytest.raises(RemoteProtocolError, match="^inference: "):
        ModelSpec.from_wire(wire)


def test_specs_validate_when_built() -> None:
    with pytest.raises(LocalProtocolError):
        TensorSpec("x", "float32", (3, -1))
    with pytest.raises(LocalProtocolError):
        TensorSpec("x", "str", (3,))
    with pytest.raises(LocalProtocolError):
        ModelSpec("not-a-sha", 1, (), (TensorSpec("y", "float32", (1,)),))


# validate_inputs: one clear line per failure kind.

SPEC = ModelSpec(
    SHA,
    100,
    (TensorSpec("image", "float32", ("N", 3, 4, 4)), TensorSpec("mask", "bool", ("N", None))),
    (TensorSpec("probs", "float32", ("N", 10)),),
)


def good() -> dict[str, np.ndarray]:
    return {"image": np.zeros((2, 3, 4, 4), np.float32), "mask": np.ones((2, 5), bool)}


def test_validate_inputs_accepts_matching_inputs() -> None:
    validate_inputs(SPEC, good())
    validate_inputs(SPEC, {"image": np.zeros((0, 3, 4, 4), np.float32), "mask": np.ones((0, 9), bool)})


def check(inputs: dict, *fragments: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_inputs(SPEC, inputs)
    message = str(info.value)
    assert message.startswith("inference: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_input_lists_the_expected_names() -> None:
    inputs = good()
    del inputs["mask"]
    check(inputs, "missing input 'mask'", "['image', 'mask']")


def test_unexpected_input_is_named() -> None:
    check({**good(), "extra": np.zeros(1)}, "unexpected input 'extra'", "['image', 'mask']")


def test_wrong_dtype_says_expected_and_got() -> None:
    check({**good(), "image": np.zeros((2, 3, 4, 4), np.float64)}, "dtype float64, expected float32")


def test_wrong_rank_shows_both_shapes() -> None:
    check({**good(), "image": np.zeros((3, 4, 4), np.float32)}, "[3, 4, 4]", "[N, 3, 4, 4]", "rank")


def test_wrong_fixed_dimension_shows_both_shapes() -> None:
    check(
        {**good(), "image": np.zeros((2, 3, 4, 5), np.float32)},
        "[2, 3, 4, 5]",
        "[N, 3, 4, 4]",
        "dimension 3 must be 4",
    )


def test_a_symbolic_dimension_must_agree_across_inputs() -> None:
    check({**good(), "mask": np.ones((3, 5), bool)}, "N=3", "N=2")


def test_a_non_array_input_is_refused() -> None:
    check({**good(), "image": [[0.0]]}, "must be a numpy array")
