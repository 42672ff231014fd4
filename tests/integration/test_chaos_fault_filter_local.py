"""Partitions without root: the local backend's fault filter really cuts a node off, and the heal really restores it.

Rules from the issue: "Without root: nodes on 127.0.0.1 and partitions applied
by a fault filter in the node's transport that only a chaos run can switch on".
"""

from __future__ import annotations

import pytest

from crdt.errors import MeshError
from mesh.chaos import faults
from mesh.chaos.nemesis import Fault
from mesh.cluster import LocalCluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long, pytest.mark.timeout(150)]


def alive_peers(node) -> set[str]:
    return {p["peer_id"] for p in node.client(timeout=5).get("/peers") if p["state"] == "alive"}


def test_an_isolated_node_loses_the_mesh_and_raft_while_the_majority_commits_then_comes_back(tmp_path):
    with LocalCluster(tmp_path, chaos_filter=True) as cluster:
        for name in ("n0", "n1", "n2"):
            cluster.init_node(name)
        cluster.start_all()
        cluster.wait_mesh()
        cluster.wait_leader()
        cut, rest = cluster.nodes[0], cluster.nodes[1:]
        injection = faults.apply(Fault(kind="partition-node", start_s=0, end_s=1, groups=(("n0",), ("n1", "n2"))),
                                 cluster)
        assert "block n0->n1" in injection.actions

        wait_for(lambda: not alive_peers(cut) & {n.peer_id for n in rest}, 30, "n0 to lose both peers")
        for node in rest:
            wait_for(lambda node=node: cut.peer_id not in alive_peers(node), 30, f"{node.name} to lose n0")
        # The majority keeps committing; the cut-off node cannot, and does not see the write.
        assert rest[0].client().post("/config/set", {"key": "during", "value": 1})["value"] == 1
        with pytest.raises(Exception):
            cut.client(timeout=8).post("/config/set", {"key": "cut", "value": 2})
        assert "during" not in cut.client().get("/config/list", stale=1)

        faults.heal(injection.fault, cluster)
        for node in cluster.nodes:
            others = {n.peer_id for n in cluster.nodes if n is not node}
            wait_for(lambda node=node, others=others: others <= alive_peers(node), 30, f"{node.name} to see all")
        wait_for(lambda: cut.client().get("/config/get", key="during")["value"] == 1, 30, "n0 to read the write")
        assert not any((n.data_dir / "chaos-filter.json").exists() for n in cluster.nodes)


def test_a_cluster_without_the_switch_refuses_to_cut(tmp_path):
    cluster = LocalCluster(tmp_path)
    with pytest.raises(MeshError, match="chaos_filter=True"):
        cluster.block(0, 1)
