"""A node's wall clock jumps 60 s ahead, then back: task leases and sensor state cope (issue 7, clock nemesis).

Rules checked, from ``consensus/leases.py``: "A command is judged at
``t = max(state.clock, command.now)``, so cluster time never runs backwards
even when a voter's clock does"; "A task is granted only when it has no lease
that is live at ``t``"; "a voter whose clock runs ahead drags the cluster clock
ahead and ends leases early ... Every grant therefore takes a new token from one
cluster-wide counter, so a task's tokens strictly increase across holders". From
``crdt/hlc.py``: "every ``now()`` is strictly greater than every timestamp this
clock returned or observed before, whatever the wall clock does".

Three real voters on 127.0.0.1, started with the chaos harness's clock switch
(``chaos_clock=True``); the skew is applied and healed by the harness's own
injector (``mesh.chaos.faults``), so this is the clock nemesis end to end.
"""

from __future__ import annotations

import time

import pytest

from crdt.errors import MeshError
from mesh.chaos import faults
from mesh.chaos.nemesis import Fault
from mesh.cluster import LocalCluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long, pytest.mark.timeout(180)]

JUMP_S = 60.0
LEASE_A = 30.0
LEASE_B = 20.0


def jump(node_name: str, offset: float) -> Fault:
    return Fault(kind="clock-jump", start_s=0, end_s=1, targets=(node_name,), params=(("offset_s", offset),))


def acquire(node, holder: str, lease: float, task: str = "job") -> dict:
    return node.client(timeout=20).post("/tasks/acquire", {"task": task, "holder": holder, "lease": lease})


def check(node, token: int, *, stale: bool = False, task: str = "job") -> dict:
    params = {"task": task, "token": str(token)}
    if stale:
        params["stale"] = "1"
    return node.client(timeout=20).get("/tasks/check", **params)


def sensor_map(node, prefix: str = "clk/") -> dict:
    return {e["key"]: (e["value"], tuple(e["hlc"])) for e in node.client(timeout=5).get("/state/list", prefix=prefix)}


def converged(cluster, expected: dict) -> bool:
    return all({k: v for k, (v, _) in sensor_map(n).items()} == expected for n in cluster.nodes)


def node_post(node, path: str, body: dict) -> dict:
    return node.client(timeout=20).post(path, body)


def put(node, key: str, value: str) -> dict:
    return node.client(timeout=20).post("/state/put", {"key": key, "value": value})


@pytest.fixture
def cluster(tmp_path):
    c = LocalCluster(tmp_path, chaos_clock=True)
    try:
        for name in ("n0", "n1", "n2"):
            c.init_node(name)
        c.start_all()
        c.wait_mesh(timeout=60)
        c.wait_leader(timeout=60)
        yield c
    finally:
        c.stop_all()
        for node in c.nodes:
            if node.log_path and node.log_path.exists():
                print(f"--- {node.name} log tail ---")
                print("\n".join(node.log_path.read_text(errors="replace").splitlines()[-15:]))


