"""Raft writes/s through ``consensus.RaftLog`` vs raw pysyncobj with the same settings, same run.

Both are 3-voter clusters on 127.0.0.1 in this process, journals on disk, with
the settings ``RaftLog`` uses (no batching, 30 ms heartbeats, password). The
baseline replicates a bare ``set(key, value)`` on a dict; ours encodes a
versioned msgpack command, validates it and applies the pure state machine.
Writes go to the leader, one at a time (latency-bound) and from 8 threads.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

from pysyncobj import SyncObj, replicated

from consensus import ConfigSet, RaftLog
from consensus.raft import _settings

DURATION = 2.0
PASSWORD = "bench-password"


def _ports(n: int) -> list[str]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    addrs = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    for s in socks:
        s.close()
    return addrs


class _Raw(SyncObj):
    def __init__(self, addr: str, partners: list[str], conf) -> None:
        super().__init__(addr, partners, conf=conf)
        self._data: dict = {}

    @replicated
    def set(self, key: str, value) -> int:
        self._data[key] = value
        return len(self._data)


def _drive(write, threads: int) -> float:
    """Writes/s over DURATION seconds from ``threads`` threads."""
    counts = [0] * threads
    stop = time.monotonic() + DURATION

    def worker(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            write(f"k{i}-{n % 100}", n)
            n += 1
        counts[i] = n

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def _wait_leader(is_leader, nodes, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [n for n in nodes if is_leader(n)]
        if len(leaders) == 1:
            return leaders[0]
        time.sleep(0.05)
    raise RuntimeError("bench: no leader")


def raw_pysyncobj(root: Path) -> dict:
    """The baseline cluster."""
    addrs = _ports(3)
    nodes = []
    for i, addr in enumerate(addrs):
        d = root / f"raw{i}"
        d.mkdir()
        conf = _settings(PASSWORD, addr, d, None)
        nodes.append(_Raw(addr, [a for a in addrs if a != addr], conf))
    try:
        leader = _wait_leader(lambda n: n._isLeader(), nodes)
        write = lambda k, v: leader.set(k, v, sync=True, timeout=5)  # noqa: E731
        return {"name": "raw pysyncobj", "writes_per_s_1": round(_drive(write, 1), 1),
                "writes_per_s_8": round(_drive(write, 8), 1)}
    finally:
        for n in nodes:
            n.destroy()


def raft_log(root: Path) -> dict:
    """Our adapter."""
    addrs = _ports(3)
    logs = [RaftLog(addr, [a for a in addrs if a != addr], PASSWORD, root / f"ours{i}") for i, addr in enumerate(addrs)]
    try:
        leader = _wait_leader(lambda log: log.status().role == "leader", logs)
        write = lambda k, v: leader.submit(ConfigSet(key=k, value=v), 5)  # noqa: E731
        return {"name": "consensus.RaftLog", "writes_per_s_1": round(_drive(write, 1), 1),
                "writes_per_s_8": round(_drive(write, 8), 1)}
    finally:
        for log in logs:
            log.close()


def run() -> list[dict]:
    """Baseline, ours, and the ratios."""
    with tempfile.TemporaryDirectory(prefix="meshnode-bench-raft-") as tmp:
        root = Path(tmp)
        base = raw_pysyncobj(root)
        ours = raft_log(root)
    return [
        base,
        ours,
        {
            "name": "ratio ours/raw",
            "sequential": round(ours["writes_per_s_1"] / base["writes_per_s_1"], 3),
            "8_threads": round(ours["writes_per_s_8"] / base["writes_per_s_8"], 3),
        },
    ]
