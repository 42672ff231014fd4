"""The chaos fault schedule (mesh.chaos.nemesis) and its translation into actions (mesh.chaos.faults).

Rules from the issue: "The same seed gives the same fault schedule"; partition
kinds "random halves, isolated node, isolated Raft leader, majorities ring,
bridge, one-way"; processes "SIGKILL ... then restart; SIGSTOP longer than the
election timeout, then SIGCONT; full-cluster restart".
"""

from __future__ import annotations

import random
import signal
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import LocalProtocolError, MeshError
from mesh.chaos import faults
from mesh.chaos.nemesis import (
    LEADER,
    NEMESES,
    PAUSE_MIN_S,
    Fault,
    blocked_pairs,
    distinct_views,
    draw,
    majority,
    parse_nemeses,
    reachable,
    resolve,
    ring_groups,
    schedule,
)

FIVE = ["n0", "n1", "n2", "n3", "n4"]


def reach(fault: Fault, nodes: list[str]) -> dict[str, set[str]]:
    pairs = blocked_pairs(fault, nodes)
    return {n: reachable(pairs, nodes, n) for n in nodes}


# --- schedule -------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_schedule():
    """"The same seed gives the same fault schedule.\""""
    a = schedule(7, FIVE, 300, list(NEMESES))
    b = schedule(7, FIVE, 300, list(NEMESES))
    assert a == b and len(a) == 14


def test_different_seeds_give_different_schedules():
    runs = {tuple(schedule(seed, FIVE, 300, list(NEMESES))) for seed in range(5)}
    assert len(runs) == 5


def test_schedule_is_independent_of_global_random_state():
    random.seed(1)
    a = schedule(3, FIVE, 120, ["partition-halves", "kill"])
    random.seed(2)
    random.random()
    assert schedule(3, FIVE, 120, ["partition-halves", "kill"]) == a


def test_unknown_nemesis_is_a_clear_error():
    with pytest.raises(LocalProtocolError, match=r"^chaos: unknown nemesis 'x'; choose from partition-halves"):
        schedule(1, FIVE, 60, ["kill", "x"])
    with pytest.raises(LocalProtocolError, match=r"^chaos: unknown nemesis 'bogus'"):
        parse_nemeses("kill,bogus")


def test_parse_nemeses():
    assert parse_nemeses("all") == list(NEMESES)
    assert parse_nemeses(" kill, pause ") == ["kill", "pause"]
    with pytest.raises(LocalProtocolError, match="^chaos: no nemesis"):
        parse_nemeses(" , ")


def test_schedule_rejects_bad_arguments():
    with pytest.raises(LocalProtocolError, match="^chaos: partition-ring needs at least 4 nodes"):
        schedule(1, ["a", "b", "c"], 60, ["partition-ring"])
    with pytest.raises(LocalProtocolError, match="^chaos: nodes must be distinct"):
        schedule(1, ["a", "a"], 60, ["kill"])
    with pytest.raises(LocalProtocolError, match="^chaos: nodes must be distinct"):
        schedule(1, [], 60, ["kill"])
    with pytest.raises(LocalProtocolError, match="^chaos: partition-bridge needs at least 3 nodes"):
        schedule(1, ["a", "b"], 60, ["partition-bridge"])
    with pytest.raises(LocalProtocolError, match="^chaos: pause needs fault_s >"):
        schedule(1, FIVE, 60, ["pause"], fault_s=PAUSE_MIN_S)
    with pytest.raises(LocalProtocolError, match="^chaos: no nemesis"):
        schedule(1, FIVE, 60, [])


def test_a_run_too_short_for_one_fault_has_none():
    assert schedule(1, FIVE, 25, ["kill"], interval_s=10, fault_s=10) == []
    assert len(schedule(1, FIVE, 30, ["kill"], interval_s=10, fault_s=10)) == 1


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(4, 9), duration=st.floats(1, 600),
       interval=st.floats(0.5, 30), fault=st.floats(2.5, 30),
       chosen=st.lists(st.sampled_from(sorted(NEMESES)), min_size=1, unique=True))
