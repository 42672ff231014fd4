"""``GET /metrics`` on a real node: Prometheus text over real HTTP, with the node's live Raft and sensor figures."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
import trio
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from crdt.errors import MeshError
from inference import build_demo_model
from mesh import Config, Node
from mesh.client import Client
from mesh.cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def scrape(api_addr: str) -> tuple[str, dict[tuple[str, tuple], float]]:
    """(content type, {(sample name, sorted labels): value}) of one scrape."""
    with urllib.request.urlopen(f"http://{api_addr}/metrics", timeout=10) as resp:
        content_type, text = resp.headers["Content-Type"], resp.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return content_type, samples


def test_metrics_of_a_single_node_mesh_after_a_config_write(tmp_path):
    node_dir = LocalCluster(tmp_path).init_node("solo").data_dir

    async def main():
        async with Node.start(Config.load(node_dir)) as node:
            with trio.fail_after(20):
                while node.raft_status()["role"] != "leader":
                    await trio.sleep(0.05)
            client = Client(node_dir, timeout=10)
            await trio.to_thread.run_sync(client.post, "/config/set", {"key": "fan", "value": "on"})
            await trio.to_thread.run_sync(client.state_put, "kitchen/temp", 21.5)
            await node.add_model("demo", build_demo_model(tmp_path / "m.onnx", seed=2))
            image = {"image": np.ones((1, 3, 32, 32), np.float32)}
            for _ in range(2):  # the second is answered from the cache
                await node.infer("demo", image)
            with pytest.raises(MeshError):
                await node.infer("no-such-model", image)
            return node.peer_id, await trio.to_thread.run_sync(scrape, node.api_addr)

    peer_id, (content_type, samples) = trio.run(main)
    assert content_type == CONTENT_TYPE_LATEST
    assert samples[("meshnode_raft_role", (("role", "leader"),))] == 1
    assert samples[("meshnode_raft_role", (("role", "follower"),))] == 0
    commit = samples[("meshnode_raft_commit_index", ())]
    assert commit >= 1
    assert samples[("meshnode_raft_apply_lag", ())] == commit - samples[("meshnode_raft_last_applied", ())]
    assert samples[("meshnode_raft_voters", ())] == 1
    assert samples[("meshnode_raft_leader_known", ())] == 1
    assert samples[("meshnode_sensor_keys", (("scope", "shared"),))] == 1
    assert samples[("meshnode_peers", (("state", "alive"),))] == 0  # alone in its mesh
    assert samples[("meshnode_node_info", (("name", "solo"), ("peer_id", peer_id), ("tier", "edge")))] == 1
    # Node.infer feeds the per-request figures: by model and where it ran, its latency, its errors.
    assert samples[("meshnode_inference_requests_total", (("model", "demo"), ("route", "local")))] == 1
    assert samples[("meshnode_inference_requests_total", (("model", "demo"), ("route", "cache")))] == 1
    assert samples[("meshnode_inference_request_duration_seconds_count", (("model", "demo"), ("route", "local")))] == 1
    assert sum(v for (name, labels), v in samples.items()
               if name == "meshnode_inference_request_errors_total" and ("model", "no-such-model") in labels) == 1
    failed = [labels for (name, labels) in samples if name == "meshnode_metrics_section_failed"]
    assert failed == []  # every part of a running node reads
