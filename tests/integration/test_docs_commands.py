"""The commands in the docs run as written: every ``sh`` block of the guides, in order, on real nodes.

Each guide's ``sh`` blocks are read from the Markdown and run top to bottom in
one temp directory, with ``/tmp/mesh`` pointing into it and placeholders such
as ``<a's join address>`` filled from what earlier commands printed.
``meshnode run DIR`` starts a real node process in the background (stopped at
the end); every other command must exit 0. The few lines that set up the
environment this test already runs in (``make``, activating the venv) are
named in ``SETUP`` and only those are skipped, so a command added to a guide
is run, or this test fails naming it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mesh.cluster import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCS = Path(__file__).resolve().parents[2] / "docs"
SETUP = {"make demo", "make test", ". .venv/bin/activate"}  # how you get the environment this test runs in
FENCE = re.compile(r"^```(\w*)\s*$")


def sh_commands(markdown: str) -> list[str]:
    """The commands of every ``sh`` block, comments stripped, in order."""
    out, inside = [], None
    for line in markdown.splitlines():
        fence = FENCE.match(line.strip())
        if fence:
            inside = None if inside is not None else fence.group(1)
            continue
        if inside == "sh":
            command = re.split(r"\s+#\s", " " + line.strip(), maxsplit=1)[0].strip()
            if command and not command.startswith("#"):
                out.append(command)
    return out


class Session:
    """Runs a guide's commands like a user in one shell: nodes in the background, the rest in turn."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.values: dict[str, str] = {}
        self.nodes: list[tuple[Path, subprocess.Popen]] = []

    def expand(self, command: str) -> list[str]:
        command = command.replace("/tmp/mesh/", f"{self.root}/mesh/")
        for placeholder, value in self.values.items():
            command = command.replace(placeholder, value)
        left = re.findall(r"<[^>]+>", command)
        assert not left, f"no value for {left} in {command!r}"
        argv = shlex.split(command)
        assert argv[0] == "meshnode", f"a docs command this test cannot run: {command!r}"
        return [sys.executable, "-m", "mesh", *argv[1:]]

    def run(self, command: str) -> str:
        argv = self.expand(command)
        if argv[3] == "run":
            self.start(Path(argv[4]))
            return ""
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=self.root)
        assert out.returncode == 0, f"{command!r} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
        if argv[3] == "init":
            name = Path(argv[4]).name
            join = re.search(r"join address: (\S+)", out.stdout)
            if join:
                self.values[f"<{name}'s join address>"] = join.group(1)
        return out.stdout

    def start(self, data_dir: Path) -> None:
        log = open(self.root / f"{data_dir.name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "mesh", "run", str(data_dir)], stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True)
        log.close()
        self.nodes.append((data_dir, proc))

    def settle(self) -> None:
        """Wait, as the guide's reader does, until the nodes started so far are up and agree on a leader."""
        if not self.nodes:
            return
        for data_dir, proc in self.nodes:
            wait_for(lambda d=data_dir, p=proc: (d / "api.addr").exists() or p.poll() is not None, 60,
                     f"{data_dir.name} to serve its API")
            assert proc.poll() is None, (self.root / f"{data_dir.name}.log").read_text()[-3000:]

        def leader_known() -> bool:
            out = subprocess.run([sys.executable, "-m", "mesh", "status", "-d", str(self.nodes[-1][0]), "--json"],
                                 capture_output=True, text=True, timeout=30)
            return out.returncode == 0 and '"leader": "' in out.stdout

        wait_for(leader_known, 60, "the nodes to agree on a Raft leader", interval=0.5)

    def close(self) -> None:
        for _, proc in self.nodes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _, proc in self.nodes:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_guide(path: Path, root: Path) -> dict[str, str]:
    """Run every command of the guide at ``path``; returns what each printed."""
    session = Session(root)
    ran = {}
    try:
        started = 0
        for command in sh_commands(path.read_text()):
            if command in SETUP:
                continue
            if len(session.nodes) > started and not command.startswith("meshnode run "):
                session.settle()  # the guide's next step uses the nodes it just started
                started = len(session.nodes)
            ran[command] = session.run(command)
    finally:
        session.close()
    return ran


def test_sh_blocks_are_read_with_comments_stripped():
    text = "intro\n```sh\nmeshnode init /tmp/mesh/a   # comment\n# only a comment\n\nmake demo\n```\n" \
           "```yaml\nkey: value\n```\n```sh\nmeshnode peers -d /tmp/mesh/a\n```\n"
    assert sh_commands(text) == ["meshnode init /tmp/mesh/a", "make demo", "meshnode peers -d /tmp/mesh/a"]


def test_the_tutorial_runs_as_written(tmp_path):
    ran = run_guide(DOCS / "tutorial.md", tmp_path)
    assert len([c for c in ran if c.startswith("meshnode run ")]) == 3
    # What the tutorial says each step shows.
    assert "away" in ran["meshnode config get home.mode -d /tmp/mesh/a"]
    assert "kitchen/temp" in ran["meshnode state list -d /tmp/mesh/a"]
