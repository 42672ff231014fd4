"""Privacy scopes through the CLI and the HTTP API of a real node: scope shown, --scope checked, status counts."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from mesh.cluster import LocalCluster, meshnode_cmd

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]


def cli(node, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(meshnode_cmd(*args, "-d", str(node.data_dir)), capture_output=True, text=True,
                          check=False, timeout=60)


def test_state_verbs_show_and_check_scopes(tmp_path):
    cluster = LocalCluster(tmp_path)
    node = cluster.init_node("solo", location="lab")
    path = node.data_dir / "node.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["privacy"] = {"local_only": ["secret/*"], "zone_only": ["floor/*"]}
    path.write_text(yaml.safe_dump(raw))
    try:
        cluster.start_all()
        put = cli(node, "state", "put", "secret/pin", "4711")
        assert put.returncode == 0, put.stderr
        assert "local-only: never leaves this node" in put.stdout
        assert cli(node, "state", "put", "--scope", "zone", "floor/door", "shut").returncode == 0
        assert cli(node, "state", "put", "--scope", "shared", "hall/light", "on").returncode == 0

        wrong = cli(node, "state", "put", "--scope", "shared", "secret/other", "1")
        assert wrong.returncode != 0
        assert "privacy: key 'secret/other' is local under this node's privacy config, not shared" in wrong.stderr
        assert len(wrong.stderr.strip().splitlines()) == 1  # one line, no traceback
        majority = cli(node, "state", "put", "--consistency", "majority", "secret/pin", "1")
        assert majority.returncode != 0 and "applies to shared keys only" in majority.stderr

        table = cli(node, "state", "list")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert "SCOPE" in lines[0]
        assert any("secret/pin" in line and "local" in line for line in lines)
        assert any("floor/door" in line and "zone" in line for line in lines)
        listed = json.loads(cli(node, "state", "list", "--json").stdout)
        assert {(d["key"], d["scope"]) for d in listed} == {
            ("floor/door", "zone"), ("hall/light", "shared"), ("secret/pin", "local")}
        got = json.loads(cli(node, "state", "get", "secret/pin", "--json").stdout)
        assert got["value"] == 4711 and got["scope"] == "local"
        assert cli(node, "state", "get", "secret/other").returncode != 0  # never written: refused write left nothing

        sensors = node.client().get("/status")["sensors"]
        assert sensors["local"] == {"keys": 1} and sensors["zone"]["location"] == "lab"
        assert sensors["zone"]["keys"] == 1 and sensors["keys"] == 1
    finally:
        cluster.stop_all()
