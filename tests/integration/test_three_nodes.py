"""Three real `meshnode` processes driven through the CLI (issue: walking skeleton, items 3–7).

One cluster for the whole module, because forming it costs seconds; the tests
run in file order and each leaves the cluster as it found it, except the last
ones, which take nodes down on purpose.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from mesh.cluster import LocalCluster, meshnode_cmd, wait_for
from mesh.config import NODE_FILE

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the meshnode CLI; returns the completed process."""
    return subprocess.run(meshnode_cmd(*args), capture_output=True, text=True, timeout=timeout)


def cli_json(*args: str):
    out = cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("mesh")
    c = LocalCluster(root)
    c.init_node("alpha", tier="cloud", capabilities=("cpu",), location="dc")
    c.init_node("beta", tier="edge", location="home")
    gamma = c.init_node("gamma", tier="device", capabilities=("camera",), location="kitchen")
    # gamma has no spare capacity: its inferences must go to a peer.
    path = gamma.data_dir / NODE_FILE
    path.write_text(path.read_text().replace("max_queue: 8", "max_queue: 0"))
    try:
        c.start_all()
        c.wait_mesh(timeout=60)
        c.wait_leader(timeout=60)
        yield c
    finally:
        c.stop_all()
        for node in c.nodes:
            if node.log_path and node.log_path.exists():
                print(f"--- {node.name} log tail ---")
                print("\n".join(node.log_path.read_text(errors="replace").splitlines()[-30:]))


def d(node) -> list[str]:
    return ["-d", str(node.data_dir)]


def test_peers_see_each_other_with_descriptors(cluster):
    by_name = {n.name: n for n in cluster.nodes}
    for node in cluster.nodes:
        peers = cli_json("peers", *d(node))
        names = {p["name"]: p for p in peers}
        assert set(names) == set(by_name) - {node.name}
        for name, p in names.items():
            assert p["peer_id"] == by_name[name].peer_id
            assert p["state"] == "alive"
        if node.name != "gamma":
            assert names["gamma"]["tier"] == "device"
    table = cli("peers", *d(cluster.nodes[0]))
    assert "gamma" in table.stdout and "device" in table.stdout


def test_status_reports_raft_view(cluster):
    docs = [cli_json("status", *d(n)) for n in cluster.nodes]
    leaders = {doc["raft"]["leader"] for doc in docs}
    assert len(leaders) == 1 and None not in leaders
    assert leaders <= {n.peer_id for n in cluster.nodes}
    roles = sorted(doc["raft"]["role"] for doc in docs)
    assert roles == ["follower", "follower", "leader"]
    for doc, node in zip(docs, cluster.nodes):
        assert doc["peer_id"] == node.peer_id and doc["name"] == node.name
        assert isinstance(doc["raft"]["term"], int) and doc["raft"]["term"] >= 1


def test_config_set_on_one_node_is_read_on_every_node(cluster):
    a, b, c = cluster.nodes
    out = cli("config", "set", "home.mode", "away", *d(c))
    assert out.returncode == 0, out.stderr
    for node in cluster.nodes:
        got = cli("config", "get", "home.mode", *d(node))
        assert got.returncode == 0, got.stderr
        assert got.stdout.strip() == "away"
    assert cli_json("config", "set", "limits", '{"fps": 5}', *d(b))["value"] == {"fps": 5}
    assert cli_json("config", "get", "limits", *d(a))["value"] == {"fps": 5}


def test_config_get_of_unknown_key_fails_clearly(cluster):
    out = cli("config", "get", "no.such.key", *d(cluster.nodes[0]))
    assert out.returncode == 1
    assert "not set" in out.stderr and "no.such.key" in out.stderr


def test_state_put_syncs_to_every_node(cluster):
    a, b, c = cluster.nodes
    assert cli("state", "put", "kitchen/temp", "21.5", *d(c)).returncode == 0
    assert cli("state", "put", "kitchen/label", "warm", *d(c)).returncode == 0
    assert cli("state", "put", "kitchen/obj", '{"a": [1, 2]}', *d(b)).returncode == 0
    for node in cluster.nodes:
        rows = wait_for(
            lambda node=node: (r := node.client().get("/state/list", prefix="kitchen/")) and len(r) == 3 and r,
            10, f"state on {node.name}",
        )
        values = {r["key"]: r["value"] for r in rows}
        assert values == {"kitchen/temp": 21.5, "kitchen/label": "warm", "kitchen/obj": {"a": [1, 2]}}
    got = cli_json("state", "get", "kitchen/temp", *d(a))
    assert got["value"] == 21.5 and got["writer"] == c.peer_id
    listing = cli("state", "list", "kitchen/", *d(a))
    assert "kitchen/label" in listing.stdout


