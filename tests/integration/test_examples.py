"""The scripts in examples/ run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mesh.cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    "script, expected",
    [
        ("embed_trio.py", ["state: 0.31", "config: auto", "raft: leader"]),
        ("embed_sync.py", ["state: closed", "config: {'armed': True}", "peer id: 12D3KooW"]),
    ],
)
def test_example_runs(tmp_path, script, expected):
    node = LocalCluster(tmp_path).init_node("example")
    out = subprocess.run([sys.executable, str(EXAMPLES / script), str(node.data_dir)],
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    for line in expected:
        assert line in out.stdout
