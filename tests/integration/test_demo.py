"""`meshnode demo` — the README's first command — runs end to end and cleans up after itself."""

from __future__ import annotations

import os
import subprocess

import pytest

from mesh.cluster import meshnode_cmd

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.long  # the README's first command, whole: CI's second stage (the first stays under ten minutes)
def test_demo_runs_and_leaves_nothing_behind(tmp_path):
    env_tmp = tmp_path / "tmp"
    env_tmp.mkdir()
    out = subprocess.run(meshnode_cmd("demo"), capture_output=True, text=True, timeout=240,
                         env=dict(os.environ, TMPDIR=str(env_tmp)))
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for needle in ("every node sees every other", "leader is", "home.mode = 'away'", "3 readings on all 3 nodes",
                   "offloaded to", "identical outputs everywhere", "exit threshold 0.0 → early_exit on camera",
                   "ocr early exit     early_exit then split", "a fridge's hum", "power cut          nothing lost",
                   "summary"):
        assert needle in text, f"{needle!r} missing from:\n{text}"
    assert f"nodes in {env_tmp}/meshnode-demo-" in text
    # The demo's node dirs are gone (other libraries may leave their own dotfiles in TMPDIR).
    assert list(env_tmp.glob("meshnode-demo-*")) == []


def test_client_commands_default_to_meshnode_home(tmp_path):
    env = dict(os.environ, MESHNODE_HOME=str(tmp_path / "home"))
    out = subprocess.run(meshnode_cmd("status"), capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1 and str(tmp_path / "home") in out.stderr
