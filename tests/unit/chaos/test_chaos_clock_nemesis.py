"""The clock nemesis: ``clock-jump`` and ``clock-drift`` drawn from the seed, applied as a per-node skew file.

Rules (issue 7): "Clock: a node's clock jumps or drifts (HLC and leases must
cope)"; "The same seed gives the same fault schedule"; a jump is ±(5..120) s on
one node or a minority, a drift ±(0.01..0.2) s/s on one node; healing resets the
skew to zero, and so does heal_all.
"""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import LocalProtocolError, MeshError
from mesh.chaos import faults
from mesh.chaos.nemesis import CLOCK_DRIFT, CLOCK_JUMP_S, CLOCKS, NEMESES, Fault, draw, parse_nemeses, schedule
from mesh.cli import main
from mesh.clock import SkewFile

FIVE = ["n0", "n1", "n2", "n3", "n4"]


def test_clock_kinds_are_nemeses_in_all_and_in_chaos_list():
    assert CLOCKS == {"clock-jump", "clock-drift"} <= set(NEMESES)
    assert {"clock-jump", "clock-drift"} <= set(parse_nemeses("all"))
    listing = CliRunner().invoke(main, ["chaos", "list", "--json"])
    assert listing.exit_code == 0
    assert {"clock-jump", "clock-drift"} <= set(json.loads(listing.output)["nemeses"])


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 9))
def test_a_jump_is_seeded_on_one_node_or_a_minority_within_bounds(seed, n):
    """"one node or a minority jumps by a seeded offset, ±(5..120) s, forward or backward\""""
    nodes = [f"n{i}" for i in range(n)]
    f = draw(random.Random(seed), "clock-jump", nodes, 10, 20)
    assert f == draw(random.Random(seed), "clock-jump", nodes, 10, 20)
    offset, drift = f.skew()
    assert CLOCK_JUMP_S[0] <= abs(offset) <= CLOCK_JUMP_S[1] and drift == 0.0
    assert 1 <= len(f.targets) <= max(1, (n - 1) // 2) and set(f.targets) <= set(nodes)
    assert len(set(f.targets)) == len(f.targets)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 9))
def test_a_drift_is_seeded_on_one_node_within_bounds(seed, n):
    """"one node drifts at a seeded rate, ±0.01..0.2 s/s\""""
    nodes = [f"n{i}" for i in range(n)]
    f = draw(random.Random(seed), "clock-drift", nodes, 10, 20)
    assert f == draw(random.Random(seed), "clock-drift", nodes, 10, 20)
    offset, drift = f.skew()
    assert CLOCK_DRIFT[0] <= abs(drift) <= CLOCK_DRIFT[1] and offset == 0.0
    assert len(f.targets) == 1 and f.targets[0] in nodes


def test_both_directions_and_both_target_sizes_are_drawn():
    rng = random.Random(5)
    jumps = [draw(rng, "clock-jump", FIVE, 1, 2) for _ in range(60)]
    assert {f.skew()[0] > 0 for f in jumps} == {True, False}
    assert {len(f.targets) for f in jumps} == {1, 2}
    drifts = [draw(rng, "clock-drift", FIVE, 1, 2) for _ in range(60)]
    assert {f.skew()[1] > 0 for f in drifts} == {True, False}


def test_the_same_seed_gives_the_same_clock_schedule():
    """"The same seed gives the same fault schedule.\""""
    a = schedule(11, FIVE, 300, ["clock-jump", "clock-drift", "kill"])
    assert a == schedule(11, FIVE, 300, ["clock-jump", "clock-drift", "kill"])
    assert {f.kind for f in a} == {"clock-jump", "clock-drift", "kill"}
    assert {tuple(schedule(s, FIVE, 300, ["clock-jump"])) for s in range(5)}.__len__() == 5


def test_describe_shows_whom_and_the_signed_amount():
    f = Fault(kind="clock-jump", start_s=10, end_s=20, targets=("n1",), params=(("offset_s", 60.0),))
    assert f.describe() == "10-20s clock-jump n1 offset_s=+60"
    g = Fault(kind="clock-drift", start_s=10, end_s=20, targets=("n2",), params=(("drift", -0.05),))
    assert g.describe() == "10-20s clock-drift n2 drift=-0.05"


@pytest.mark.parametrize("kwargs, needle", [
    ({"kind": "clock-jump", "targets": ("n1",), "params": ()}, "needs exactly one parameter, offset_s"),
    ({"kind": "clock-jump", "targets": ("n1",), "params": (("drift", 0.1),)}, "needs exactly one parameter"),
    ({"kind": "clock-drift", "targets": ("n1",), "params": (("drift", 1.5),)}, r"bad clock-drift parameter drift=1.5"),
    ({"kind": "clock-jump", "targets": ("n1",), "params": (("offset_s", float("nan")),)}, "bad clock-jump"),
    ({"kind": "clock-jump", "targets": ("n1",), "params": (("offset_s", 90000.0),)}, "within ±86400"),
    ({"kind": "clock-jump", "targets": (), "params": (("offset_s", 9.0),)}, "needs the names of the nodes"),
])
def test_bad_clock_faults_are_refused_when_built(kwargs, needle):
    with pytest.raises(LocalProtocolError, match="^chaos: .*" + needle):
        Fault(start_s=0, end_s=1, **kwargs)


