"""The /metrics collector: snapshots in, Prometheus text out, parsed back and checked by value."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inference import Overloaded
from mesh import metrics
from mesh.metrics import InferenceMetrics, NodeCollector, families


class Samples(dict):
    """One parsed family: {(sample name, sorted labels): value}, and its ``type``."""

    type = ""


def parse(text: bytes) -> dict[str, Samples]:
    out: dict[str, Samples] = {}
    for family in text_string_to_metric_families(text.decode()):
        samples = out[family.name] = Samples(
            {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples})
        samples.type = family.type
    return out


def render(snapshot: dict, requests: InferenceMetrics | None = None) -> dict[str, Samples]:
    """Render through a real registry and parse the text: {family name: {(sample name, labels): value}}."""

    class Fixed:
        def collect(self):
            return families(snapshot, requests)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    return parse(generate_latest(registry))


def value(parsed: dict, family: str, sample: str | None = None, **labels: str) -> float:
    return parsed[family][(sample or family, tuple(sorted(labels.items())))]


VOTER = {
    "node": {"peer_id": "12D3KooWself", "name": "hub", "tier": "edge", "started_at": 1700000000.5},
    "peers": [{"state": "alive"}, {"state": "alive"}, {"state": "suspect"}, {"state": "left"}],
    "raft": {"role": "leader", "term": 7, "leader": "127.0.0.1:4321", "commit_index": 42, "last_applied": 39,
             "last_index": 43, "voters": ["a", "b", "c"], "messages_sent": 1234},
    "sensors": {"sent": 10, "received": 12, "send_errors": 1, "bad_messages": 0, "keys": 5, "tombstones": 2,
                "broken": "", "local": {"keys": 1}, "zone": None,
                "store": {"store_bytes": 8192, "wal_bytes": 0, "disk_free_bytes": 10**9},
                "core": {"entries_sent": 30, "entries_received": 31, "digests_sent": 4, "deltas_sent": 6,
                         "summaries_sent": 1, "peers": 2, "pending_entries": 3}},
    "inference": {"infer_local": 5, "infer_offloaded": 2, "infer_split": 1, "early_exits": 0, "degraded": 1,
                  "infer_served_for_peers": 3, "retries": 1, "refused": 4, "queue": 2, "max_queue": 8,
                  "batching": {"queued": 1}, "result_cache": {"hits": 6, "misses": 9},
                  "speed_ms": {"classifier": 12.5}},
    "models": ["classifier"],
    "rpc": {"calls": 100, "served": 90, "bad_frames": 2, "frames_sent": 500, "frames_received": 480, "streams": 3},
    "adverts": {"received": 20, "refused": 1},
    "membership": {"alive": 3, "suspect": 1, "dead": 0, "left": 0, "probes": 50},
    "failed": [],
}


def test_peers_by_state_count_each_state_and_zero_for_the_absent():
    out = render(VOTER)
    assert out["meshnode_peers"].type == "gauge"
    assert value(out, "meshnode_peers", state="alive") == 2
    assert value(out, "meshnode_peers", state="suspect") == 1
    assert value(out, "meshnode_peers", state="left") == 1
    assert value(out, "meshnode_peers", state="gone") == 0


def test_raft_role_is_one_for_the_current_role_only():
    out = render(VOTER)
    roles = {dict(labels)["role"]: v for (_, labels), v in out["meshnode_raft_role"].items() if labels}
    assert roles == {"leader": 1, "follower": 0, "candidate": 0, "forwarder": 0}


def test_raft_figures_and_apply_lag_is_commit_minus_applied():
    out = render(VOTER)
    assert value(out, "meshnode_raft_term") == 7
    assert value(out, "meshnode_raft_commit_index") == 42
    assert value(out, "meshnode_raft_last_applied") == 39
    assert value(out, "meshnode_raft_apply_lag") == 42 - 39
    assert value(out, "meshnode_raft_voters") == 3
    assert value(out, "meshnode_raft_leader_known") == 1
    assert out["meshnode_raft_messages_sent"].type == "counter"
    assert value(out, "meshnode_raft_messages_sent", "meshnode_raft_messages_sent_total") == 1234


def test_sensor_state_keys_sync_counters_and_backlog():
    out = render(VOTER)
    assert value(out, "meshnode_sensor_keys", scope="shared") == 5
    assert value(out, "meshnode_sensor_keys", scope="local") == 1
    assert ("meshnode_sensor_keys", (("scope", "zone"),)) not in out["meshnode_sensor_keys"]  # no zone store
    assert value(out, "meshnode_sensor_tombstones") == 2
    assert value(out, "meshnode_sensor_store_broken") == 0  # "" is not broken
    assert value(out, "meshnode_sensor_sync_messages", "meshnode_sensor_sync_messages_total", direction="sent") == 10
    assert value(out, "meshnode_sensor_sync_entries", "meshnode_sensor_sync_entries_total", direction="received") == 31
    assert value(out, "meshnode_sensor_sync_sent", "meshnode_sensor_sync_sent_total", kind="delta") == 6
    assert value(out, "meshnode_sensor_sync_pending_entries") == 3
    assert value(out, "meshnode_sensor_store_bytes") == 8192


def test_sync_figures_per_peer_are_labelled_by_name():
    snapshot = {**VOTER,
                "peers": [{"peer_id": "12D3KooWcam", "name": "cam", "state": "alive"},
                          {"peer_id": "12D3KooWunnamed-peer", "state": "alive"}],
                "sensors": {**VOTER["sensors"], "peers": {
                    "12D3KooWcam": {"bytes_sent": 4096, "messages_sent": 7, "messages_received": 9, "last_heard_s": 0.4},
                    "12D3KooWunnamed-peer": {"bytes_sent": 0, "messages_sent": 0, "messages_received": 0,
                                             "last_heard_s": None}}}}
    out = render(snapshot)
    bytes_total = "meshnode_sensor_sync_peer_bytes_sent_total"
    assert value(out, "meshnode_sensor_sync_peer_bytes_sent", bytes_total, peer="cam") == 4096
    assert value(out, "meshnode_sensor_sync_peer_messages", "meshnode_sensor_sync_peer_messages_total",
                 peer="cam", direction="received") == 9
    assert value(out, "meshnode_sensor_sync_peer_last_heard_seconds", peer="cam") == 0.4
    # A peer without a name is labelled by the end of its id; one never heard has no lag sample.
    assert value(out, "meshnode_sensor_sync_peer_bytes_sent", bytes_total, peer="med-peer") == 0
    assert len(out["meshnode_sensor_sync_peer_last_heard_seconds"]) == 1


def test_inference_service_figures_rpc_and_adverts():
    out = render(VOTER)
    assert value(out, "meshnode_inference_outcomes", "meshnode_inference_outcomes_total", route="remote") == 2
    assert value(out, "meshnode_inference_outcomes", "meshnode_inference_outcomes_total", route="split") == 1
    assert value(out, "meshnode_inference_queue") == 2
    assert value(out, "meshnode_inference_batch_queue") == 1
    assert value(out, "meshnode_inference_refused", "meshnode_inference_refused_total") == 4
    assert value(out, "meshnode_inference_cache_hits", "meshnode_inference_cache_hits_total") == 6
    assert value(out, "meshnode_inference_model_run_seconds", model="classifier") == pytest.approx(0.0125)
    assert value(out, "meshnode_models_loaded") == 1
    assert value(out, "meshnode_rpc_served", "meshnode_rpc_served_total") == 90
    assert value(out, "meshnode_rpc_bad_frames", "meshnode_rpc_bad_frames_total") == 2
    assert value(out, "meshnode_rpc_frames", "meshnode_rpc_frames_total", direction="received") == 480
    assert value(out, "meshnode_adverts_refused", "meshnode_adverts_refused_total") == 1
    assert value(out, "meshnode_membership_members", state="suspect") == 1
    assert value(out, "meshnode_node_info", peer_id="12D3KooWself", name="hub", tier="edge") == 1
    assert out["meshnode_metrics_section_failed"] == {}  # nothing failed


def test_forwarder_without_raft_log_reports_role_and_peers():
    snapshot = {"peers": [{"state": "alive"}], "raft": {"role": "forwarder", "term": 3, "leader": None,
                                                         "voters": []}, "failed": []}
    out = render(snapshot)
    assert value(out, "meshnode_peers", state="alive") == 1
    assert value(out, "meshnode_raft_role", role="forwarder") == 1
    assert value(out, "meshnode_raft_role", role="leader") == 0
    assert value(out, "meshnode_raft_term") == 3
    assert value(out, "meshnode_raft_leader_known") == 0
    for absent in ("meshnode_raft_commit_index", "meshnode_raft_apply_lag", "meshnode_raft_messages_sent"):
        assert absent not in out


def test_a_malformed_section_is_named_and_the_rest_still_renders():
    snapshot = {**VOTER, "raft": {"term": 1}, "peers": [{"no state": 1}]}  # raft without a role
    out = render(snapshot)
    assert value(out, "meshnode_metrics_section_failed", section="raft") == 1
    assert value(out, "meshnode_metrics_section_failed", section="peers") == 1
    assert "meshnode_raft_term" not in out and "meshnode_peers" not in out  # all of a section or none
    assert value(out, "meshnode_sensor_keys", scope="shared") == 5


def test_histogram_buckets_count_observations_cumulatively():
    requests = InferenceMetrics(buckets=(0.01, 0.1, 1.0))
    for seconds in (0.005, 0.05, 0.1, 0.5, 3.0):  # a bound holds a value equal to it (le: less or equal)
        requests.observe("classifier", "local", seconds)
    requests.observe("classifier", "remote", 0.2)
    out = render({"failed": []}, requests)
    name = "meshnode_inference_request_duration_seconds"
    assert out[name].type == "histogram"

    def bucket(le: str) -> float:
        return value(out, name, f"{name}_bucket", model="classifier", route="local", le=le)

    assert [bucket(le) for le in ("0.01", "0.1", "1.0", "+Inf")] == [1, 3, 4, 5]
    assert value(out, name, f"{name}_count", model="classifier", route="local") == 5
    assert value(out, name, f"{name}_sum", model="classifier", route="local") == pytest.approx(3.655)
    assert value(out, "meshnode_inference_requests", "meshnode_inference_requests_total",
                 model="classifier", route="remote") == 1
    assert value(out, "meshnode_inference_requests", "meshnode_inference_requests_total",
                 model="classifier", route="local") == 5


def test_model_labels_are_bounded():
    requests = InferenceMetrics()
    for i in range(metrics.MAX_MODELS + 5):
        requests.failed(f"unregistered-{i}", "error")
    out = render({"failed": []}, requests)
    errors = out["meshnode_inference_request_errors"]
    models = {dict(labels)["model"] for (_, labels), _ in errors.items() if labels}
    assert len(models) == metrics.MAX_MODELS + 1
    assert value(out, "meshnode_inference_request_errors", "meshnode_inference_request_errors_total",
                 model=metrics.OTHER_MODEL, reason="error") == 5


def test_measure_counts_route_latency_and_failures_on_trio_clock():
    requests = InferenceMetrics(buckets=(0.1, 1.0))

    async def answer(route: str, delay: float):
        await trio.sleep(delay)
        return SimpleNamespace(route=route)

    async def refuse():
        raise Overloaded("inference: busy")

    async def break_down():
        raise ZeroDivisionError

    async def main():
        assert (await requests.measure("m", answer("split", 0.5))).route == "split"
        with pytest.raises(Overloaded):
            await requests.measure("m", refuse())
        with pytest.raises(ZeroDivisionError):
            await requests.measure("m", break_down())

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    out = render({"failed": []}, requests)
    name = "meshnode_inference_request_duration_seconds"
    assert value(out, name, f"{name}_bucket", model="m", route="split", le="0.1") == 0
    assert value(out, name, f"{name}_bucket", model="m", route="split", le="1.0") == 1
    assert value(out, name, f"{name}_sum", model="m", route="split") == pytest.approx(0.5)
    errors = "meshnode_inference_request_errors"
    assert value(out, errors, f"{errors}_total", model="m", reason="refused") == 1
    assert value(out, errors, f"{errors}_total", model="m", reason="error") == 1


class StubNode:
    """Just enough of ``Node`` for ``gather``: a forwarder with no inference service yet."""

    def __init__(self) -> None:
        self.peer_id, self.started_at = "12D3KooWstub", 1.0
        self.settings = SimpleNamespace(name="stub", tier="device")
        self.raft = None
        self.state = SimpleNamespace(statistics=lambda: {"keys": 4, "sent": 1, "received": 2})
        self.rpc = SimpleNamespace(statistics=lambda: {"served": 7})
        self.advert_stats = {"received": 3, "refused": 0}

    def peer_list(self):
        return [{"state": "alive"}, {"state": "alive"}, {"state": "suspect"}]

    def raft_status(self):
        return {"role": "forwarder", "leader": "12D3KooWvoter", "term": 5, "voters": [], "leader_name": "v"}


def test_registry_for_a_node_gathers_what_exists_and_names_what_does_not():
    node = StubNode()
    registry = metrics.registry_for(node)
    assert metrics.registry_for(node) is registry  # one per node
    assert metrics.registry_for(StubNode()) is not registry
    metrics.inference_metrics(node).observe("m", "cache", 0.001)
    out = parse(generate_latest(registry))
    assert value(out, "meshnode_peers", state="alive") == 2
    assert value(out, "meshnode_peers", state="suspect") == 1
    assert value(out, "meshnode_raft_role", role="forwarder") == 1
    assert value(out, "meshnode_raft_leader_known") == 1
    assert value(out, "meshnode_sensor_keys", scope="shared") == 4
    assert value(out, "meshnode_rpc_served", "meshnode_rpc_served_total") == 7
    assert value(out, "meshnode_node_info", peer_id="12D3KooWstub", name="stub", tier="device") == 1
    assert value(out, "meshnode_inference_requests", "meshnode_inference_requests_total", model="m", route="cache") == 1
    failed = {dict(labels)["section"] for (_, labels), _ in out["meshnode_metrics_section_failed"].items() if labels}
    assert failed == {"inference", "models", "membership", "admission", "placement"}


def test_a_collector_does_not_keep_its_node_alive():
    node = StubNode()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node, InferenceMetrics()))
    metrics.registry_for(node)
    del node
    gc.collect()
    out = parse(generate_latest(registry))
    assert value(out, "meshnode_metrics_section_failed", section="node") == 1
    assert "meshnode_peers" not in out
