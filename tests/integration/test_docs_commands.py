"""The commands in the docs run as written: every ``sh`` block of the guides, in order, on real nodes.

They run in CI's second stage (``long``): the tutorial on one laptop, its three-machine part
(network namespaces), the README, the how-to guides and the chaos page (each with a chaos run).

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
from mesh.netlab import IP, Lan, why_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCS = Path(__file__).resolve().parents[2] / "docs"
README = DOCS.parent / "README.md"
SETUP = {"make demo", "make test", ". .venv/bin/activate"}  # how you get the environment this test runs in
# An hour long: run by hand, its results are in docs/chaos.md (the same harness runs 120 s below).
BY_HAND = {"meshnode chaos run --nodes 5 --duration 3600 --seed 2026 --nemesis all --report ./hour --logs ./hour/logs"}
FENCE = re.compile(r"^```(\w*)\s*$")
MACHINE = re.compile(r"^# on (\w+)\b")


def sh_commands(markdown: str) -> list[str]:
    """The commands of every ``sh`` block, comments stripped, in order."""
    out, inside = [], None
    for line in markdown.splitlines():
        fence = FENCE.match(line.strip())
        if fence:
            inside = None if inside is not None else fence.group(1)
            continue
        if inside == "sh":
            machine = MACHINE.match(line.strip())
            if machine:  # "# on b": the lines below run on machine b (a guide for several machines)
                out.append(f"@{machine.group(1)}")
                continue
            command = re.split(r"\s+#\s", " " + line.strip(), maxsplit=1)[0].strip()
            if command and not command.startswith("#"):
                out.append(command)
    return out


class Session:
    """Runs a guide's commands like a user in one shell: nodes in the background, the rest in turn.

    On several machines (``# on b`` lines), each machine is a network namespace of a private LAN
    (``mesh.netlab.Lan``) with its own address and its own home directory for ``~``.
    """

    def __init__(self, root: Path, lan: Lan | None = None) -> None:
        self.root = root
        self.values: dict[str, str] = {}
        self.nodes: list[tuple[Path, subprocess.Popen, list[str]]] = []
        self.lan, self.machine, self.machines = lan, "", {}

    def on(self, machine: str) -> None:
        assert self.lan is not None, f"'# on {machine}' in a guide this test runs on one machine"
        if machine not in self.machines:
            index = len(self.machines)
            ns, addr = self.lan.add_host(index)
            self.machines[machine] = [IP, "netns", "exec", ns]
            self.values[f"<{machine}'s address>"] = addr
            (self.root / machine).mkdir()
        self.machine = machine

    def prefix(self) -> list[str]:
        return self.machines[self.machine] if self.machine else []

    def expand(self, command: str) -> list[str]:
        command = command.replace("/tmp/mesh/", f"{self.root}/mesh/")
        home = f"{self.root}/{self.machine}" if self.machine else f"{self.root}/home"
        command = re.sub(r"(^|\s)~/", rf"\g<1>{home}/", command)
        for placeholder, value in self.values.items():
            command = command.replace(placeholder, value)
        left = re.findall(r"<[^>]+>", command)
        assert not left, f"no value for {left} in {command!r}"
        argv = shlex.split(command)
        if argv[0] == "python":
            return [sys.executable, *argv[1:]]
        assert argv[0] == "meshnode", f"a docs command this test cannot run: {command!r}"
        return [sys.executable, "-m", "mesh", *argv[1:]]

    def run(self, command: str) -> str:
        if command.startswith("@"):
            self.on(command[1:])
            return ""
        argv = self.expand(command)
        verb = argv[3] if argv[1:3] == ["-m", "mesh"] else ""
        if verb == "run":
            self.start(Path(argv[4]))
            return ""
        out = subprocess.run(self.prefix() + argv, capture_output=True, text=True, timeout=300, cwd=self.root)
        assert out.returncode == 0, f"{command!r} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
        if verb == "init":  # what the next commands refer to: <a's join address>, <d's peer id>
            name = self.machine or Path(argv[4]).name
            for what in ("join address", "peer id"):
                found = re.search(rf"{what}: (\S+)", out.stdout)
                if found:
                    self.values[f"<{name}'s {what}>"] = found.group(1)
        elif verb == "invite":
            self.values["<the token>"] = out.stdout.split()[0]
        return out.stdout

    def start(self, data_dir: Path) -> None:
        log_path = self.root / f"{self.machine or data_dir.name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(self.prefix() + [sys.executable, "-m", "mesh", "run", str(data_dir)], stdout=log,
                                    stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True)
        self.nodes.append((data_dir, proc, self.prefix()))

    def settle(self) -> None:
        """Wait, as the guide's reader does, until the nodes started so far are up and agree on a leader."""
        if not self.nodes:
            return
        for data_dir, proc, _ in self.nodes:
            wait_for(lambda d=data_dir, p=proc: (d / "api.addr").exists() or p.poll() is not None, 90,
                     f"{data_dir} to serve its API")
            assert proc.poll() is None, f"the node in {data_dir} stopped"
        last, _, prefix = self.nodes[-1]

        def leader_known() -> bool:
            out = subprocess.run(prefix + [sys.executable, "-m", "mesh", "status", "-d", str(last), "--json"],
                                 capture_output=True, text=True, timeout=30)
            return out.returncode == 0 and '"leader": "' in out.stdout

        wait_for(leader_known, 60, "the nodes to agree on a Raft leader", interval=0.5)

    def close(self) -> None:
        for _, proc, _ in self.nodes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _, proc, _ in self.nodes:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_guide(texts: list[str], root: Path, lan: Lan | None = None) -> dict[str, str]:
    """Run every command of the guides' ``texts`` (Markdown), in one session; returns what each printed."""
    session = Session(root, lan)
    ran = {}
    try:
        started = 0
        # "meshnode run a &  meshnode run b &" starts each in the background, as a shell would.
        commands = [part.strip() for text in texts for c in sh_commands(text)
                    for part in (c.split("&") if c.endswith("&") else [c]) if part.strip()]
        for command in commands:
            if command in SETUP or command in BY_HAND:
                continue
            if len(session.nodes) > started and not command.startswith(("meshnode run ", "@")):
                session.settle()  # the guide's next step uses the nodes it just started
                started = len(session.nodes)
            key = f"{session.machine}: {command}" if session.machine else command
            ran[key] = session.run(command)
    finally:
        session.close()
    return ran


def split_at(markdown: str, title: str) -> tuple[str, str]:
    """The text before the ``## title`` section and the text from it on."""
    start = markdown.index(f"\n## {title}")
    return markdown[:start], markdown[start:]


TUTORIAL = (DOCS / "tutorial.md").read_text()
ONE_LAPTOP, MACHINES = split_at(TUTORIAL, "7. On three machines")


def test_sh_blocks_are_read_with_comments_stripped():
    text = "intro\n```sh\nmeshnode init /tmp/mesh/a   # comment\n# only a comment\n\nmake demo\n```\n" \
           "```yaml\nkey: value\n```\n```sh\nmeshnode peers -d /tmp/mesh/a\n```\n"
    assert sh_commands(text) == ["meshnode init /tmp/mesh/a", "make demo", "meshnode peers -d /tmp/mesh/a"]


@pytest.mark.long  # CI's second stage: the first stays under ten minutes
def test_the_tutorial_runs_as_written(tmp_path):
    ran = run_guide([ONE_LAPTOP], tmp_path)
    assert len([c for c in ran if c.startswith("meshnode run ")]) == 3
    # What the tutorial says each step shows.
    assert "away" in ran["meshnode config get home.mode -d /tmp/mesh/a"]
    assert "kitchen/temp" in ran["meshnode state list -d /tmp/mesh/a"]


@pytest.mark.long  # it includes a chaos run of its own
def test_the_how_to_guides_run_as_written_after_the_tutorial(tmp_path):
    ran = run_guide([ONE_LAPTOP, (DOCS / "howto.md").read_text()], tmp_path)
    assert "vision" in ran["meshnode model list -d /tmp/mesh/c"]
    assert (tmp_path / "mesh" / "out.npz").exists()
    early = next(out for c, out in ran.items() if c.startswith("meshnode infer textdir") and "threshold 0" in c)
    assert "early_exit" in early
    for c in (c for c in ran if c.startswith("meshnode infer")):  # how long the caller waited, every route
        assert float(re.search(r" in ([0-9.]+) ms", ran[c]).group(1)) > 0, ran[c]
    assert (tmp_path / "mesh" / "chaos" / "report.json").exists()
    assert sorted(p.name for p in (tmp_path / "mesh" / "chaos" / "logs").iterdir()) == ["n0.log", "n1.log", "n2.log"]
    peer_d = next(v for k, v in ran.items() if k.startswith("meshnode init /tmp/mesh/d")).split("peer id: ")[1].split()[0]
    assert peer_d in ran["meshnode admitted -d /tmp/mesh/b"]
    assert (tmp_path / "mesh" / "c-restored" / "identity.key").read_bytes() == \
        (tmp_path / "mesh" / "c" / "identity.key").read_bytes()


@pytest.mark.long  # like the other network-namespace tests
@pytest.mark.skipif(why_unavailable() is not None, reason=f"network namespaces: {why_unavailable()}")
def test_the_tutorial_on_three_machines_runs_as_written(tmp_path):
    """Each machine a network namespace on a private LAN, with its own address and home directory."""
    lan = Lan(tmp_path, prefix="doc")
    try:
        lan.build_switch()
        ran = run_guide([MACHINES], tmp_path, lan)
    finally:
        lan.close()
    assert [k for k in ran if k.endswith("meshnode run ~/mesh")] == [f"{m}: meshnode run ~/mesh" for m in "abc"]
    peers = ran["c: meshnode peers -d ~/mesh"]
    assert "a " in peers and "b " in peers and "alive" in peers
    assert "home" in ran["a: meshnode config get home.mode -d ~/mesh"]


@pytest.mark.long  # it includes a chaos run of its own
def test_the_readme_runs_as_written(tmp_path):
    (tmp_path / "home").mkdir()
    ran = run_guide([README.read_text()], tmp_path)
    assert len([c for c in ran if c.startswith("meshnode run ")]) == 3
    assert "away" in ran["meshnode config get home.mode -d ~/mesh/c"]
    assert (tmp_path / "out.npz").exists() and (tmp_path / "chaos" / "report.json").exists()


@pytest.mark.long  # a two-minute chaos run, then the models page on the tutorial's mesh
def test_the_chaos_and_models_pages_run_as_written(tmp_path):
    ran = run_guide([(DOCS / "chaos.md").read_text(), ONE_LAPTOP, (DOCS / "models.md").read_text()], tmp_path)
    assert (tmp_path / "chaos-report" / "report.json").exists()
    assert "registered ppocr-det" in ran["meshnode model add ppocr-det /tmp/mesh/ppocr-det.onnx -d /tmp/mesh/a"]


def test_every_docs_page_with_commands_is_run_by_a_test():
    """A page added later with sh blocks must be added to a test above (or its commands named in BY_HAND)."""
    covered = {"tutorial.md", "howto.md", "chaos.md", "models.md"}
    pages = {p.name for p in DOCS.glob("*.md") if sh_commands(p.read_text())}
    assert pages <= covered, f"docs pages whose commands no test runs: {sorted(pages - covered)}"