def test_skew_is_only_for_clock_faults():
    with pytest.raises(LocalProtocolError, match="^chaos: kill is not a clock fault"):
        Fault(kind="kill", mode="one", start_s=0, end_s=1, targets=("n0",)).skew()


# --- the injector ------------------------------------------------------------------------------------


class Proc:
    def __init__(self, pid):
        self.pid, self.signals = pid, []

    def poll(self):
        return None

    def send_signal(self, sig):
        self.signals.append(sig)


class Node:
    def __init__(self, name: str, data_dir: Path, pid: int):
        self.name, self.data_dir, self.proc = name, data_dir, Proc(pid)
        data_dir.mkdir()

    @property
    def running(self):
        return self.proc is not None


class Cluster:
    """Like LocalCluster(..., chaos_clock=...): nodes with data dirs; no network methods."""

    def __init__(self, root: Path, names, *, chaos_clock: bool = True):
        self.nodes = [Node(n, root / n, 100 + i) for i, n in enumerate(names)]
        self.chaos_clock = chaos_clock

    def start(self, node):
        node.proc = Proc(999)

    def stop(self, node, sig=signal.SIGTERM):
        node.proc = None
        return -sig


def skew_of(node, real: float) -> float:
    return SkewFile(faults.clock_file(node)).skew(real, mono=0.0)


def test_a_jump_writes_each_targets_file_and_heal_removes_it(tmp_path):
    lab = Cluster(tmp_path, FIVE)
    f = Fault(kind="clock-jump", start_s=1, end_s=2, targets=("n1", "n3"), params=(("offset_s", -45.5),))
    done = faults.apply(f, lab)
    assert done.actions == ("clock n1 offset -45.5 s drift +0 s/s", "clock n3 offset -45.5 s drift +0 s/s")
    for i, node in enumerate(lab.nodes):
        assert faults.clock_file(node) == node.data_dir / "chaos-clock.json"
        assert faults.clock_file(node).exists() == (i in (1, 3))
    assert skew_of(lab.nodes[1], 1e9) == -45.5
    assert not list(tmp_path.rglob("*.tmp")), "written through a temp file that was replaced in"
    assert faults.heal(done.fault, lab) == ("clock n1 reset", "clock n3 reset")
    assert not list(tmp_path.rglob("chaos-clock.json*"))
    assert skew_of(lab.nodes[1], 1e9) == 0.0, "healing resets the skew to zero"


def test_a_drift_counts_from_when_the_fault_started(tmp_path):
    lab = Cluster(tmp_path, FIVE)
    f = Fault(kind="clock-drift", start_s=1, end_s=2, targets=("n4",), params=(("drift", 0.1),))
    faults.apply(f, lab)
    doc = json.loads(faults.clock_file(lab.nodes[4]).read_text())
    assert doc["drift"] == 0.1 and doc["offset_s"] == 0.0
    assert skew_of(lab.nodes[4], doc["since"] + 30) == pytest.approx(3.0)
    faults.heal(f, lab)
    assert not faults.clock_file(lab.nodes[4]).exists()


def test_heal_all_resets_every_clock(tmp_path):
    lab = Cluster(tmp_path, FIVE)
    faults.apply(Fault(kind="clock-jump", start_s=1, end_s=2, targets=("n0", "n2"), params=(("offset_s", 9.0),)),
                 lab)
    done = faults.heal_all(lab)
    assert "clock reset n0,n2" in done
    assert not list(tmp_path.rglob("chaos-clock.json"))
    assert "clock reset" not in " ".join(faults.heal_all(lab)), "nothing left to reset the second time"


def test_a_clock_fault_on_a_cluster_not_built_for_it_is_refused(tmp_path):
    """Without chaos_clock the nodes never read the file: say so rather than pretend the fault ran."""
    lab = Cluster(tmp_path, FIVE, chaos_clock=False)
    f = Fault(kind="clock-jump", start_s=1, end_s=2, targets=("n1",), params=(("offset_s", 60.0),))
    with pytest.raises(MeshError, match=r"^chaos: clock-jump needs a cluster built with chaos_clock=True"):
        faults.apply(f, lab)
    assert not list(tmp_path.rglob("chaos-clock.json"))


def test_a_clock_fault_naming_a_stranger_is_refused(tmp_path):
    lab = Cluster(tmp_path, FIVE)
    f = Fault(kind="clock-jump", start_s=1, end_s=2, targets=("n9",), params=(("offset_s", 60.0),))
    with pytest.raises(MeshError, match=r"^chaos: the fault names 'n9'"):
        faults.apply(f, lab)


def test_only_a_cluster_built_for_chaos_starts_nodes_with_the_switch(tmp_path, monkeypatch):
    """The skew is a test-only switch: an ordinary cluster never passes it on, even if the caller has it set."""
    from mesh.clock import CHAOS_CLOCK_ENV
    from mesh.cluster import LocalCluster, chaos_clock_env

    monkeypatch.setenv(CHAOS_CLOCK_ENV, str(tmp_path / "elsewhere.json"))
    assert CHAOS_CLOCK_ENV not in LocalCluster(tmp_path).env
    assert LocalCluster(tmp_path).chaos_clock is False and LocalCluster(tmp_path, chaos_clock=True).chaos_clock
    assert chaos_clock_env(tmp_path / "n0") == {CHAOS_CLOCK_ENV: str(tmp_path / "n0" / "chaos-clock.json")}
