"""Partitioner: cut points, fusion groups, multi-tensor cuts, atomic subgraphs, refusals; the generated CNNs."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from inference import InferenceError, Runtime
from inference.catalog import shipped_model
from inference.cnn import cnn_bytes, mobilenet_v2, resnet18
from inference.demo_model import demo_model_bytes
from inference.partition import FUSION_ACTIVATIONS, FUSION_ANCHORS, PartitionPlan, find_cuts, run_chain, split
from inference.spec import model_spec_from_bytes


@functools.cache
def model(name: str) -> onnx.ModelProto:
    if name == "demo":
        return onnx.load_model_from_string(demo_model_bytes(0))
    return {"resnet18": resnet18, "mobilenet_v2": mobilenet_v2}[name](0)


MODELS = ["demo", "resnet18", "mobilenet_v2"]


def run_parts(parts: list[onnx.ModelProto], feeds: dict, *, optimize: bool = False) -> dict:
    runtime = Runtime(optimize=optimize)
    for k, part in enumerate(parts):
        data = part.SerializeToString()
        runtime.load_bytes(f"part{k}", data, model_spec_from_bytes(data))
    return run_chain(parts, feeds, lambda k, f: runtime.run(f"part{k}", f))


def run_whole(m: onnx.ModelProto, feeds: dict) -> dict:
    return run_parts([m], feeds)


# -- the generated CNNs


def test_cnn_bytes_are_deterministic_per_seed() -> None:
    assert cnn_bytes("mobilenet_v2", 3) == cnn_bytes("mobilenet_v2", 3)
    assert cnn_bytes("mobilenet_v2", 3) != cnn_bytes("mobilenet_v2", 4)


@pytest.mark.parametrize("name, params", [("resnet18", 11.7e6), ("mobilenet_v2", 3.5e6)])
def test_cnns_are_full_size_and_valid(name: str, params: float) -> None:
    m = model(name)
    onnx.checker.check_model(m)
    count = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
    assert abs(count - params) / params < 0.02
    ops = {n.op_type for n in m.graph.node}
    assert {"Conv", "Add", "GlobalAveragePool", "Gemm"} <= ops
    assert ("Relu" if name == "resnet18" else "Clip") in ops


def test_unknown_cnn_and_bad_size_are_refused() -> None:
    with pytest.raises(InferenceError, match="no generated CNN called 'vgg'"):
        cnn_bytes("vgg")
    with pytest.raises(InferenceError, match="multiple of 32"):
        resnet18(size=40)


# -- cut points


@pytest.mark.parametrize("name", MODELS)
def test_single_tensor_cuts_are_found(name: str) -> None:
    cuts = find_cuts(model(name))
    single = [c for c in cuts if c.single]
    assert len(single) >= 5
    assert all(c.nbytes and c.nbytes > 0 for c in cuts)
    # The tensor before the head is always a single-tensor cut.
    assert any(c.tensors == ("pool",) for c in single)


def test_resnet_single_cuts_follow_every_block() -> None:
    single = {c.tensors[0] for c in find_cuts(model("resnet18")) if c.single}
    blocks = {f"layer{s}.{b}.relu2.out" for s in range(1, 5) for b in range(2)}
    assert blocks <= single


def test_demo_cut_after_the_residual_block() -> None:
    cut = next(c for c in find_cuts(model("demo")) if c.tensors == ("block1.out",))
    assert cut.nbytes == 16 * 32 * 32 * 4  # one item: [1, 16, 32, 32] float32


@pytest.mark.parametrize("name", MODELS)
def test_no_cut_between_a_conv_and_its_activation(name: str) -> None:
    # Rule: onnxruntime fuses Conv/Gemm/MatMul with a following BatchNorm, Add and activation; never cut inside.
    plan = PartitionPlan(model(name))
    readers: dict[str, list] = {}
    for node in plan.nodes:
        for x in node.input:
            readers.setdefault(x, []).append(node)
    for cut in plan.cuts():
        before = plan.nodes[cut.position - 1]
        after = readers.get(before.output[0], [])
        if before.op_type in FUSION_ANCHORS and len(after) == 1:
            assert after[0].op_type not in FUSION_ACTIVATIONS | {"Add", "BatchNormalization"}, cut
    conv_relu = next(i for i, n in enumerate(plan.nodes) if n.op_type in ("Relu", "Clip"))
    with pytest.raises(InferenceError, match="inside the fusion group"):
        plan.split([conv_relu])


def test_conv_batchnorm_relu_is_one_group() -> None:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        *(numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("scale", "var")),
        *(numpy_helper.from_array(np.zeros(4, np.float32), n) for n in ("bias", "mean")),
    ]
    nodes = [
        helper.make_node("Relu", ["x"], ["r0"]),
        helper.make_node("Conv", ["r0", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r1"]),
        helper.make_node("Sigmoid", ["r1"], ["y"]),
    ]
    m = _model(nodes, [_vi("x", [1, 3, 8, 8])], [_vi("y", [1, 4, 8, 8])], inits)
    assert [c.position for c in find_cuts(m)] == [1, 4]


def test_multi_tensor_cut_across_a_residual_block_reproduces_the_model() -> None:
    m = resnet18(0, width=0.25)
    cut = next(c for c in find_cuts(m) if c.tensors == ("stem.pool", "layer1.0.relu1.out"))
    assert cut.nbytes == 2 * 16 * 16 * 16 * 4
    parts = split(m, [cut])
    assert [v.name for v in parts[1].graph.input] == ["stem.pool", "layer1.0.relu1.out"]
    feeds = {"image": np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)}
    np.testing.assert_array_equal(run_parts(parts, feeds)["logits"], run_whole(m, feeds)["logits"])


def test_parts_carry_only_the_weights_they_read() -> None:
    m = model("mobilenet_v2")
    cuts = [c for c in find_cuts(m) if c.single][::4]
    parts = split(m, cuts)
    names = [t.name for p in parts for t in p.graph.initializer]
    # Only the shared Clip bounds are copied into more than one part.
    shared = {n for n in names if names.count(n) > 1}
    assert shared <= {"relu6.min", "relu6.max"}
    assert set(names) == {t.name for t in m.graph.initializer}
    for part in parts:
        onnx.checker.check_model(part)


def test_constants_are_cloned_not_carried() -> None:
    shape = helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([1, -1], np.int64)))
    nodes = [shape, helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["b"]),
             helper.make_node("Reshape", ["b", "shape"], ["y"])]
    m = _model(nodes, [_vi("x", [1, 2, 3])], [_vi("y", [1, 6])])
    assert [(c.position, c.tensors) for c in find_cuts(m)] == [(1, ("a",)), (2, ("b",))]
    parts = split(m, [2])
    feeds = {"x": np.arange(-3, 3, dtype=np.float32).reshape(1, 2, 3)}
    np.testing.assert_array_equal(run_parts(parts, feeds)["y"], run_whole(m, feeds)["y"])


# -- subgraphs and recurrent state


def _if_model() -> onnx.ModelProto:
    then = helper.make_graph([helper.make_node("Add", ["a", "b"], ["t"])], "then", [], [_vi("t", [2, 3])])
    other = helper.make_graph([helper.make_node("Sub", ["a", "b"], ["e"])], "else", [], [_vi("e", [2, 3])])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Neg", ["x"], ["b"]),
        helper.make_node("If", ["cond"], ["z"], then_branch=then, else_branch=other),
        helper.make_node("Sigmoid", ["z"], ["y"]),
    ]
    return _model(nodes, [_vi("x", [2, 3]), _vi("cond", [], TensorProto.BOOL)], [_vi("y", [2, 3])])


def test_if_is_atomic_and_its_outer_reads_cross_the_cut() -> None:
    plan = PartitionPlan(_if_model())
    crossing = {c.position: c.tensors for c in plan.cuts()}
    # Before the If: the branches read a and b from the outer scope, and cond.
    assert crossing == {1: ("x", "cond", "a"), 2: ("cond", "a", "b"), 3: ("z",)}
    feeds = {"x": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}
    for cond in (True, False):
        feeds["cond"] = np.array(cond)
        whole = run_whole(plan.model, feeds)["y"]
        for cuts in ([2], [3], [1, 2, 3]):
            np.testing.assert_array_equal(run_parts(plan.split(cuts), feeds)["y"], whole)


def test_loop_is_atomic() -> None:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["acc_in", "a"], ["acc_out"])],
        "body",
        [_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL), _vi("acc_in", [2])],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("acc_out", [2])],
    )
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Loop", ["trips", "", "x"], ["acc"], body=body),
        helper.make_node("Neg", ["acc"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(3, np.int64), "trips")]
    m = _model(nodes, [_vi("x", [2])], [_vi("y", [2])], inits)
    with pytest.raises(InferenceError, match="cannot cut across tensor 'acc': shape inference gave it no type or rank"):
        PartitionPlan(m).split([2])
    m.graph.value_info.append(_vi("acc", [2]))  # onnx cannot infer a Loop's carried shape; the model declares it
    plan = PartitionPlan(m)
    assert [(c.position, c.tensors) for c in plan.cuts()] == [(1, ("x", "a")), (2, ("acc",))]
    feeds = {"x": np.array([-1.0, 2.0], np.float32)}
    np.testing.assert_array_equal(run_parts(plan.split([1, 2]), feeds)["y"], run_whole(m, feeds)["y"])


def _lstm_model(state_from_caller: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((1, 16, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((1, 16, 4)).astype(np.float32), "R")]
    state = ["", "", "h0"] if state_from_caller else []  # X, W, R, B, sequence_lens, initial_h
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("LSTM", ["r", "W", "R", *state], ["", "h"], name="encoder.lstm", hidden_size=4)]
    inputs = [_vi("x", [5, 1, 3])] + ([_vi("h0", [1, 1, 4])] if state_from_caller else [])
    return _model(nodes, inputs, [_vi("h", [1, 1, 4])], inits)


def test_recurrent_state_from_the_caller_is_refused_naming_the_node() -> None:
    with pytest.raises(InferenceError, match="LSTM node 'encoder.lstm' takes its initial state 'h0' from the caller"):
        find_cuts(_lstm_model(state_from_caller=True))
    # Without caller state the LSTM is just one (atomic) node.
    assert [c.tensors for c in find_cuts(_lstm_model(state_from_caller=False))] == [("r",)]


def test_loop_state_fed_back_between_calls_is_refused() -> None:
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c2"]), helper.make_node("Add", ["s", "x"], ["s2"])], "body",
        [_vi("i", [], TensorProto.INT64), _vi("c", [], TensorProto.BOOL), _vi("s", [2])],
        [_vi("c2", [], TensorProto.BOOL), _vi("s2", [2])],
    )
    nodes = [helper.make_node("Relu", ["x0"], ["x"]),
             helper.make_node("Loop", ["", "go", "state"], ["state_out"], name="accumulate", body=body)]
    m = _model(nodes, [_vi("x0", [2]), _vi("go", [], TensorProto.BOOL), _vi("state", [2])], [_vi("state_out", [2])])
    with pytest.raises(InferenceError, match="Loop node 'accumulate' carries 'state' -> 'state_out'"):
        PartitionPlan(m)


def test_silero_vad_is_refused_for_its_recurrent_state() -> None:
    # Shipped model: the caller feeds `state` back each chunk, into an LSTM inside an If.
    vad = onnx.load(str(shipped_model("silero-vad").path()))
    with pytest.raises(InferenceError, match=r"cannot partition: LSTM node .* from the caller .*'state'"):
        PartitionPlan(vad)


@pytest.mark.parametrize("name", ["ppocr-det", "ppocr-rec", "ppocr-cls"])
def test_shipped_ocr_models_have_single_tensor_cuts(name: str) -> None:
    plan = PartitionPlan(onnx.load(str(shipped_model(name).path())))
    single = [c for c in plan.cuts() if c.single]
    assert len(single) >= 30
    assert all(c.nbytes is not None and c.nbytes > 0 for c in single)


# -- malformed models and bad cuts


def test_malformed_models_are_refused_clearly() -> None:
    with pytest.raises(InferenceError, match="no nodes"):
        find_cuts(onnx.ModelProto())
    with pytest.raises(InferenceError, match="not an ONNX model"):
        find_cuts(b"\xff\xff garbage")
    with pytest.raises(InferenceError, match="expected an onnx.ModelProto"):
        find_cuts("model.onnx")  # type: ignore[arg-type]
    dangling = _model([helper.make_node("Add", ["x", "ghost"], ["y"], name="add")], [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(InferenceError, match="node 'add' reads 'ghost'"):
        find_cuts(dangling)
    loop = _model([helper.make_node("Add", ["x", "b"], ["a"], name="one"), helper.make_node("Neg", ["a"], ["b"])],
                  [_vi("x", [2])], [_vi("b", [2])])
    with pytest.raises(InferenceError, match="cycle"):
        find_cuts(loop)


def test_bad_cut_positions_are_refused() -> None:
    plan = PartitionPlan(model("demo"))
    with pytest.raises(InferenceError, match="outside"):
        plan.split([0])
    with pytest.raises(InferenceError, match="strictly increasing"):
        plan.split([11, 7])


def test_early_outputs_leave_the_part_that_makes_them() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["early"]), helper.make_node("Neg", ["early"], ["a"]),
             helper.make_node("Sigmoid", ["a"], ["late"])]
    m = _model(nodes, [_vi("x", [3])], [_vi("early", [3]), _vi("late", [3])])
    parts = split(m, [2])
    assert [v.name for v in parts[0].graph.output] == ["early", "a"]
    assert [v.name for v in parts[1].graph.input] == ["a"]


def test_an_output_computed_from_weights_alone_leaves_the_first_part() -> None:
    nodes = [helper.make_node("Neg", ["w"], ["bias_out"]), helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Add", ["a", "w"], ["b"]), helper.make_node("Sigmoid", ["b"], ["y"])]
    m = _model(nodes, [_vi("x", [3])], [_vi("bias_out", [3]), _vi("y", [3])],
               [numpy_helper.from_array(np.array([1.0, -2.0, 3.0], np.float32), "w")])
    parts = split(m, [1])
    assert [v.name for v in parts[0].graph.output] == ["bias_out", "a"]
    feeds = {"x": np.array([-1.0, 0.5, 2.0], np.float32)}
    chained, whole = run_parts(parts, feeds), run_whole(m, feeds)
    for out in ("bias_out", "y"):
        np.testing.assert_array_equal(chained[out], whole[out])


def _vi(name: str, shape: list, dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "t", inputs, outputs, initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m
