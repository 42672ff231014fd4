"""The dashboard in a real headless browser (Debian's chromium), on a real three-node mesh.

The page is rendered by chromium: its DOM must name every node by tier, the
Raft leader, the sensor values and where the last inference ran, and its
screenshot must show the mesh drawn (a green disc per live node on the dark
page). CI installs chromium (``.ci/run``); without it the test is skipped.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inference import build_demo_model, encode_tensors
from mesh.cluster import LocalCluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long]  # CI's second stage (a browser)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1280,800", "--virtual-time-budget=4000"]
ALIVE = (0x22, 0xC5, 0x5E)  # the page's colour of a live node
BACKGROUND = (0x0F, 0x17, 0x2A)


def browser(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, text=True, timeout=120)


def read_png(path: Path) -> np.ndarray:
    """Pixels (H, W, 3) of an 8-bit RGB or RGBA PNG, unfiltered (what chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = header[:4]
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format depth={depth} colour={colour}"
    channels = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        prev = out[y - 1] if y else np.zeros_like(line)
        if kind == 0:
            row = line
        elif kind == 2:
            row = (line + prev) % 256
        else:  # 1 (sub), 3 (average), 4 (Paeth) need the left neighbour: one pixel at a time
            row = np.zeros_like(line)
            for x in range(len(line)):
                left = row[x - channels] if x >= channels else 0
                up, corner = prev[x], (prev[x - channels] if x >= channels else 0)
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + up) // 2
                else:
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                row[x] = (line[x] + pred) % 256
        out[y] = row
    return out.reshape(height, width, channels)[:, :, :3]


def near(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    return int((np.abs(pixels - np.array(colour)).max(axis=2) <= tolerance).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs Debian's chromium)")
def test_the_dashboard_shows_the_mesh_live_in_a_real_browser(tmp_path):
    with LocalCluster(tmp_path / "mesh") as cluster:
        for name, tier in (("cam", "device"), ("hub", "edge"), ("big", "cloud")):
            cluster.init_node(name, tier=tier)
        cluster.start_all()
        cluster.wait_mesh()
        cluster.wait_leader()
        hub = cluster.nodes[1]
        hub.client().post("/state/put", {"key": "kitchen/temp", "value": 21.5})
        model = build_demo_model(tmp_path / "m.onnx", seed=1)
        hub.client().post("/models/add", {"name": "vision", "path": str(model)})
        image = np.zeros((1, 3, 32, 32), np.float32)
        hub.client().post_msgpack("/infer", {"model": "vision", "inputs": encode_tensors({"image": image})})
        wait_for(lambda: len(hub.client().get("/dashboard/data")["links"]) >= 2, 30, "the hub to see its links")
        data = hub.client().get("/dashboard/data")
        assert {n["name"]: n["tier"] for n in data["nodes"]} == {"cam": "device", "hub": "edge", "big": "cloud"}
        assert sum(n["leader"] for n in data["nodes"]) == 1 and data["faults"] == []
        assert data["inferences"][0]["model"] == "vision" and data["inferences"][0]["ran_on"] in ("hub", "cam", "big")

        # The same node's metrics count its sync traffic with each peer, by name.
        def synced_with_cam() -> bool:
            with urllib.request.urlopen(f"{hub.client().base}/metrics", timeout=10) as resp:
                text = resp.read().decode()
            return any(s.labels.get("peer") == "cam" and s.value > 0
                       for f in text_string_to_metric_families(text) if f.name == "meshnode_sensor_sync_peer_bytes_sent"
                       for s in f.samples)

        wait_for(synced_with_cam, 30, "the hub's metrics to count bytes synced to cam")

        url = f"{hub.client().base}/dashboard"
        dom = browser(url, tmp_path / "profile-dom", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        assert 'data-ready="1"' in html, html[-3000:]  # the script ran and drew a snapshot
        for name in ("cam", "hub", "big"):
            assert f'data-name="{name}"' in html
        assert html.count('data-state="alive"') == 3
        assert "★ leader" in html or "\\u2605 leader" in html
        assert "kitchen/temp" in html and "21.5" in html
        assert "<td>vision</td>" in html

        shot = tmp_path / "dashboard.png"
        png = browser(url, tmp_path / "profile-shot", f"--screenshot={shot}")
        assert png.returncode == 0 and shot.exists(), png.stderr[-2000:]
    pixels = read_png(shot)
    assert pixels.shape[:2] == (800, 1280)
    assert near(pixels, BACKGROUND) > 0.2 * pixels.shape[0] * pixels.shape[1]  # the page, not a blank or error page
    assert near(pixels, ALIVE) > 3 * 1000  # three live nodes drawn (a disc is ~1,500 px)
