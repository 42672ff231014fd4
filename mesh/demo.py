"""``meshnode demo``: a local mesh doing real work, start to finish.

A small smart-home: a "cloud" node, an "edge" hub and a "device" camera (more
devices with ``--nodes``), each a real ``meshnode`` process in a temp dir. It
shows them finding each other, electing a Raft leader, agreeing on a setting,
syncing sensor readings through CRDTs, and serving models: a bundled image
classifier (generated at a fixed seed) that the camera, with no spare capacity,
hands to a stronger peer (the answers are the same bit for bit); the PP-OCR
text-direction classifier with an early-exit head, whose first part runs on
the camera and answers there when confident, else goes up a tier; and Silero
VAD, a recurrent voice detector. Then the camera loses power (SIGKILL) while
the others write, and comes back with nothing lost. Every model ships with
meshnode; nothing is downloaded.
"""

from __future__ import annotations

import shutil
import signal
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
        click.echo(f"  live dashboard while the demo runs: {cluster.nodes[1].client().base}/dashboard")
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

        t = _step("registering models: a bundled image classifier and two pretrained ones that ship with meshnode")
        from inference.catalog import shipped_model
        from inference.early_exit import early_exit_bytes

        model_path = build_demo_model(root / "classifier.onnx", seed=0)
        (root / "label.onnx").write_bytes(early_exit_bytes())  # PP-OCR text direction + an early-exit head
        shutil.copyfile(shipped_model("silero-vad").path(), root / "vad.onnx")
        models = {"classifier": model_path, "label-orientation": root / "label.onnx", "voice-activity": root / "vad.onnx"}
        for name, path in models.items():
            cluster.nodes[0].client(timeout=120).post("/models/add", {"name": name, "path": str(path)})
        for node in cluster.nodes:
            wait_for(lambda node=node: set(models) <= set(node.client().get("/status")["models"]), 60,
                     f"the models on {node.name}")
        for node in cluster.nodes:  # each node cuts the models and measures the parts on its own hardware
            wait_for(lambda node=node: "label-orientation" in node.client().get("/status")["inference"]["partitions"],
                     60, f"{node.name} to cut the models into partitions")
        wait_for(lambda: any("classifier" in p["models"] for p in camera.client().get("/peers")), 10,
                 "the camera to hear which peers serve the model")
        cut_at = time.monotonic()

        def heard_since_cut() -> bool:  # an advert sent after every node cut the models carries the figures
            peers = camera.client().get("/peers")
            return len(peers) == n_nodes - 1 and all(
                p["load_age_s"] is not None and p["load_age_s"] < time.monotonic() - cut_at for p in peers)

        wait_for(heard_since_cut, 10, "the camera to hear its peers' partition figures")
        _done(t, "PP-OCR text direction (Apache-2.0) with an exit head, Silero VAD (MIT); loaded on every node")

        from inference import decode_tensors, encode_tensors

        def infer(node, model, inputs, **extra):
            body = {"model": model, "inputs": encode_tensors(inputs), **extra}
            reply = node.client(timeout=60).post_msgpack("/infer", body)
            return reply, decode_tensors(reply["outputs"])

        t = _step("vision: the camera has no spare capacity, so its requests run on a stronger peer")
        image = np.random.default_rng(7).standard_normal((1, 3, 32, 32)).astype(np.float32)
        answers = {}
        for node in cluster.nodes:
            reply, out = infer(node, "classifier", {"image": image})
            answers[node.name] = out["probs"]
            where = "offloaded to " + reply["ran_on_name"] if reply["offloaded"] else "ran locally"
            click.echo(f"  asked {node.name:<10} → {where:<22} class {int(out['probs'].argmax())} "
                       f"p={float(out['probs'].max()):.3f} ({reply['elapsed_ms']:.1f} ms)")
        same = all(np.array_equal(a, answers["cloud"]) for a in answers.values())
        _done(t, "identical outputs everywhere" if same else "OUTPUTS DIFFER")
        summary.append(("vision", "identical on every node" if same else "MISMATCH"))

        t = _step("OCR: is the parcel label upright? The camera runs the model's first part and its exit head")
        label = np.random.default_rng(8).uniform(-1, 1, (1, 3, 48, 192)).astype(np.float32)
        final = "save_infer_model/scale_0.tmp_1"
        routes, diff = [], float("inf")
        for threshold in (0.0, 1.0):
            reply, out = infer(camera, "label-orientation", {"x": label}, exit_threshold=threshold)
            routes.append(reply["route"])
            click.echo(f"  exit threshold {threshold:.1f} → {reply['route']:<10} on {reply['ran_on_name']:<6} "
                       f"upright p={float(out['exit_probs'][0, 0]):.3f} (head)"
                       + (f", {float(out[final][0, 0]):.3f} (full model)" if final in out else "")
                       + f" ({reply['elapsed_ms']:.1f} ms)")
            if final in out:
                whole = infer(cluster.nodes[0], "label-orientation", {"x": label}, exit_threshold=1.0)[1][final]
                diff = float(np.abs(whole - out[final]).max())
        split_ok = routes[0] == "early_exit" and routes[1] in ("split", "remote") and diff < 1e-4
        _done(t, f"confident head answers on the device; otherwise the features go up a tier "
                 f"(same answer as the cloud's whole run, max difference {diff:.1e})")
        summary.append(("ocr early exit", " then ".join(routes) + ("" if split_ok else " (UNEXPECTED)")))

        t = _step("voice: is anyone speaking at the door? (Silero VAD on the hub's microphone, 32 ms chunks)")
        seconds = np.arange(16 * 512, dtype=np.float32) / 16000  # half a second at 16 kHz
        hum = 0.3 * sum(np.sin(2 * np.pi * f * seconds) / k for k, f in enumerate((50, 100, 150), start=1))
        for what, sound in (("silence", np.zeros_like(seconds)), ("a fridge's hum", hum.astype(np.float32))):
            state, top = np.zeros((2, 1, 128), np.float32), 0.0
            for i in range(0, len(sound), 512):  # a stream: the recurrent state goes out and comes back
                reply, out = infer(cluster.nodes[1], "voice-activity", {
                    "input": sound[None, i:i + 512], "state": state, "sr": np.array(16000, dtype=np.int64)})
                state, top = out["stateN"], max(top, float(out["output"][0, 0]))
            click.echo(f"  {what:<15} → highest speech probability {top:.3f} over {len(sound) // 512} chunks "
                       f"({reply['route']} on {reply['ran_on_name']})")
        _done(t, "nobody speaking; a recurrent model served whole, its state carried from chunk to chunk")

        t = _step("power cut on the camera (SIGKILL); the hub and the cloud go on writing")
        before = camera.client().post("/state/put", {"key": "kitchen/camera-frames", "value": 41})
        cluster.stop(camera, signal.SIGKILL)
        cluster.nodes[1].client().post("/state/put", {"key": "hall/door", "value": "open"})
        cluster.nodes[0].client().post("/config/set", {"key": "home.mode", "value": "home"})
        cluster.start(camera)
        cluster.wait_api(camera)
        wait_for(lambda: camera.client().get("/state/get", key="hall/door")["value"] == "open", 30,
                 "the camera to catch up after the power cut")
        kept = camera.client().get("/state/get", key="kitchen/camera-frames")["value"] == before["value"]
        mode = camera.client().get("/config/get", key="home.mode")["value"]
        nothing_lost = kept and mode == "home"
        _done(t, "it came back with what it missed and kept what it had acknowledged"
              if nothing_lost else "SOMETHING WAS LOST")
        summary.append(("power cut", "nothing lost" if nothing_lost else "LOST DATA"))
        same = same and split_ok and nothing_lost

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
