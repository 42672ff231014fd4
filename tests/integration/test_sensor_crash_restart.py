"""Every acknowledged sensor-state write survives SIGKILL at a random moment (issue 5).

Rule: "every acknowledged write is in SQLite (WAL) first; a node killed with
SIGKILL at any moment comes back with every acknowledged write."

One real ``meshnode`` process. Two client threads write through its HTTP API:
one puts a new key each time, the other overwrites a few keys with a rising
counter. At a seeded random moment the node is killed with SIGKILL, then
restarted; every acknowledged write must read back — a new key with its value,
an overwritten key with its last acknowledged value or a later one (a write in
flight at the kill may have reached the disk without its answer reaching us).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from crdt.errors import MeshError
from mesh.cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20261124
ROUNDS = 4
HOT_KEYS = 5


def _new_keys(node, tag: str, stop: threading.Event, acked: dict) -> None:
    client = node.client(timeout=5)
    n = 0
    while not stop.is_set():
        key, value = f"{tag}/{n}", {"n": n, "tag": tag}
        n += 1
        try:
            reply = client.post("/state/put", {"key": key, "value": value})
        except (MeshError, OSError):
            return  # the node is gone: this write is unknown, not acknowledged
        if reply.get("key") == key and reply.get("value") == value:
            acked[key] = value


def _overwrites(node, stop: threading.Event, acked: dict, rng: random.Random) -> None:
    client = node.client(timeout=5)
    n = max(acked.values(), default=0)
    while not stop.is_set():
        key = f"hot/{rng.randrange(HOT_KEYS)}"
        n += 1
        try:
            reply = client.post("/state/put", {"key": key, "value": n})
        except (MeshError, OSError):
            return
        if reply.get("value") == n:
            acked[key] = n


def test_acknowledged_sensor_writes_survive_sigkill(tmp_path):
    rng = random.Random(SEED)
    with LocalCluster(tmp_path) as cluster:
        node = cluster.init_node("n0")
        cluster.start_all()
        new_keys: dict[str, dict] = {}
        hot: dict[str, int] = {}
        for round_ in range(ROUNDS):
            note = f"seed {SEED} round {round_}"
            stop = threading.Event()
            round_keys: dict[str, dict] = {}
            threads = [
                threading.Thread(target=_new_keys, args=(node, f"r{round_}", stop, round_keys)),
                threading.Thread(target=_overwrites, args=(node, stop, hot, random.Random(rng.random()))),
            ]
            for t in threads:
                t.start()
            try:
                time.sleep(rng.uniform(0.3, 1.5))  # load for a random span, then the crash mid-write
                os.kill(node.proc.pid, signal.SIGKILL)
                node.proc.wait(10)
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
            assert cluster.stop(node) == -signal.SIGKILL, f"{note}: the node was not killed by SIGKILL"
            assert round_keys, f"{note}: no write was acknowledged before the kill"
            new_keys.update(round_keys)
            cluster.start(node)
            cluster.wait_api(node)
            got = {e["key"]: e["value"] for e in node.client().get("/state/list")}
            lost = sorted(k for k, v in new_keys.items() if got.get(k) != v)
            assert not lost, f"{note}: {len(lost)} acknowledged writes lost or changed, e.g. {lost[:5]}"
            behind = {k: (v, got.get(k)) for k, v in hot.items() if not (isinstance(got.get(k), int) and got[k] >= v)}
            assert not behind, f"{note}: overwritten keys went back (acknowledged, read): {behind}"
            status = node.client().get("/status")
            assert status["store_notice"] == "" and status["sensors"]["broken"] == "", f"{note}: {status}"
        assert len(new_keys) >= ROUNDS and hot
