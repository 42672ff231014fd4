"""Partition placement on real processes: set through one node's HTTP API, read from another's CLI (issue 4)."""

from __future__ import annotations

import json
import subprocess

import pytest

from mesh.client import ClientError
from mesh.cluster import LocalCluster, meshnode_cmd, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


def cli(node, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(meshnode_cmd(*args, "-d", str(node.data_dir)), capture_output=True, text=True,
                          check=False, timeout=60)


def test_a_placement_set_on_one_node_is_read_on_another(tmp_path):
    from inference import build_demo_model

    model = build_demo_model(tmp_path / "m.onnx", seed=7)
    cluster = LocalCluster(tmp_path / "mesh")
    for name in ("n0", "n1", "n2"):
        cluster.init_node(name)
    try:
        cluster.start_all()
        cluster.wait_mesh(timeout=60)
        cluster.wait_leader(timeout=60)
        a, b = cluster.nodes[0], cluster.nodes[2]
        api = a.client()
        ids = [n.client().get("/status")["peer_id"] for n in cluster.nodes]

        with pytest.raises(ClientError, match="'m': it is not registered"):
            api.post("/placement/set", {"model": "m", "partitions": {"0": ids[:1]}, "expected_revision": 0})
        api.post("/models/add", {"name": "m", "path": str(model)})
        # The leader places a newly registered model at once; a planner sets it by compare-and-set on that.
        def placed_revision() -> int:
            try:
                return a.client().get("/placement", model="m")["placement_revision"]
            except ClientError:  # no placement yet
                return 0

        seen = wait_for(placed_revision, 20, "the leader to place the new model")

        placed = api.post("/placement/set", {"model": "m", "partitions": {"0": [ids[1], ids[0]], "1": [ids[2]]},
                                             "expected_revision": seen})
        assert placed["swapped"] is True
        rev = placed["placement_revision"]
        # A second planner that read the same revision must not overwrite it blindly.
        lost = api.post("/placement/set", {"model": "m", "partitions": {"0": [ids[2]]}, "expected_revision": seen})
        assert lost["swapped"] is False and lost["placement_revision"] == rev

        out = cli(b, "placement", "m", "--json")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["partitions"] == [{"partition": 0, "peers": [ids[1], ids[0]]},
                                     {"partition": 1, "peers": [ids[2]]}]
        assert doc["placement_revision"] == rev and doc["stale"] is False

        # A stale read answers from b's applied state once it has caught up.
        wait_for(lambda: b.client().get("/placement", model="m", stale=1)["placement_revision"] == rev, 20,
                 "the placement applied on n2")
        table = cli(b, "placement", "--stale")
        assert table.returncode == 0 and "(stale read on n2" in table.stderr
        assert table.stdout.splitlines()[0].split() == ["MODEL", "PARTITION", "PEERS", "REVISION"]
        assert f"{ids[1]}, {ids[0]}" in table.stdout

        # Set by hand, it stands: the leader's planner leaves it alone through its next round.
        leader = next(n for n in cluster.nodes if n.client().get("/status")["peer_id"] == cluster.wait_leader())
        rounds = leader.client().get("/status")["placement"]["rounds"]
        wait_for(lambda: leader.client().get("/status")["placement"]["rounds"] > rounds, 30,
                 "the leader's next placement round")
        assert b.client().get("/placement", model="m")["placement_revision"] == rev
        assert api.post("/placement/clear", {"model": "m"})["cleared"] is True  # the planner's again from now on
        missing = cli(b, "placement", "nothing-placed")
        assert missing.returncode == 1
        assert missing.stderr.strip() == "error: placement: model 'nothing-placed' has no placement"
    finally:
        cluster.stop_all()


def test_placement_through_the_embedding_api(tmp_path):
    import trio

    from inference import build_demo_model
    from mesh import Config, MeshError, Node

    model = build_demo_model(tmp_path / "m.onnx", seed=8)
    node_dir = LocalCluster(tmp_path / "mesh").init_node("solo").data_dir

    async def main():
        async with Node.start(Config.load(node_dir), serve_api=False) as node:
            with trio.fail_after(20):
                while node.raft_status()["leader"] is None:
                    await trio.sleep(0.05)
            await node.add_model("m", model)
            placed = await node.placement.set("m", {0: [node.peer_id]}, expected_revision=0)
            assert placed["swapped"] and placed["exists"]
            again = await node.placement.set("m", {0: [node.peer_id]}, expected_revision=0)
            assert not again["swapped"]
            got = await node.placement.get("m", stale=True)
            assert got["partitions"] == [{"partition": 0, "peers": [node.peer_id]}] and got["stale"] is True
            assert [p["model"] for p in (await node.placement.list())["placements"]] == ["m"]
            with pytest.raises(MeshError, match="peer id"):
                await node.placement.set("m", {0: ["nope"]}, expected_revision=placed["placement_revision"])
            assert (await node.placement.clear("m"))["cleared"]
            assert await node.placement.get("m") is None

    trio.run(main)
