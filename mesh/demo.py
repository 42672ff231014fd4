"""``meshnode demo``: a local mesh doing real work, start to finish.

A small smart-home: a "cloud" node, an "edge" hub and a "device" camera (more
devices with ``--nodes``), each a real ``meshnode`` process in a temp dir. It
shows them finding each other, electing a Raft leader, agreeing on a setting,
syncing sensor readings through CRDTs, and serving a bundled image classifier
(generated at a fixed seed; no download) — the camera has no spare capacity, so
its requests run on a stronger peer and the answers are the same bit for bit.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import yaml

from crdt.errors import MeshError

from .cluster import LocalCluster, wait_for
from .config import NODE_FILE


def _step(text: str) -> float:
    click.echo(click.style("▸ ", fg="cyan") + text)
    return time.monotonic()


def _done(started: float, detail: str = "") -> None:
    click.echo(f"  done in {time.monotonic() - started:.2f} s" + (f" — {detail}" if detail else ""))


def _set_max_queue(data_dir: Path, value: int) -> None:
    path = data_dir / NODE_FILE
    doc = yaml.safe_load(path.read_text())
    doc.setdefault("inference", {})["max_queue"] = value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def run_demo(n_nodes: int = 3, *, keep: bool = False) -> int:
    """Run the demo; returns the process exit code."""
    from inference import build_demo_model

    root = Path(tempfile.mkdtemp(prefix="meshnode-demo-"))
    cluster = LocalCluster(root)
    summary: list[tuple[str, str]] = []
    try:
        t = _step(f"creating {n_nodes} nodes in {root}")
        cluster.init_node("cloud", tier="cloud", capabilities=("cpu",), location="datacenter")
        cluster.init_node("hub", tier="edge", capabilities=("cpu", "storage"), location="home")
        camera = cluster.init_node("camera", tier="device", capabilities=("camera",), location="kitchen")
        _set_max_queue(camera.data_dir, 0)  # a weak device: always hand inference to a peer
        for i in range(3, n_nodes):
            cluster.init_node(f"sensor-{i - 2}", tier="device", capabilities=("thermometer",), location="home")
        _done(t, "same mesh key, each with its own ed25519 identity")

        t = _step("starting the nodes (real processes, libp2p with Noise + Yamux + PSK)")
        cluster.start_all()
        cluster.wait_mesh()
        _done(t, "every node sees every other")
        summary.append(("mesh formed", f"{time.monotonic() - t:.2f} s"))
        for node in cluster.nodes:
            peers = node.client().get("/peers")
            click.echo(f"  {node.name:<10} sees " + ", ".join(f"{p['name']}({p['tier']})" for p in peers))

        t = _step("electing a Raft leader")
        leader = cluster.wait_leader()
        name = next((n.name for n in cluster.nodes if n.peer_id == leader), leader)
        _done(t, f"leader is {name}")
        summary.append(("raft leader", name))

        t = _step("agreeing on a setting through Raft (set on the camera, read on the cloud)")
        cluster.nodes[2].client().post("/config/set", {"key": "home.mode", "value": "away"})
        got = cluster.nodes[0].client().get("/config/get", key="home.mode")
        _done(t, f"home.mode = {got['value']!r} at revision {got['revision']}")
        summary.append(("raft write+read", f"{time.monotonic() - t:.2f} s"))

        t = _step("sensor readings written on the devices, synced by delta CRDTs")
        readings = {"kitchen/temperature": 21.5, "kitchen/motion": False, "hall/door": "closed"}
        for i, (key, value) in enumerate(readings.items()):
            cluster.nodes[2 + i % max(1, n_nodes - 2)].client().post("/state/put", {"key": key, "value": value})
        for node in cluster.nodes:
            wait_for(lambda node=node: len(node.client().get("/state/list")) >= len(readings), 20,
                     f"readings on {node.name}")
        _done(t, f"{len(readings)} readings on all {n_nodes} nodes")
        summary.append(("sensor sync", f"{time.monotonic() - t:.2f} s"))

        t = _step("registering a bundled image classifier and copying it to every node")
        model_path = build_demo_model(root / "classifier.onnx", seed=0)
        cluster.nodes[0].client().post("/models/add", {"name": "classifier", "path": str(model_path)})
        for node in cluster.nodes:
            wait_for(lambda node=node: "classifier" in node.client().get("/status")["models"], 30,
                     f"the model on {node.name}")
        wait_for(lambda: any("classifier" in p["models"] for p in camera.client().get("/peers")), 10,
                 "the camera to hear which peers serve the model")
        _done(t, f"{model_path.stat().st_size} bytes, loaded by onnxruntime on every node")

        t = _step("serving inferences (the camera has no spare capacity and offloads)")
        from inference import decode_tensors, encode_tensors

        image = np.random.default_rng(7).standard_normal((1, 3, 32, 32)).astype(np.float32)
        answers = {}
        for node in cluster.nodes:
            reply = node.client().post_msgpack("/infer", {"model": "classifier", "inputs": encode_tensors({"image": image})})
            probs = decode_tensors(reply["outputs"])["probs"]
            answers[node.name] = probs
            where = "offloaded to " + reply["ran_on_name"] if reply["offloaded"] else "ran locally"
            click.echo(f"  asked {node.name:<10} → {where:<22} class {int(probs.argmax())} "
                       f"p={float(probs.max()):.3f} ({reply['elapsed_ms']:.2f} ms compute)")
        same = all(np.array_equal(a, answers["cloud"]) for a in answers.values())
        _done(t, "identical outputs everywhere" if same else "OUTPUTS DIFFER")
        summary.append(("inference", "identical on every node" if same else "MISMATCH"))

        click.echo()
        click.echo(click.style("summary", bold=True))
        for key, value in summary:
            click.echo(f"  {key:<18} {value}")
        return 0 if same else 1
    except MeshError as exc:
        click.echo(f"error: {exc}", err=True)
        for node in cluster.nodes:
            if node.log_path and node.log_path.exists():
                tail = node.log_path.read_text(errors="replace").splitlines()[-5:]
                click.echo(f"--- {node.name} log tail ---\n" + "\n".join(tail), err=True)
        return 1
    finally:
        t = _step("stopping the nodes")
        cluster.stop_all()
        if keep:
            click.echo(f"  kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
