"""Imports only go downward (DESIGN: mesh → inference, consensus, crdt; crdt → nothing of ours)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {
    "crdt": set(),
    "consensus": {"crdt"},
    "inference": {"crdt"},
    "mesh": {"crdt", "consensus", "inference"},
}
ONLY_IMPORTER = {"libp2p": "mesh/host.py", "pysyncobj": "consensus/raft.py", "onnxruntime": "inference/runtime.py"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_downward(package):
    ours = set(ALLOWED)
    for path in sorted((ROOT / package).rglob("*.py")):
        wrong = (imports_of(path) & ours) - ALLOWED[package] - {package}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}, against the layering"


@pytest.mark.parametrize("library, home", sorted(ONLY_IMPORTER.items()))
def test_one_module_imports_each_outside_library(library, home):
    importers = [
        str(p.relative_to(ROOT))
        for pkg in ALLOWED
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if library in imports_of(p)
    ]
    assert importers == [home]


def test_layering_check_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from mesh.node import Node\nimport consensus\n")
    assert imports_of(bad) & set(ALLOWED) == {"mesh", "consensus"}


def test_test_file_names_are_unique():
    """Test folders have no __init__.py, so pytest imports test files by basename: two alike break collection."""
    root = Path(__file__).resolve().parents[1]
    seen: dict[str, Path] = {}
    for path in sorted(root.rglob("test_*.py")):
        assert path.name not in seen, f"{path} and {seen[path.name]} share a name; rename one"
        seen[path.name] = path
