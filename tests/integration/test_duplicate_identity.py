"""A copied data dir (two processes, one identity) is detected and reported on both sides."""

from __future__ import annotations

import re
import shutil
import socket

import pytest

from mesh.cluster import LocalCluster, LocalNode, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_copied_data_dir_is_reported(tmp_path):
    with LocalCluster(tmp_path) as cluster:
        a = cluster.init_node("a")
        b = cluster.init_node("b")
        copy = tmp_path / "b-copy"
        shutil.copytree(b.data_dir, copy)
        text = (copy / "node.yaml").read_text()
        text = re.sub(r"listen: /ip4/127.0.0.1/tcp/\d+", f"listen: /ip4/127.0.0.1/tcp/{free_port()}", text)
        text = re.sub(r"  port: \d+", f"  port: {free_port()}", text)
        (copy / "node.yaml").write_text(text)
        twin = LocalNode(name="b-copy", data_dir=copy, peer_id=b.peer_id)
        cluster.start_all()
        cluster.wait_mesh()
        # The copy starts later; it may be refused and exit before its API is up, so no wait_api.
        cluster.nodes.append(twin)
        cluster.start(twin)
        wait_for(lambda: b.peer_id in a.client().get("/status")["duplicate_peers"], 30, "a to see the duplicate")
        assert "refusing the later one" in a.log_path.read_text()
        # The later of the twins (the copy, started second) is refused and stops with a one-line
        # reason; the original stays.
        wait_for(lambda: not twin.running, 30, "the later twin to stop")
        refused, kept = twin, b
        assert refused.proc.wait(5) == 1
        assert "refused as a duplicate identity" in refused.log_path.read_text()
        assert kept.running
        wait_for(lambda: any(p["peer_id"] == b.peer_id and p["state"] == "alive"
                             for p in a.client().get("/peers")), 30, "a to see the kept twin alive")
        assert not kept.client().get("/status")["identity_conflict"].startswith("mesh: refused")
