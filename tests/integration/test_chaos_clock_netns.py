"""The clock switch reaches nodes in network namespaces: ``LanCluster(chaos_clock=True)`` (issue 7, clock nemesis).

Rule: a node reads the skew only when started with ``MESHNODE_CHAOS_CLOCK``,
which the chaos harness's clusters set (through ``ip netns exec``) only when
built with ``chaos_clock=True``; healing resets the skew.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.chaos import faults
from mesh.chaos.nemesis import Fault
from mesh.cluster import wait_for
from mesh.netlab import LanCluster, why_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long, pytest.mark.timeout(180)]

HOUR = 3600.0


def test_a_jump_skews_only_the_target_in_its_namespace_and_heals(tmp_path):
    reason = why_unavailable()
    if reason:
        pytest.skip(f"needs private network namespaces: {reason}")
    cluster = LanCluster(Path(tmp_path), prefix="ckn", chaos_clock=True)
    try:
        for _ in range(2):
            cluster.add_node()
        cluster.start_all()
        cluster.wait_mesh(timeout=60)
        n0, n1 = cluster.nodes
        fault = Fault(kind="clock-jump", start_s=0, end_s=1, targets=("n1",), params=(("offset_s", -HOUR),))
        faults.apply(fault, cluster)

        def lease_left_on(node) -> float:  # a stale check judged on node's own wall clock; -1: not applied there yet
            answer = node.client(timeout=10).get("/tasks/check", task="t", token=str(held["token"]), stale="1")
            return -1.0 if answer["lease_left_s"] is None else answer["lease_left_s"]

        held = n0.client(timeout=20).post("/tasks/acquire", {"task": "t", "holder": "h", "lease": 30.0})
        assert held["acquired"] is True
        wait_for(lambda: lease_left_on(n1) > HOUR, 30, "n1, an hour behind, to see the lease an hour longer")
        assert 0 <= lease_left_on(n0) <= 30.0, "n0's clock is untouched"
        faults.heal(fault, cluster)
        wait_for(lambda: 0 <= lease_left_on(n1) <= 30.0, 30, "n1's clock to be true again")
        assert not faults.clock_file(n1).exists()
    finally:
        cluster.close()
        print(cluster.log_tails())
        assert not cluster.lan.leftover(), "namespaces left behind"