def test_schedule_invariants(seed, n, duration, interval, fault, chosen):
    """Fault and healthy windows alternate, never overlap, and every fault is healed before the end."""
    nodes = [f"n{i}" for i in range(n)]
    plan = schedule(seed, nodes, duration, chosen, interval_s=interval, fault_s=fault)
    assert plan == schedule(seed, nodes, duration, chosen, interval_s=interval, fault_s=fault)
    previous_end = 0.0
    for f in plan:
        assert f.kind in chosen
        assert f.start_s >= previous_end + interval - 1e-9, "a healthy window before every fault"
        assert f.end_s - f.start_s == pytest.approx(fault)
        assert f.end_s + interval <= duration + 1e-9, "healed, with a healthy tail, before duration_s"
        assert set(f.targets) <= set(nodes) | {LEADER}
        for group in f.groups:
            assert set(group) <= set(nodes)
        if f.kind == "pause":
            assert f.end_s - f.start_s > PAUSE_MIN_S, "SIGSTOP longer than the election timeout"
        if not f.needs_leader:
            blocked_pairs(f, nodes)  # every partition resolves to a graph
        previous_end = f.end_s


# --- partition graphs -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_halves_are_two_groups_with_no_link_across(seed):
    f = draw(random.Random(seed), "partition-halves", FIVE, 1, 2)
    a, b = f.groups
    assert set(a) | set(b) == set(FIVE) and not set(a) & set(b)
    assert {len(a), len(b)} == {2, 3}
    pairs = blocked_pairs(f, FIVE)
    assert pairs == {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}
    views = reach(f, FIVE)
    for group in (a, b):
        for node in group:
            assert views[node] == set(group)


@pytest.mark.parametrize("seed", range(10))
def test_an_isolated_node_reaches_only_itself(seed):
    f = draw(random.Random(seed), "partition-node", FIVE, 1, 2)
    (lone,) = f.targets
    views = reach(f, FIVE)
    assert views[lone] == {lone}
    assert all(views[n] == set(FIVE) - {lone} for n in FIVE if n != lone)


def test_the_leader_is_recorded_symbolically_and_resolved_at_run_time():
    f = draw(random.Random(1), "partition-leader", FIVE, 1, 2)
    assert f.targets == (LEADER,) and f.needs_leader
    with pytest.raises(LocalProtocolError, match="^chaos: .*resolve"):
        blocked_pairs(f, FIVE)
    r = resolve(f, "n3", FIVE)
    assert r.groups == (("n3",), ("n0", "n1", "n2", "n4")) and not r.needs_leader
    assert reach(r, FIVE)["n3"] == {"n3"}
    with pytest.raises(LocalProtocolError, match="^chaos: leader 'n9'"):
        resolve(f, "n9", FIVE)


@pytest.mark.parametrize("seed", range(20))
def test_majorities_ring_for_five(seed):
    """Jepsen's majorities ring: every node sees a majority (itself included), no two nodes the same one."""
    f = draw(random.Random(seed), "partition-ring", FIVE, 1, 2)
    views = reach(f, FIVE)
    for node, view in views.items():
        assert node in view and len(view) >= majority(5)
    assert all(views[a] != views[b] for a, b in combinations(FIVE, 2))
    assert distinct_views(f, FIVE)
    assert blocked_pairs(f, FIVE), "it is a partition: some links are cut"


@pytest.mark.parametrize("n", range(4, 12))
def test_majorities_ring_for_other_sizes(n):
    nodes = [f"n{i}" for i in range(n)]
    f = Fault(kind="partition-ring", start_s=0, end_s=1, groups=ring_groups(nodes))
    views = reach(f, nodes)
    assert all(len(v) >= majority(n) and len(v) < n for v in views.values())
    assert distinct_views(f, nodes)
    assert blocked_pairs(f, nodes) == {(b, a) for a, b in blocked_pairs(f, nodes)}, "symmetric"


@pytest.mark.parametrize("seed", range(10))
def test_the_bridge_reaches_all_and_the_halves_only_themselves_and_it(seed):
    f = draw(random.Random(seed), "partition-bridge", FIVE, 1, 2)
    (bridge,) = f.targets
    a, b = f.groups
    views = reach(f, FIVE)
    assert views[bridge] == set(FIVE)
    assert set(a) & set(b) == {bridge}
    for node in set(a) - {bridge}:
        assert views[node] == set(a)
    for node in set(b) - {bridge}:
        assert views[node] == set(b)


@pytest.mark.parametrize("seed", range(10))
def test_one_way_is_asymmetric(seed):
    """"one-way": A cannot send to B, but B can send to A."""
    f = draw(random.Random(seed), "partition-one-way", FIVE, 1, 2)
    senders, receivers = f.groups
    pairs = blocked_pairs(f, FIVE)
    assert pairs == {(s, r) for s in senders for r in receivers}
    assert not any((r, s) in pairs for s, r in pairs)


def test_non_partitions_block_nothing():
    for kind in ("netem", "kill", "pause", "restart-all"):
        assert blocked_pairs(draw(random.Random(0), kind, FIVE, 1, 2), FIVE) == set()


