"""Requests on three real nodes: offload, split, early exit, failover when a peer stalls, degraded answers.

Rules checked (issue 6, "Offload and failover"): "a peer that dies or stalls
mid-request: retry on another peer or locally within the deadline; no request
is silently dropped, none answered twice"; "when no peer is reachable, a
degraded local answer ... is returned and flagged as degraded"; "a model with
an exit head answers locally when its confidence clears a threshold; otherwise
features go up a tier".
"""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from inference import Runtime, decode_tensors, encode_tensors
from inference.cnn import cnn_bytes
from inference.early_exit import EXIT_OUTPUT, early_exit_bytes
from inference.spec import model_spec_from_bytes
from mesh.cluster import LocalCluster, wait_for
from mesh.config import NODE_FILE

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("routes")
    c = LocalCluster(root)
    c.init_node("hub", tier="edge")
    c.init_node("cloud", tier="cloud")
    cam = c.init_node("cam", tier="device")
    # The camera sends its requests away whenever a peer has room (battery), and caches nothing.
    path = cam.data_dir / NODE_FILE
    text = path.read_text()
    assert "offload: auto" in text and "result_cache_mb: 64" in text
    path.write_text(text.replace("offload: auto", "offload: prefer").replace("result_cache_mb: 64", "result_cache_mb: 0"))
    # The cloud node runs its own requests itself (and still serves its peers').
    cloud = c.nodes[1].data_dir / NODE_FILE
    cloud.write_text(cloud.read_text().replace("offload: auto", "offload: off").replace("result_cache_mb: 64",
                                                                                       "result_cache_mb: 0"))
    try:
        c.start_all()
        c.wait_mesh(timeout=60)
        c.wait_leader(timeout=60)
        models = root / "models"
        models.mkdir()
        (models / "cnn.onnx").write_bytes(cnn_bytes("mobilenet_v2", seed=4))
        (models / "exit.onnx").write_bytes(early_exit_bytes())
        client = c.nodes[0].client()
        for name in ("cnn", "exit"):
            client.post("/models/add", {"name": name, "path": str(models / f"{name}.onnx")})
        for node in c.nodes:
            wait_for(lambda node=node: {"cnn", "exit"} <= set(node.client().get("/status")["inference"]["partitions"]),
                     60, f"{node.name} to cut and measure both models")
        wait_for(lambda: all({"cnn", "exit"} <= set(p["models"]) for p in cam.client().get("/peers")), 20,
                 "the camera to hear both peers serve both models")
        yield c
    finally:
        for node in c.nodes:  # a test that stopped a node leaves it stopped: let it go on
            if node.proc is not None and node.proc.poll() is None:
                os.kill(node.proc.pid, signal.SIGCONT)
        c.stop_all()


def reference(data: bytes, inputs: dict) -> dict:
    rt = Runtime()
    rt.load_bytes("m", data, model_spec_from_bytes(data))
    return rt.run("m", inputs)


def infer(node, model: str, inputs: dict, **extra) -> dict:
    reply = node.client(timeout=60).post_msgpack("/infer", {"model": model, "inputs": encode_tensors(inputs), **extra})
    reply["outputs"] = decode_tensors(reply["outputs"])
    return reply


