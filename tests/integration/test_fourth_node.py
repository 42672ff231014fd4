"""A 4th node does not vote (raft.voters = 3) but reads and writes through the voters."""

from __future__ import annotations

import pytest

from mesh.cluster import LocalCluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_fourth_node_forwards_to_the_voters(tmp_path):
    with LocalCluster(tmp_path) as cluster:
        for name in ("n1", "n2", "n3", "n4"):
            cluster.init_node(name)
        cluster.start_all()
        cluster.wait_mesh()
        leader = cluster.wait_leader()
        roles = {n.name: n.client().get("/status")["raft"]["role"] for n in cluster.nodes}
        assert sorted(roles.values()).count("forwarder") == 1, roles
        forwarder = next(n for n in cluster.nodes if roles[n.name] == "forwarder")
        client = forwarder.client()
        assert client.post("/config/set", {"key": "from.forwarder", "value": 4})["value"] == 4
        for node in cluster.nodes:
            assert node.client().get("/config/get", key="from.forwarder")["value"] == 4
        wait_for(lambda: client.get("/status")["raft"]["leader"] == leader, 10, "the forwarder to learn the leader")
        voters = {n.client().get("/status")["raft"]["role"] for n in cluster.nodes if n is not forwarder}
        assert voters <= {"leader", "follower"}