def test_state_delete_removes_the_key_on_every_node(cluster):
    a, b, c = cluster.nodes
    assert cli("state", "put", "garage/door", "open", *d(a)).returncode == 0
    for node in cluster.nodes:
        wait_for(lambda node=node: node.client().get("/state/list", prefix="garage/"), 10, f"the put on {node.name}")
    deleted = cli("state", "delete", "garage/door", *d(b))
    assert deleted.returncode == 0 and "deleted garage/door" in deleted.stdout
    for node in cluster.nodes:
        wait_for(lambda node=node: node.client().get("/state/list", prefix="garage/") == [], 10,
                 f"the delete on {node.name}")
    missing = cli("state", "get", "garage/door", *d(c))
    assert missing.returncode != 0 and "not set" in (missing.stderr + missing.stdout)


def test_counter_increments_on_every_node_all_count(cluster):
    a, b, c = cluster.nodes
    for node, by in ((a, "3"), (b, "4"), (c, "-2"), (a, "1")):
        assert cli("state", "incr", "hall/visitors", by, *d(node)).returncode == 0
    for node in cluster.nodes:
        doc = wait_for(lambda node=node: (g := node.client().state_get("hall/visitors"))["value"] == 6 and g,
                       10, f"the counter on {node.name}")
        assert doc["type"] == "counter" and doc["writers"] == 3
    bad = cli("state", "incr", "hall/visitors", "0", *d(a))
    assert bad.returncode != 0 and "counter step must be a non-zero integer" in (bad.stderr + bad.stdout)


def test_model_add_copies_file_and_infer_offloads_with_identical_outputs(cluster, tmp_path):
    from inference import build_demo_model

    a, b, c = cluster.nodes
    model = build_demo_model(tmp_path / "m.onnx", seed=3)
    out = cli("model", "add", "classifier", str(model), *d(a))
    assert out.returncode == 0, out.stderr
    for node in cluster.nodes:
        wait_for(lambda node=node: "classifier" in node.client().get("/status")["models"], 30,
                 f"model on {node.name}")
        stored = list((node.data_dir / "models").glob("*.onnx"))
        assert [p.read_bytes() for p in stored] == [model.read_bytes()]
    wait_for(lambda: any("classifier" in p["models"] for p in c.client().get("/peers")), 10,
             "gamma to hear which peers serve the model")
    image = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "in.npz", image=image)
    results = {}
    for node in (a, c):
        out_file = tmp_path / f"out-{node.name}.npz"
        doc = cli_json("infer", "classifier", "--input", str(tmp_path / "in.npz"), "--output", str(out_file), *d(node))
        with np.load(out_file) as npz:
            results[node.name] = npz["probs"]
        if node is a:
            assert doc["ran_on"] == a.peer_id and not doc["offloaded"]
        else:
            assert doc["offloaded"] and doc["ran_on"] != c.peer_id
    assert results["alpha"].shape == (2, 10)
    assert np.array_equal(results["alpha"], results["gamma"])
    # The same request again is answered from alpha's result cache, with the same outputs.
    # Gamma's answer came from a peer: its repeat is answered from gamma's own cache, not sent out again.
    for node in (a, c):
        before = node.client().get("/status")["inference"]
        doc = cli_json("infer", "classifier", "--input", str(tmp_path / "in.npz"),
                       "--output", str(tmp_path / "again.npz"), *d(node))
        with np.load(tmp_path / "again.npz") as npz:
            assert np.array_equal(npz["probs"], results["alpha"])
        after = node.client().get("/status")["inference"]
        assert doc["route"] == "cache" and not doc["offloaded"], doc
        assert after["result_cache"]["hits"] == before["result_cache"]["hits"] + 1
        assert after["infer_offloaded"] == before["infer_offloaded"], node.name
    text = cli("infer", "classifier", "--input", str(tmp_path / "in.npz"), *d(b))
    assert "ran on beta" in text.stdout


@pytest.mark.parametrize(
    "arrays, needle",
    [
        ({"image": np.zeros((1, 3, 16, 16), np.float32)}, "shape"),
        ({"image": np.zeros((1, 3, 32, 32), np.float64)}, "dtype"),
        ({"picture": np.zeros((1, 3, 32, 32), np.float32)}, "image"),
    ],
)
def test_infer_with_bad_input_fails_clearly_and_node_survives(cluster, tmp_path, arrays, needle):
    a = cluster.nodes[0]
    np.savez(tmp_path / "bad.npz", **arrays)
    out = cli("infer", "classifier", "--input", str(tmp_path / "bad.npz"), *d(a))
    assert out.returncode == 1
    assert out.stderr.startswith("error: ") and needle in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert cli("status", *d(a)).returncode == 0


