"""meshnode backup / restore on a real node: taken while it runs, restored elsewhere, rejoining safely."""

from __future__ import annotations

import json

import pytest
import trio
from click.testing import CliRunner

from mesh import Config, Node
from mesh.cli import main
from mesh.cluster import LocalCluster
from mesh.sensor_db import read_epoch

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def cli(*args: str) -> dict:
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_backup_taken_while_running_restores_a_node_that_rejoins_with_its_state(tmp_path):
    node_dir = LocalCluster(tmp_path).init_node("hub").data_dir
    archive = tmp_path / "hub.tar.gz"

    async def before():
        async with Node.start(Config.load(node_dir)) as node:
            await node.state.put("kitchen/temp", 21.5)
            await node.state.put("hall/door", "shut")
            doc = await trio.to_thread.run_sync(cli, "backup", str(archive), "-d", str(node_dir))
            await node.state.put("after/backup", 1)  # not in the backup
            return node.peer_id, node.state.get("kitchen/temp")["writer"], doc

    peer_id, writer, doc = trio.run(before)
    assert doc["peer_id"] == peer_id and "raft/membership.json" not in doc["files"]
    assert {"node.yaml", "identity.key", "mesh.key", "sensors.sqlite"} <= set(doc["files"])
    assert oct(archive.stat().st_mode & 0o777) == "0o600"  # it holds the identity and the mesh key

    restored = tmp_path / "restored"
    cli("restore", str(archive), str(restored))
    membership = json.loads((restored / "raft" / "membership.json").read_text())
    assert membership["left"] is True  # it rejoins Raft like a new node, never bootstraps a cluster alone
    assert read_epoch(restored / "sensors.sqlite.epoch") > (read_epoch(node_dir / "sensors.sqlite.epoch") or 0)

    async def after():
        async with Node.start(Config.load(restored), serve_api=False) as node:
            assert node.peer_id == peer_id  # the same identity
            assert node.state.get("kitchen/temp")["value"] == 21.5
            assert node.state.get("hall/door")["value"] == "shut"
            assert node.state.get("after/backup") is None
            new = await node.state.put("kitchen/temp", 22.0)
            assert new["writer"] != writer  # new writes never reuse the dots the backup's counters had given out
            assert node.raft is None  # waiting to join; it founded no cluster of its own

    trio.run(after)
