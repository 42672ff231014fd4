"""Every acknowledged Raft write survives SIGKILL of all three voters at random moments (issue 4).

Real ``meshnode`` processes. Two writer threads set unique config keys through
the nodes' HTTP APIs; at a random moment every voter is killed with SIGKILL, in
random order; all are restarted. Every write that was acknowledged (HTTP 200)
must then read back, through the log, with its value, and no node's Raft term
may be lower than the highest term seen before the crash. A full-cluster
restart with SIGTERM keeps everything too.
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
ROUNDS = 3


def _writer(nodes, tag: str, stop: threading.Event, acked: dict, rng: random.Random) -> None:
    n = 0
    while not stop.is_set():
        key, node = f"{tag}-{n}", rng.choice(nodes)
        n += 1
        try:
            reply = node.client(timeout=5).post("/config/set", {"key": key, "value": n})
        except (MeshError, OSError):
            continue  # failed or unknown: not acknowledged, so not checked
        if reply.get("key") == key:
            acked[key] = n


def _terms(nodes) -> list[int]:
    return [node.client(timeout=5).get("/status")["raft"]["term"] for node in nodes]


def _check_all(cluster, acked: dict, rng: random.Random, seed_note: str) -> None:
    nodes = cluster.nodes
    for key, value in sorted(acked.items()):
        node = rng.choice(nodes)
        got = node.client(timeout=10).get("/config/get", key=key)
        assert got is not None and got.get("value") == value, f"{seed_note}: lost {key}={value}: {got}"


def test_acknowledged_writes_survive_sigkill_of_every_voter(tmp_path):
    rng = random.Random(SEED)
    with LocalCluster(tmp_path) as cluster:
        for name in ("n0", "n1", "n2"):
            cluster.init_node(name)
        cluster.start_all()
        cluster.wait_mesh()
        cluster.wait_leader()
        acked: dict[str, int] = {}
        for round_ in range(ROUNDS):
            note = f"seed {SEED} round {round_}"
            stop = threading.Event()
            writers = [threading.Thread(target=_writer, args=(cluster.nodes, f"r{round_}w{i}", stop, acked,
                                                               random.Random(rng.random())))
                       for i in range(2)]
            before = len(acked)
            for w in writers:
                w.start()
            try:
                time.sleep(rng.uniform(0.5, 2.0))  # the load runs for a random span, then the crash
                high = max(_terms(cluster.nodes))
                victims = list(cluster.nodes)
                rng.shuffle(victims)
                for node in victims:
                    os.kill(node.proc.pid, signal.SIGKILL)
            finally:
                stop.set()
                for w in writers:
                    w.join(30)
            for node in cluster.nodes:
                node.proc.wait(10)
                node.proc = None
            assert len(acked) > before, f"{note}: no write was acknowledged before the crash"
            cluster.start_all()
            cluster.wait_leader(timeout=60)
            assert min(_terms(cluster.nodes)) >= high, f"{note}: a term went backwards"
            _check_all(cluster, acked, rng, note)

        # A clean full-cluster restart keeps everything as well.
        cluster.stop_all()
        cluster.start_all()
        cluster.wait_leader(timeout=60)
        _check_all(cluster, acked, rng, f"seed {SEED} after a clean restart")
        assert len(acked) >= ROUNDS
