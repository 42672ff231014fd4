"""The embedding API: `from mesh import Node, Config` in trio, and the blocking BackgroundNode."""

from __future__ import annotations

import numpy as np
import pytest
import trio

import mesh
from mesh import BackgroundNode, Config, MeshError, Node
from mesh.cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_public_names_are_pinned():
    assert mesh.__all__ == [
        "BackgroundNode", "Config", "InferResult", "LocalProtocolError", "MeshError", "Node", "QuorumNotReached",
        "RemoteProtocolError",
    ]
    for name in mesh.__all__:
        assert getattr(mesh, name) is not None


async def wait_until(check, timeout=20.0):
    with trio.fail_after(timeout):
        while not (await check() if callable(check) else check):
            await trio.sleep(0.05)


def test_two_nodes_in_one_trio_program(tmp_path):
    from inference import build_demo_model

    cluster = LocalCluster(tmp_path)
    a, b = cluster.init_node("a", tier="cloud"), cluster.init_node("b", tier="device")
    model = build_demo_model(tmp_path / "m.onnx", seed=5)
    image = np.ones((1, 3, 32, 32), np.float32)

    async def main():
        async with Node.start(Config.load(a.data_dir)) as na, Node.start(Config.load(b.data_dir)) as nb:
            assert na.peer_id == a.peer_id and nb.peer_id == b.peer_id

            async def both_voting():
                return na.raft_status()["leader"] is not None and nb.raft_status()["leader"] == na.raft_status()["leader"]

            await wait_until(both_voting)
            await na.state.put("garden/soil", 0.31)

            async def synced():
                entry = nb.state.get("garden/soil")
                return entry is not None and entry["value"] == 0.31

            await wait_until(synced)
            await nb.config.set("irrigation", {"on": True})
            assert await na.config.get("irrigation") == {"on": True}
            assert await na.config.get("never.set") is None

            await na.add_model("m", model)

            async def loaded():
                return "m" in nb.runtime.loaded()

            await wait_until(loaded)
            result = await nb.infer("m", {"image": image})
            assert result.outputs["probs"].shape == (1, 10) and result.ran_on == nb.peer_id
            with pytest.raises(MeshError, match="inference: "):
                await nb.infer("m", {"image": image[:, :1]})
            with pytest.raises(MeshError, match="not registered"):
                await nb.infer("nope", {"image": image})

    trio.run(main)


def test_background_node_for_plain_scripts(tmp_path):
    cluster = LocalCluster(tmp_path)
    node = cluster.init_node("solo")
    with BackgroundNode(Config.load(node.data_dir), serve_api=False) as bg:
        assert bg.peer_id == node.peer_id
        assert bg.state.put("hall/light", "on")["value"] == "on"
        assert bg.state.get("hall/light")["value"] == "on"
        assert bg.config.set("mode", "night")["value"] == "night"
        assert bg.config.get("mode") == "night"
        assert bg.status()["name"] == "solo"
    with pytest.raises(MeshError, match="not running"):
        bg.state.get("hall/light")
