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


def test_a_node_that_does_not_vote_keeps_running_models_when_no_voter_answers(tmp_path):
    """Inference works offline: the registry a forwarder last read still describes the model."""
    import os
    import signal

    import numpy as np

    from inference import build_demo_model, encode_tensors

    with LocalCluster(tmp_path) as cluster:
        for name in ("n1", "n2", "n3", "n4"):
            cluster.init_node(name)
        cluster.start_all()
        cluster.wait_mesh()
        cluster.wait_leader()
        roles = {n.name: n.client().get("/status")["raft"]["role"] for n in cluster.nodes}
        forwarder = next(n for n in cluster.nodes if roles[n.name] == "forwarder")
        model = build_demo_model(tmp_path / "m.onnx", seed=2)
        forwarder.client().post("/models/add", {"name": "m", "path": str(model)})
        wait_for(lambda: "m" in forwarder.client().get("/status")["models"], 30, "the model on the forwarder")
        body = {"model": "m", "inputs": encode_tensors({"image": np.zeros((1, 3, 32, 32), np.float32)}),
                "timeout": 10}
        before = forwarder.client().post_msgpack("/infer", body)
        voters = [n for n in cluster.nodes if n is not forwarder]
        for node in voters:
            os.kill(node.proc.pid, signal.SIGSTOP)
        try:
            after = forwarder.client(timeout=30).post_msgpack("/infer", body)
        finally:
            for node in voters:
                os.kill(node.proc.pid, signal.SIGCONT)
        assert after["ran_on"] == forwarder.peer_id and after["outputs"] == before["outputs"]
