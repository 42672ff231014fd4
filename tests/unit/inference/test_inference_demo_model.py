"""The generated demo classifier."""

from __future__ import annotations

from pathlib import Path

import onnx

from inference import build_demo_model, read_model_spec


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    a = build_demo_model(tmp_path / "a.onnx", seed=3).read_bytes()
    b = build_demo_model(tmp_path / "b.onnx", seed=3).read_bytes()
    c = build_demo_model(tmp_path / "c.onnx", seed=4).read_bytes()
    assert a == b
    assert a != c


def test_demo_model_passes_the_checker_and_has_the_documented_shape(demo_path: Path) -> None:
    model = onnx.load(demo_path)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "Relu", "Add", "GlobalAveragePool", "Gemm", "Softmax"} <= ops
    spec = read_model_spec(demo_path)
    assert [(s.name, s.dtype, s.shape) for s in spec.inputs] == [("image", "float32", ("N", 3, 32, 32))]
    assert [(s.name, s.dtype, s.shape) for s in spec.outputs] == [("probs", "float32", ("N", 10))]


def test_build_returns_the_path_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.onnx"
    assert build_demo_model(path) == path
    assert [p.name for p in tmp_path.iterdir()] == ["demo.onnx"]
