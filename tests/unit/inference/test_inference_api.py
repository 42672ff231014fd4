"""The names the mesh layer imports from ``inference`` (pinned, STYLE.md 13)."""

from __future__ import annotations

import ast
from pathlib import Path

import inference

PACKAGE = Path(inference.__file__).parent


def test_public_names() -> None:
    assert set(inference.__all__) == {
        "MAX_HOPS", "MAX_TENSOR_BYTES", "WIRE_DTYPES",
        "InferReply", "InferRequest", "InferenceError", "InvalidInput", "ModelSpec",
        "Overloaded", "ResultCache", "Runtime", "TensorSpec",
        "build_demo_model", "decode_tensors", "encode_tensors",
        "read_model_spec", "result_key", "validate_inputs",
    }  # fmt: skip
    assert all(hasattr(inference, name) for name in inference.__all__)


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_runtime_imports_onnxruntime_and_only_crdt_of_ours() -> None:
    for path in PACKAGE.glob("*.py"):
        found = imports_of(path)
        assert "onnxruntime" not in found or path.name == "runtime.py", path
        assert not found & {"mesh", "consensus"}, path
