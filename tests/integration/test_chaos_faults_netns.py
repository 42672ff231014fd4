"""Chaos faults on a real private LAN: routes really cut links, heal really restores them, nothing is left behind.

Rules from the issue: "partitions by packet filtering inside the namespaces"
(here a blackhole route for the peer's /32 in the sender's namespace: no
nftables needed); kinds "random halves, isolated node, isolated Raft leader,
majorities ring, bridge, one-way"; "delay, jitter, loss, duplication and
reordering with tc netem"; processes "SIGKILL ... then restart; SIGSTOP ...
then SIGCONT". Reachability is checked with plain TCP and UDP sockets made
inside the hosts' namespaces; a blocked link shows as a local error or a
timed-out connect, never as a timing assertion.
"""

from __future__ import annotations

import random
import secrets
import signal
import socket
from pathlib import Path

import pytest

from crdt.errors import MeshError
from mesh.chaos import faults
from mesh.chaos.nemesis import Fault, blocked_pairs, draw
from mesh.cluster import wait_for
from mesh.netlab import LanCluster, socket_in, why_no_netem, why_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long]

CONNECT_S = 1.0  # a healthy connect on a veth takes microseconds; a blocked one fails or times out


class Probes:
    """A TCP listener and a UDP socket in every host's namespace."""

    def __init__(self, lab: LanCluster) -> None:
        self.lab = lab
        self.tcp: dict[str, tuple[socket.socket, int]] = {}
        self.udp: dict[str, tuple[socket.socket, int]] = {}
        for node in lab.nodes:
            listener = socket_in(node.ns)
            listener.bind((node.addr, 0))
            listener.listen(64)
            self.tcp[node.name] = (listener, listener.getsockname()[1])
            receiver = socket_in(node.ns, socket.SOCK_DGRAM)
            receiver.bind((node.addr, 0))
            self.udp[node.name] = (receiver, receiver.getsockname()[1])

    def node(self, name: str):
        return next(n for n in self.lab.nodes if n.name == name)

    def tcp_ok(self, src: str, dst: str) -> bool:
        """Whether src completes a TCP handshake with dst (needs both directions)."""
        client = socket_in(self.node(src).ns)
        client.settimeout(CONNECT_S)
        try:
            client.connect((self.node(dst).addr, self.tcp[dst][1]))
            return True
        except OSError:  # EINVAL from a blackhole route, or a timeout when the answer is dropped
            return False
        finally:
            client.close()

    def udp_ok(self, src: str, dst: str) -> bool:
        """Whether a datagram from src reaches dst (one direction only)."""
        token = secrets.token_bytes(8)
        sender = socket_in(self.node(src).ns, socket.SOCK_DGRAM)
        try:
            sender.sendto(token, (self.node(dst).addr, self.udp[dst][1]))
        except OSError:
            return False
        finally:
            sender.close()
        receiver = self.udp[dst][0]
        receiver.settimeout(CONNECT_S)
        for _ in range(100):  # bounded: skip stale datagrams from earlier checks
            try:
                if receiver.recv(64) == token:
                    return True
            except OSError:
                return False
        return False

    def matrix(self) -> set[tuple[str, str]]:
        """Directed pairs whose TCP connect fails."""
        names = [n.name for n in self.lab.nodes]
        return {(a, b) for a in names for b in names if a != b and not self.tcp_ok(a, b)}

    def close(self) -> None:
        for sock, _ in [*self.tcp.values(), *self.udp.values()]:
            sock.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = why_unavailable()
    if reason:
        pytest.skip(f"chaos network faults need private network namespaces: {reason}")
    cluster = LanCluster(Path(tmp_path_factory.mktemp("chaos")), prefix="chf", subnet="10.78.0")
    probes = None
    try:
        for _ in range(4):  # four: the smallest majorities ring
            cluster.add_node()
        probes = Probes(cluster)
        cluster.probes = probes
        yield cluster
    finally:
        if probes is not None:
            probes.close()
        cluster.close()
        print(cluster.log_tails())
        assert not cluster.lan.leftover(), "namespaces left behind"


def names(lab) -> list[str]:
    return [n.name for n in lab.nodes]


def no_routes_left(lab) -> bool:
    return not any("blackhole" in line for i in range(len(lab.nodes)) for line in lab.lan.routes(i))


def symmetric_closure(pairs):
    return pairs | {(b, a) for a, b in pairs}


def test_everyone_reaches_everyone_before_any_fault(lab):
    assert lab.probes.matrix() == set()


def test_a_blackhole_route_stops_tcp_and_removing_it_restores(lab):
    """A directed blocked pair (src, dst) is a route in src's namespace for dst's address."""
    p = lab.probes
    lab.block(0, 1)
    assert [line for line in lab.lan.routes(0) if "blackhole" in line] == [f"blackhole {lab.address(1)} "]
    assert not p.tcp_ok("n0", "n1"), "n0 cannot send to n1"
    assert not p.tcp_ok("n1", "n0"), "n1's SYN arrives but n0's answer is dropped: TCP needs both ways"
    assert not p.udp_ok("n0", "n1")
    assert p.udp_ok("n1", "n0"), "the other direction still delivers"
    assert p.tcp_ok("n0", "n2") and p.tcp_ok("n2", "n1")
    lab.unblock_all()
    assert no_routes_left(lab)
    assert p.tcp_ok("n0", "n1") and p.tcp_ok("n1", "n0") and p.udp_ok("n0", "n1")


