"""An API exposed beyond loopback asks for the node's token on every request (real node process)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import yaml

from mesh.cluster import LocalCluster
from mesh.config import API_TOKEN_FILE, NODE_FILE

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long]  # CI stage 2 (stage 1 stays under 10 min)


def fetch(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_node_that_requires_its_token_refuses_requests_without_it(tmp_path):
    with LocalCluster(tmp_path) as cluster:
        guarded, plain = cluster.init_node("guarded"), cluster.init_node("plain")
        raw = yaml.safe_load((guarded.data_dir / NODE_FILE).read_text())
        raw["api_token"] = True  # as when `api` listens beyond loopback (the default there)
        (guarded.data_dir / NODE_FILE).write_text(yaml.safe_dump(raw, sort_keys=False))
        cluster.start_all()
        cluster.wait_api(guarded)
        cluster.wait_api(plain)

        token_file = guarded.data_dir / API_TOKEN_FILE
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        token = token_file.read_text().strip()
        base = guarded.client().base
        for url, given in ((f"{base}/status", None), (f"{base}/status", "wrong-" + token),
                           (f"{base}/dashboard/data?token=nope", None)):
            status, body = fetch(url, given)
            assert status == 401 and API_TOKEN_FILE in json.loads(body)["error"]
        assert fetch(f"{base}/status", token)[0] == 200
        status, page = fetch(f"{base}/dashboard?token={token}")
        assert status == 200 and b"meshnode dashboard" in page
        assert fetch(f"{base}/dashboard/data?token={token}")[0] == 200
        assert guarded.client().get("/status")["name"] == "guarded"  # the CLI's client reads api.token itself

        # On loopback, by default, no token is made or asked for.
        assert not (plain.data_dir / API_TOKEN_FILE).exists()
        assert fetch(f"{plain.client().base}/status")[0] == 200
