"""`meshnode invite` on one node and `meshnode init --token` on another form a mesh."""

from __future__ import annotations

import subprocess

import pytest

from mesh.cluster import LocalCluster, meshnode_cmd

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_token_joins_a_mesh(tmp_path):
    with LocalCluster(tmp_path) as cluster:
        first = cluster.init_node("first")
        out = subprocess.run(meshnode_cmd("invite", "-d", str(first.data_dir), "--json"),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        import json

        token = json.loads(out.stdout)["token"]
        cluster.init_node("second", join=False, extra_args=("--token", token))
        second = cluster.nodes[1]
        assert (second.data_dir / "mesh.key").read_text() == (first.data_dir / "mesh.key").read_text()
        cluster.start_all()
        cluster.wait_mesh(timeout=30)
        assert [p["name"] for p in second.client().get("/peers")] == ["first"]