def image(seed: int, shape=(1, 3, 64, 64)) -> dict:
    return {"image": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


def by_name(cluster, name):
    return next(n for n in cluster.nodes if n.name == name)


def test_offloaded_answers_equal_a_local_run(cluster):
    cam = by_name(cluster, "cam")
    data = cnn_bytes("mobilenet_v2", seed=4)
    x = image(1)
    reply = infer(cam, "cnn", x)
    assert reply["route"] == "remote" and reply["ran_on"] != cam.peer_id and not reply["degraded"]
    np.testing.assert_allclose(reply["outputs"]["logits"], reference(data, x)["logits"], atol=1e-4)


def test_early_exit_answers_here_when_confident_and_goes_up_a_tier_otherwise(cluster):
    cam = by_name(cluster, "cam")
    data = early_exit_bytes()
    x = {"x": np.random.default_rng(2).uniform(-1, 1, (1, 3, 48, 192)).astype(np.float32)}
    name = model_spec_from_bytes(data).input_names[0]
    x = {name: x["x"]}
    expected = reference(data, x)
    early = infer(cam, "exit", x, exit_threshold=0.0)
    assert early["route"] == "early_exit" and early["early_exit"] and early["ran_on"] == cam.peer_id
    assert set(early["outputs"]) == {EXIT_OUTPUT}
    np.testing.assert_allclose(early["outputs"][EXIT_OUTPUT], expected[EXIT_OUTPUT], atol=1e-5)
    up = infer(cam, "exit", x, exit_threshold=1.0)
    assert up["route"] == "split" and up["ran_on"] != cam.peer_id and not up["early_exit"]
    assert set(up["outputs"]) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(up["outputs"][key], value, atol=1e-4)


def test_stalled_peers_cost_retries_not_requests(cluster):
    """Both peers stop answering while still advertised alive: every request tries them, then runs here."""
    cam = by_name(cluster, "cam")
    others = [n for n in cluster.nodes if n is not cam]
    data = cnn_bytes("mobilenet_v2", seed=4)
    before = cam.client().get("/status")["inference"]
    inputs = [image(100 + i) for i in range(6)]
    replies: list = [None] * len(inputs)
    errors: list = []

    def send(i: int) -> None:
        try:
            replies[i] = infer(cam, "cnn", inputs[i], timeout=30)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    for node in others:
        os.kill(node.proc.pid, signal.SIGSTOP)  # alive to everyone for a while, answering nothing
    try:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(inputs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    finally:
        for node in others:
            os.kill(node.proc.pid, signal.SIGCONT)
    assert not errors and all(r is not None for r in replies)
    stalled = {n.peer_id for n in others}
    for x, reply in zip(inputs, replies):
        np.testing.assert_allclose(reply["outputs"]["logits"], reference(data, x)["logits"], atol=1e-4)
        assert reply["ran_on"] == cam.peer_id and reply["route"] == "local"
        assert reply["failed_peers"] and set(reply["failed_peers"]) <= stalled
        assert reply["attempts"] == len(reply["failed_peers"]) + 1
    after = cam.client().get("/status")["inference"]
    assert after["retries"] - before["retries"] == sum(len(r["failed_peers"]) for r in replies)
    # Exactly one answer per request: the requests counted as answered here are the ones we sent,
    # although the stalled peers run theirs too once they wake (their late replies are dropped).
    answered = sum(after[k] - before[k] for k in ("infer_local", "infer_offloaded", "infer_split"))
    assert answered == len(inputs)


def test_cut_off_from_every_tier_a_device_answers_degraded_and_says_so(cluster):
    cam = by_name(cluster, "cam")
    others = [n for n in cluster.nodes if n is not cam]
    data = early_exit_bytes()
    name = model_spec_from_bytes(data).input_names[0]
    x = {name: np.random.default_rng(3).uniform(-1, 1, (1, 3, 48, 192)).astype(np.float32)}
    for node in others:
        os.kill(node.proc.pid, signal.SIGSTOP)
    try:
        reply = infer(cam, "exit", x, exit_threshold=1.0, timeout=20)
    finally:
        for node in others:
            os.kill(node.proc.pid, signal.SIGCONT)
    assert reply["degraded"] and reply["route"] == "degraded" and reply["ran_on"] == cam.peer_id
    np.testing.assert_allclose(reply["outputs"][EXIT_OUTPUT], reference(data, x)[EXIT_OUTPUT], atol=1e-5)
    assert cam.client().get("/status")["inference"]["degraded"] >= 1


def test_requests_that_queue_up_run_as_batches_with_the_same_answers(cluster):
    cloud = by_name(cluster, "cloud")
    data = cnn_bytes("mobilenet_v2", seed=4)
    before = cloud.client().get("/status")["inference"]
    inputs = [image(300 + i) for i in range(24)]
    replies: list = [None] * len(inputs)

    def send(i: int) -> None:
        replies[i] = infer(cloud, "cnn", inputs[i], timeout=30)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None and r["route"] == "local" for r in replies)
    for x, reply in zip(inputs, replies):  # a batched run equals single runs to float32 rounding
        np.testing.assert_allclose(reply["outputs"]["logits"], reference(data, x)["logits"], atol=1e-4)
    after = cloud.client().get("/status")["inference"]
    assert after["batched_runs"] > before["batched_runs"]
    assert after["batching"]["mean_batch_size"] > 1


def test_the_leader_places_every_registered_model_on_the_live_nodes(cluster):
    """"The Raft leader writes placement (which nodes serve which model/partition) from capabilities"."""
    ids = {n.peer_id for n in cluster.nodes}

    def placed():
        doc = cluster.nodes[0].client().get("/placement")
        got = {p["model"]: {peer for part in p["partitions"] for peer in part["peers"]} for p in doc["placements"]}
        return got if {"cnn", "exit"} <= set(got) and all(v == ids for v in got.values()) else None

    got = wait_for(placed, 30, "the leader to place both models on all three nodes")
    assert got["cnn"] == ids


def test_placement_drops_a_dead_node_and_takes_it_back(cluster):
    """"placement changes when nodes join, leave or die"."""
    cloud = by_name(cluster, "cloud")
    others = [n for n in cluster.nodes if n is not cloud]

    def cnn_peers(node):
        doc = node.client().get("/placement", model="cnn", stale="1")
        return {peer for part in doc["partitions"] for peer in part["peers"]}

    wait_for(lambda: cloud.peer_id in cnn_peers(others[0]), 30, "cloud to be placed")
    os.kill(cloud.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: cloud.peer_id not in cnn_peers(others[0]), 60, "the leader to drop the stopped node")
    finally:
        os.kill(cloud.proc.pid, signal.SIGCONT)
    wait_for(lambda: cloud.peer_id in cnn_peers(others[0]), 60, "the leader to place it again")