def test_a_clock_jump_forward_then_back_keeps_leases_fenced_and_sensors_converging(cluster):
    n0, n1, n2 = cluster.nodes
    clocks: list[float] = []  # the cluster clock as successive reads saw it

    def cluster_clock(node) -> float:
        clocks.append(node.client(timeout=20).get("/tasks")["clock"])
        return clocks[-1]

    # Before any fault: A holds the task under token t1 until E1 (stamped by n0's true clock).
    a1 = acquire(n0, "A", LEASE_A)
    assert a1["acquired"] is True
    t1, e1 = a1["token"], a1["expires_at"]

    # n1's clock jumps 60 s ahead. Seen from n1 (a stale read judged on n1's clock), A's lease is over.
    injected = faults.apply(jump("n1", JUMP_S), cluster)
    assert injected.actions == ("clock n1 offset +60 s drift +0 s/s",)
    wait_for(lambda: check(n1, t1, stale=True)["valid"] is False, 20, "n1 to read its skewed clock")
    assert check(n0, t1)["valid"] is True, "the lease is still live in cluster time: nobody has stamped past E1"

    # (b) HLC, forward: a write on the skewed node carries its clock; later writes elsewhere still win.
    w1 = put(n1, "clk/a", "from-n1")
    assert w1["time_ms"] >= (time.time() + JUMP_S - 10) * 1000, "n1's writes carry its skewed clock"
    for node in (n0, n1, n2):
        put(node, f"clk/{node.name}", node.name)
    expected = {"clk/a": "from-n1", "clk/n0": "n0", "clk/n1": "n1", "clk/n2": "n2"}
    wait_for(lambda: converged(cluster, expected), 30, "every node to hold the writes of all three")
    w2 = put(n0, "clk/a", "from-n0")  # n0 has observed n1's entry: its HLC is past it
    assert tuple(w2["hlc"]) > tuple(w1["hlc"]), "a write after observing a skewed one is ordered after it"
    expected["clk/a"] = "from-n0"
    wait_for(lambda: converged(cluster, expected), 30, "the later write to win everywhere")

    # (a) Leases, forward: B acquires through n1. Its stamp drags cluster time past E1, so A's lease ends
    # early (the documented hazard) -- and fencing makes that safe: a new, larger token, A's is dead.
    b = acquire(n1, "B", LEASE_B)
    assert b["acquired"] is True
    t2 = b["token"]
    assert t2 > t1, "tokens strictly increase across holders"
    assert b["acquired_at"] >= e1, "granted only when no lease is live at t"
    assert b["acquired_at"] >= time.time() + JUMP_S - 10, "t = max(state.clock, now): n1's skewed now"
    assert check(n0, t1)["valid"] is False and check(n2, t1)["valid"] is False, "A's token is fenced off"
    assert check(n0, t2)["valid"] is True
    for node in (n0, n1, n2):
        refused = acquire(node, "A", LEASE_A)
        assert refused["acquired"] is False and refused["holder"] == "B", "never two live holders"
    forward_clock = cluster_clock(n0)
    assert forward_clock >= b["acquired_at"]

    # Heal: n1's clock jumps back 60 s. Every voter's clock is now behind the cluster clock.
    assert faults.heal(injected.fault, cluster) == ("clock n1 reset",)
    wait_for(lambda: check(n1, t2, stale=True)["lease_left_s"] > LEASE_B + 10, 20,
             "n1 to read its true clock again (B's lease then looks 60 s longer from n1)")
    for node in (n0, n1, n2):
        refused = acquire(node, "A", LEASE_A)
        assert refused["acquired"] is False and refused["holder"] == "B", \
            "cluster time does not run backwards: B's lease is still live"
        assert cluster_clock(node) >= forward_clock
    renewed = node_post(n1, "/tasks/renew", {"task": "job", "holder": "B", "token": t2, "lease": LEASE_B})
    assert renewed["renewed"] is True and renewed["expires_at"] >= b["expires_at"]
    released = node_post(n2, "/tasks/release", {"task": "job", "holder": "B", "token": t2})
    assert released["released"] is True
    a2 = acquire(n1, "A", LEASE_A)
    assert a2["acquired"] is True and a2["token"] > t2
    assert a2["acquired_at"] >= renewed["acquired_at"] and a2["acquired_at"] >= forward_clock, \
        "a grant through a voter whose clock is 60 s behind is still stamped at cluster time"
    assert clocks == sorted(clocks), f"the cluster clock never ran backwards: {clocks}"

    # (b) HLC, backward: n1's wall clock is 60 s behind its last stamps; its new write still wins.
    w3 = put(n1, "clk/a", "n1-after-heal")
    assert tuple(w3["hlc"]) > tuple(w2["hlc"]) and w3["time_ms"] >= w1["time_ms"], \
        "the HLC never goes backwards, whatever the wall clock does"
    expected["clk/a"] = "n1-after-heal"
    wait_for(lambda: converged(cluster, expected), 30, "the write after the backward jump to win everywhere")
    hlcs = {n.name: sensor_map(n)["clk/a"][1] for n in cluster.nodes}
    assert len(set(hlcs.values())) == 1, hlcs

    assert "clock" not in " ".join(faults.heal_all(cluster)), "nothing left to reset"
    assert not list(cluster.root.rglob("chaos-clock.json"))


def test_without_the_chaos_flag_a_node_ignores_a_skew_file(tmp_path):
    """The skew is a test-only switch: a node of an ordinary cluster never reads the file."""
    with LocalCluster(tmp_path) as c:
        node = c.init_node("solo")
        faults.clock_file(node).write_text('{"offset_s": 3600}')
        c.start_all()
        wall = put(node, "clk/solo", "x")["time_ms"] / 1000
        assert abs(wall - time.time()) < 600, "the node's clock is not an hour ahead"
        with pytest.raises(MeshError, match="^chaos: clock-jump needs a cluster built with chaos_clock=True"):
            faults.apply(jump("solo", 60.0), c)
