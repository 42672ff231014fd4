"""The package surface: exported names, docstrings, and purity (DESIGN: crdt does no IO, reads no clock)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import crdt

PACKAGE = Path(crdt.__file__).parent
# No IO, threads, clocks or randomness inside crdt: time and randomness are arguments.
FORBIDDEN = {
    "asyncio", "datetime", "io", "logging", "os", "pathlib", "random", "secrets", "select", "shutil",
    "socket", "sqlite3", "subprocess", "sys", "threading", "time", "trio", "uuid",
}  # fmt: skip


def test_public_api():
    assert set(crdt.__all__) >= {
        "Timestamp", "HybridLogicalClock", "Dot", "VersionVector", "CausalContext", "Entry", "LWWMap",
        "Delta", "SyncCore", "SyncDigest", "SyncDelta", "encode_message", "decode_message",
    }  # fmt: skip
    for name in crdt.__all__:
        assert hasattr(crdt, name), name


def test_every_public_name_has_a_docstring():
    missing = []
    for name in crdt.__all__:
        obj = getattr(crdt, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj) and obj.__module__.startswith("crdt"):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (callable(member) or isinstance(member, (property, classmethod))):
                    continue
                if not (getattr(member, "__doc__", None) or getattr(getattr(member, "__func__", None), "__doc__", None)):
                    missing.append(f"{name}.{attr}")
    assert missing == []


def test_crdt_imports_no_io_clock_or_randomness():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