@pytest.mark.parametrize("kind", ["partition-halves", "partition-node", "partition-ring", "partition-bridge"])
def test_a_partition_cuts_exactly_its_links_and_heal_restores_them(lab, kind):
    fault = draw(random.Random(11), kind, names(lab), 1, 2)
    done = faults.apply(fault, lab)
    try:
        want = blocked_pairs(fault, names(lab))
        assert len(done.actions) == len(want)
        assert lab.probes.matrix() == symmetric_closure(want)
    finally:
        faults.heal(done.fault, lab)
    assert no_routes_left(lab)
    assert lab.probes.matrix() == set()


def test_the_isolated_leader_is_resolved_when_the_fault_starts(lab):
    fault = draw(random.Random(1), "partition-leader", names(lab), 1, 2)
    done = faults.apply(fault, lab, resolve_leader=lambda: 2)
    try:
        assert lab.probes.matrix() == {(a, b) for a in names(lab) for b in names(lab)
                                       if a != b and "n2" in (a, b)}
    finally:
        faults.heal(done.fault, lab)
    assert lab.probes.matrix() == set()


def test_one_way_partition_delivers_in_one_direction_only(lab):
    """"one-way": A cannot send to B but B can send to A."""
    p = lab.probes
    fault = Fault(kind="partition-one-way", start_s=1, end_s=2, groups=(("n0", "n1"), ("n2", "n3")))
    done = faults.apply(fault, lab)
    try:
        for s in ("n0", "n1"):
            for r in ("n2", "n3"):
                assert not p.udp_ok(s, r), f"{s} must not reach {r}"
                assert p.udp_ok(r, s), f"{r} must still reach {s}"
        assert p.udp_ok("n0", "n1") and p.udp_ok("n2", "n3")
    finally:
        faults.heal(done.fault, lab)
    assert no_routes_left(lab)
    assert all(p.udp_ok(a, b) for a in names(lab) for b in names(lab) if a != b)


def test_netem_without_kernel_support_is_a_clear_error(lab):
    if why_no_netem() is None:
        pytest.skip("this kernel has netem; see the shaping test")
    with pytest.raises(MeshError, match=r"^netlab: .*no netem"):
        lab.netem(0, delay_ms=50)
    assert "netem" not in lab.lan.qdisc(0)


def test_netem_shapes_and_heal_clears(lab):
    reason = why_no_netem()
    if reason:
        pytest.skip(f"tc netem is not available: {reason}")
    p = lab.probes
    fault = Fault(kind="netem", start_s=1, end_s=2, targets=("n0",),
                  params=(("delay_ms", 20.0), ("jitter_ms", 5.0), ("loss_pct", 100.0),
                          ("duplicate_pct", 1.0), ("reorder_pct", 10.0)))
    done = faults.apply(fault, lab)
    try:
        assert "netem" in lab.lan.qdisc(0) and "delay 20ms" in lab.lan.qdisc(0)
        assert not p.udp_ok("n0", "n1"), "100 % loss on what n0 sends"
        assert p.udp_ok("n1", "n2")
    finally:
        faults.heal(done.fault, lab)
    assert "netem" not in lab.lan.qdisc(0)
    assert p.udp_ok("n0", "n1")


def state_of(pid: int) -> str:
    """The process state letter from /proc (T: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0]


def test_kill_then_restart_and_pause_then_continue_real_nodes(lab):
    """"SIGKILL ... then restart; SIGSTOP longer than the election timeout, then SIGCONT" (by our pids)."""
    for node in lab.nodes[:2]:
        lab.start(node)
    for node in lab.nodes[:2]:
        lab.wait_api(node, timeout=60)
    n0, n1 = lab.nodes[0], lab.nodes[1]

    old_pid = n1.proc.pid
    done = faults.apply(Fault(kind="kill", mode="one", start_s=1, end_s=2, targets=("n1",)), lab)
    assert not n1.running and done.actions == (f"SIGKILL n1 pid {old_pid} (exit -9)",)
    faults.heal(done.fault, lab)
    assert n1.running and n1.proc.pid != old_pid
    lab.wait_api(n1, timeout=60)

    pid = n0.proc.pid
    done = faults.apply(Fault(kind="pause", mode="leader", start_s=1, end_s=5, targets=("@leader",)), lab,
                        resolve_leader=lambda: 0)
    assert done.actions == (f"SIGSTOP n0 pid {pid}",)
    wait_for(lambda: state_of(pid) == "T", 10, "n0 to show as stopped")
    assert faults.heal(done.fault, lab) == (f"SIGCONT n0 pid {pid}",)
    lab.wait_api(n0, timeout=60)
    assert state_of(pid) != "T"

    pids = {n.name: n.proc.pid for n in lab.nodes[:2]}
    done = faults.apply(Fault(kind="restart-all", start_s=1, end_s=2, targets=tuple(names(lab))), lab)
    assert not any(n.running for n in lab.nodes)
    assert [a.split(" pid")[0] for a in done.actions[:2]] == ["SIGTERM n0", "SIGTERM n1"]
    faults.heal(done.fault, lab)
    for node in lab.nodes:
        lab.wait_api(node, timeout=60)
        assert node.proc.pid != pids.get(node.name)
    for node in lab.nodes:
        assert lab.stop(node, signal.SIGTERM) is not None