def test_wrong_mesh_key_is_refused(cluster, tmp_path):
    first = cluster.nodes[0]
    stranger = LocalCluster(tmp_path)
    s = stranger.init_node("stranger")
    path = s.data_dir / NODE_FILE
    path.write_text(path.read_text().replace("join: []", f"join:\n- {first.join_addr}"))
    try:
        stranger.start(s)
        stranger.wait_api(s)
        wait_for(lambda: "join:" in s.log_path.read_text(), 20, "the stranger's failed join")
        assert all(p["name"] != "stranger" for p in first.client().get("/peers"))
        assert s.client().get("/peers") == []
        assert "mesh key" in s.log_path.read_text()
        # The refusing side says why, too.
        wait_for(lambda: "refused a connection" in first.log_path.read_text(), 10, "alpha's refusal in its log")
    finally:
        stranger.stop_all()


def test_follower_restart_keeps_its_data(cluster):
    leader = cluster.wait_leader()
    follower = next(n for n in cluster.nodes if n.peer_id != leader)
    assert cli("state", "put", "restart/marker", "kept", *d(follower)).returncode == 0
    assert cluster.stop(follower) == 0
    # A graceful stop is known everywhere at once, not after a timeout.
    for node in cluster.nodes:
        if node is not follower:
            states = {p["peer_id"]: p["state"] for p in node.client().get("/peers")}
            assert states[follower.peer_id] == "left"
    assert cli("config", "set", "while.down", "1", *d(cluster.nodes[0] if cluster.nodes[0] is not follower else cluster.nodes[1])).returncode == 0
    cluster.start(follower)
    cluster.wait_api(follower)
    assert cli_json("state", "get", "restart/marker", *d(follower))["value"] == "kept"
    # A gracefully stopped voter handed its seat over: back, it forwards until it meets a voter
    # (and the leader gives it a free seat again), so its first reads may need a moment.
    assert wait_for(lambda: cli("config", "get", "home.mode", *d(follower)).returncode == 0, 20,
                    "the restarted node to reach a voter")
    assert cli_json("config", "get", "home.mode", *d(follower))["value"] == "away"
    assert wait_for(lambda: cli("config", "get", "while.down", *d(follower)).stdout.strip() == "1", 20,
                    "the write made while the follower was down")
    cluster.wait_mesh()
    # Sensor sync resumes both ways with the restarted node.
    other = next(n for n in cluster.nodes if n is not follower)
    assert cli("state", "put", "after/restart", "from-other", *d(other)).returncode == 0
    assert cli("state", "put", "after/restart2", "from-follower", *d(follower)).returncode == 0
    wait_for(lambda: follower.client().get("/state/get", key="after/restart")["value"] == "from-other", 10,
             "a new write to reach the restarted follower")
    wait_for(lambda: other.client().get("/state/get", key="after/restart2")["value"] == "from-follower", 10,
             "the restarted follower's write to reach a peer")
    # A restart brings a new process instance; it must never be mistaken for a copied identity.
    assert all("duplicate identity" not in n.log_path.read_text() for n in cluster.nodes)


def test_client_without_running_node_fails_clearly(tmp_path):
    out = cli("status", "-d", str(tmp_path / "nothing"))
    assert out.returncode == 1 and "meshnode init" in out.stderr


def test_malformed_node_yaml_fails_clearly(tmp_path):
    c = LocalCluster(tmp_path)
    node = c.init_node("broken")
    (node.data_dir / NODE_FILE).write_text("name: broken\ntier: spaceship\n")
    out = cli("run", str(node.data_dir), timeout=30)
    assert out.returncode == 1
    assert "tier" in out.stderr and "device" in out.stderr
    (node.data_dir / NODE_FILE).write_text("name: [unclosed\n")
    out = cli("run", str(node.data_dir), timeout=30)
    assert out.returncode == 1 and "not valid YAML" in out.stderr


def test_unknown_flag_value_is_refused(tmp_path):
    out = cli("init", str(tmp_path / "x"), "--tier", "spaceship")
    assert out.returncode == 2 and "spaceship" in out.stderr
    assert not (tmp_path / "x").exists()


def test_without_majority_config_set_fails_within_seconds(cluster):
    survivor = cluster.nodes[0]
    for node in cluster.nodes[1:]:
        cluster.stop(node, signal.SIGKILL)
    started = time.monotonic()
    out = cli("config", "set", "lonely", "1", *d(survivor), timeout=30)
    elapsed = time.monotonic() - started
    assert out.returncode == 1
    assert "consensus" in out.stderr and "majority" in out.stderr
    assert elapsed < 10
    # Stale data is still readable locally, and the node is still up.
    assert cli("state", "get", "kitchen/temp", *d(survivor)).stdout.strip() == "21.5"


def test_sigterm_shuts_down_cleanly(cluster):
    survivor = cluster.nodes[0]
    proc = survivor.proc
    assert cluster.stop(survivor, signal.SIGTERM) == 0
    assert not (survivor.data_dir / "api.addr").exists()
    assert proc.returncode == 0
