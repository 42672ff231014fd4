"""A chaos run leaves nothing behind: stopped by SIGTERM it stops its nodes; `chaos clean` ends a hard-killed run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mesh.chaos.runner import DIR_PREFIX, clean
from mesh.cluster import meshnode_cmd, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long, pytest.mark.timeout(180)]


def node_pids(root: Path) -> list[int]:
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if " -m mesh run " in cmdline and str(root) in cmdline:
            out.append(int(proc.name))
    return out


def run_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"))


def test_a_run_stopped_by_sigterm_stops_its_nodes_and_removes_its_dir(tmp_path):
    before = run_dirs()
    log = open(tmp_path / "run.log", "wb")
    run = subprocess.Popen(meshnode_cmd("chaos", "run", "--backend", "local", "--nodes", "3", "--duration", "120",
                                        "--nemesis", "kill", "--workload", "sensor"),
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        new = wait_for(lambda: (run_dirs() - before) or None, 60, "the run's temp dir")
        root = next(iter(new))
        wait_for(lambda: len(node_pids(root)) == 3, 90, "the run's three nodes")
        wait_for(lambda: b" ops " in (tmp_path / "run.log").read_bytes(), 90, "the load to run")
        run.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        run.send_signal(signal.SIGTERM)  # a second one (a wrapper passing its own on) must not cut the clean-up short
        assert run.wait(60) != 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
        log.close()
    assert node_pids(root) == [] and not root.exists(), (tmp_path / "run.log").read_text()[-2000:]


def test_clean_ends_the_nodes_of_a_run_that_was_killed_hard():
    root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
    # Stands in for a node of a SIGKILLed run: its command line names a data dir under the run's temp dir.
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "-m", "mesh", "run",
                                 str(root / "local" / "n0")], start_new_session=True)
    try:
        wait_for(lambda: node_pids(root) == [leftover.pid], 10, "the leftover to show")
        done = clean()
        assert any(line.startswith(f"process {leftover.pid} ") for line in done) and str(root) in done
        assert leftover.wait(10) == -signal.SIGKILL
        assert not root.exists()
    finally:
        if leftover.poll() is None:
            os.kill(leftover.pid, signal.SIGKILL)
            leftover.wait(10)
