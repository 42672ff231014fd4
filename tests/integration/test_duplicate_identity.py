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
        cluster.nodes.append(twin)
        cluster.start_all()
        wait_for(lambda: b.peer_id in a.client().get("/status")["duplicate_peers"], 30, "a to see the duplicate")
        assert "duplicate identity" in a.log_path.read_text()
        wait_for(lambda: any(n.client().get("/status")["identity_conflict"] for n in (b, twin)), 30,
                 "one of the twins to be told")
        told = [n for n in (b, twin) if n.client().get("/status")["identity_conflict"]]
        assert "copied data dir" in told[0].client().get("/status")["identity_conflict"]
        assert "duplicate identity" in told[0].log_path.read_text()