def test_faults_are_validated_when_built():
    with pytest.raises(LocalProtocolError, match="^chaos: unknown nemesis"):
        Fault(kind="nope", start_s=0, end_s=1)
    with pytest.raises(LocalProtocolError, match="^chaos: a fault needs"):
        Fault(kind="kill", mode="one", start_s=2, end_s=1)
    with pytest.raises(LocalProtocolError, match="^chaos: kill mode"):
        Fault(kind="kill", mode="some", start_s=0, end_s=1)
    with pytest.raises(LocalProtocolError, match="^chaos: bad netem parameter loss_pct=150"):
        Fault(kind="netem", start_s=0, end_s=1, params=(("loss_pct", 150.0),))


def test_netem_and_process_faults_carry_their_data():
    rng = random.Random(4)
    kinds = {draw(rng, "kill", FIVE, 1, 2).mode for _ in range(40)}
    assert kinds == {"one", "minority", "leader", "all"}
    f = draw(random.Random(2), "netem", FIVE, 1, 2)
    assert set(f.netem()) == {"delay_ms", "jitter_ms", "loss_pct", "duplicate_pct", "reorder_pct"}
    assert f.netem()["delay_ms"] > 0 and f.targets
    assert "netem" in f.describe()


# --- the injector on a fake cluster --------------------------------------------------------------------


class FakeProc:
    def __init__(self, pid):
        self.pid, self.signals, self.returncode = pid, [], None

    def poll(self):
        return self.returncode

    def send_signal(self, sig):
        self.signals.append(sig)


class FakeNode:
    def __init__(self, name, pid):
        self.name, self.proc = name, FakeProc(pid)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None


class FakeProcesses:
    """Like LocalCluster: nodes, start, stop; no network methods."""

    def __init__(self, names):
        self.nodes = [FakeNode(n, 100 + i) for i, n in enumerate(names)]
        self.log: list[tuple] = []
        self.next_pid = 500

    def start(self, node):
        self.next_pid += 1
        node.proc = FakeProc(self.next_pid)
        self.log.append(("start", node.name))

    def stop(self, node, sig=signal.SIGTERM):
        self.log.append(("stop", node.name, sig))
        node.proc = None
        return -sig


class FakeLan(FakeProcesses):
    """Like LanCluster: adds block/unblock/netem."""

    def __init__(self, names):
        super().__init__(names)
        self.blocked: set[tuple[int, int]] = set()
        self.shaped: dict[int, dict] = {}

    def block(self, s, d):
        self.blocked.add((s, d))

    def unblock(self, s, d):
        self.blocked.discard((s, d))

    def unblock_all(self):
        self.blocked.clear()

    def netem(self, i, **kw):
        self.shaped[i] = kw

    def clear_netem(self, i):
        self.shaped.pop(i, None)


def test_a_partition_becomes_one_route_per_blocked_pair_and_heal_removes_them():
    lab = FakeLan(FIVE)
    f = draw(random.Random(3), "partition-one-way", FIVE, 1, 2)
    done = faults.apply(f, lab)
    want = {(FIVE.index(s), FIVE.index(d)) for s, d in blocked_pairs(f, FIVE)}
    assert lab.blocked == want and len(done.actions) == len(want)
    faults.heal(done.fault, lab)
    assert lab.blocked == set()


def test_the_leader_is_resolved_when_the_fault_starts_and_heal_uses_that_node():
    lab = FakeLan(FIVE)
    f = draw(random.Random(3), "partition-leader", FIVE, 1, 2)
    done = faults.apply(f, lab, resolve_leader=lambda: 2)
    assert done.fault.groups[0] == ("n2",)
    assert lab.blocked == {(2, i) for i in (0, 1, 3, 4)} | {(i, 2) for i in (0, 1, 3, 4)}
    with pytest.raises(MeshError, match="^chaos: heal the resolved fault"):
        faults.heal(f, lab)
    faults.heal(done.fault, lab)
    assert not lab.blocked
    with pytest.raises(MeshError, match="^chaos: .*no resolve_leader"):
        faults.apply(f, lab)


def test_netem_shapes_each_target_and_heal_clears():
    lab = FakeLan(FIVE)
    f = Fault(kind="netem", start_s=1, end_s=2, targets=("n1", "n3"),
              params=(("delay_ms", 50.0), ("loss_pct", 5.0)))
    faults.apply(f, lab)
    assert lab.shaped == {1: {"delay_ms": 50.0, "loss_pct": 5.0}, 3: {"delay_ms": 50.0, "loss_pct": 5.0}}
    faults.heal(f, lab)
    assert lab.shaped == {}


def test_kill_is_sigkill_then_restart():
    """"SIGKILL of one / a minority / the leader / all, then restart.\""""
    lab = FakeProcesses(FIVE)
    f = Fault(kind="kill", mode="leader", start_s=1, end_s=2, targets=(LEADER,))
    done = faults.apply(f, lab, resolve_leader=lambda: 4)
    assert lab.log == [("stop", "n4", signal.SIGKILL)] and "SIGKILL n4 pid 104" in done.actions[0]
    faults.heal(done.fault, lab)
    assert lab.log[-1] == ("start", "n4") and lab.nodes[4].running


def test_pause_is_sigstop_then_sigcont_by_pid():
    """"SIGSTOP longer than the election timeout, then SIGCONT.\""""
    lab = FakeProcesses(FIVE)
    f = Fault(kind="pause", mode="minority", start_s=1, end_s=5, targets=("n0", "n2"))
    faults.apply(f, lab)
    faults.heal(f, lab)
    for i in (0, 2):
        assert lab.nodes[i].proc.signals == [signal.SIGSTOP, signal.SIGCONT]
    assert lab.nodes[1].proc.signals == []


def test_restart_all_stops_every_node_gracefully_then_starts_them():
    """"full-cluster restart\""""
    lab = FakeProcesses(FIVE)
    f = Fault(kind="restart-all", start_s=1, end_s=2, targets=tuple(FIVE))
    faults.apply(f, lab)
    assert [e for e in lab.log if e[0] == "stop"] == [("stop", n, signal.SIGTERM) for n in FIVE]
    faults.heal(f, lab)
    assert all(n.running for n in lab.nodes)


def test_network_faults_need_the_netns_backend():
    lab = FakeProcesses(FIVE)
    f = draw(random.Random(0), "partition-halves", FIVE, 1, 2)
    with pytest.raises(MeshError, match="^chaos: partition-halves needs the network-namespace backend"):
        faults.apply(f, lab)


def test_heal_all_undoes_everything():
    lab = FakeLan(FIVE)
    faults.apply(draw(random.Random(0), "partition-halves", FIVE, 1, 2), lab)
    faults.apply(Fault(kind="kill", mode="one", start_s=1, end_s=2, targets=("n1",)), lab)
    faults.heal_all(lab)
    assert not lab.blocked and not lab.shaped and all(n.running for n in lab.nodes)


# --- membership: a node joins or leaves while the cluster is cut ----------------------------------


def test_membership_faults_are_halves_with_one_target_and_the_same_for_a_seed():
    a = schedule(21, FIVE, 200, ["membership"])
    assert a == schedule(21, FIVE, 200, ["membership"])
    for f in a:
        assert f.kind == "membership" and len(f.groups) == 2 and sorted(sum(f.groups, ())) == sorted(FIVE)
        assert len(f.targets) == 1 and f.targets[0] in FIVE and f.mode == ""


def test_a_node_in_no_group_is_cut_off_from_nobody():
    """The spare joins after the schedule was drawn: partitions drawn before leave it connected."""
    f = Fault(kind="partition-halves", start_s=1, end_s=2, groups=(("n0", "n1"), ("n2", "n3", "n4")))
    pairs = blocked_pairs(f, [*FIVE, "n5"])
    assert pairs == blocked_pairs(f, FIVE) and not any("n5" in pair for pair in pairs)


def test_the_first_membership_fault_brings_the_spare_in_and_later_ones_make_a_node_leave_and_rejoin():
    lab = FakeLan(FIVE)
    spare = FakeNode("n5", 0)
    spare.proc = None
    lab.spare = spare
    f = draw(random.Random(4), "membership", FIVE, 1, 2)

    joined = faults.apply(f, lab)
    assert joined.fault.mode == "join" and joined.fault.targets == ("n5",)
    assert lab.spare is None and lab.nodes[-1] is spare and spare.running
    assert len(lab.blocked) == len(blocked_pairs(f, FIVE)) and not any(5 in pair for pair in lab.blocked)
    assert "join n5" in joined.actions[-1]
    healed = faults.heal(joined.fault, lab)
    assert lab.blocked == set() and spare.running and healed[-1] == "n5 stays in the mesh"

    again = faults.apply(f, lab)
    target = f.targets[0]
    node = next(n for n in lab.nodes if n.name == target)
    assert again.fault.mode == "leave" and not node.running
    assert ("stop", target, signal.SIGTERM) in lab.log  # graceful: it hands over its vote
    faults.heal(again.fault, lab)
    assert node.running and lab.log[-1] == ("start", target) and lab.blocked == set()
