"""Raft writes/s through ``consensus.RaftLog`` vs raw pysyncobj with the same settings, same run.

All are 3-voter clusters on 127.0.0.1 in this process, journals on disk, with
the settings ``RaftLog`` uses (no batching, 30 ms heartbeats, password):

* **raw pysyncobj**: a bare replicated ``set(key, value)`` on a dict, with
  pysyncobj's own journal (mmap, never fsynced: not durable);
* **raw pysyncobj, durable**: the same, with our ``DurableJournal`` and the
  transport that fsyncs before sending, i.e. what durability costs by itself;
* **RaftLog**: ours: versioned msgpack commands, validation, the pure state
  machine, durable.

Writes go to the leader, one at a time (latency-bound, with p50/p99) and from
8 threads (pipelined).
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from pysyncobj import SyncObj, replicated

from consensus import ConfigSet, RaftLog
from consensus.raft import _DurableTransport, _settings

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
    def __init__(self, addr: str, partners: list[str], conf, transport=None) -> None:
        if transport is None:
            super().__init__(addr, partners, conf=conf)
        else:
            super().__init__(addr, partners, conf=conf, transportClass=transport)
        self._data: dict = {}

    @replicated
    def set(self, key: str, value) -> int:
        self._data[key] = value
        return len(self._data)


def _drive(write, threads: int) -> tuple[float, list[float]]:
    """(writes/s, per-write seconds) over DURATION seconds from ``threads`` threads."""
    counts = [0] * threads
    latencies: list[float] = []
    stop = time.monotonic() + DURATION

    def worker(i: int) -> None:
        n = 0
        mine = []
        while time.monotonic() < stop:
            t = time.perf_counter()
            write(f"k{i}-{n % 100}", n)
            mine.append(time.perf_counter() - t)
            n += 1
        counts[i] = n
        latencies.extend(mine)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.monotonic() - started), latencies


def _figures(name: str, write) -> dict:
    one, latencies = _drive(write, 1)
    eight, _ = _drive(write, 8)
    latencies.sort()
    return {"name": name, "writes_per_s_1": round(one, 1), "writes_per_s_8": round(eight, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 3),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3)}


def _wait_leader(is_leader, nodes, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [n for n in nodes if is_leader(n)]
        if len(leaders) == 1:
            return leaders[0]
        time.sleep(0.05)
    raise RuntimeError("bench: no leader")


def raw_pysyncobj(root: Path, durable: bool = False) -> dict:
    """The baseline cluster: pysyncobj's own journal, or made durable as RaftLog is."""
    addrs = _ports(3)
    nodes = []
    tag = "durable" if durable else "raw"
    for i, addr in enumerate(addrs):
        d = root / f"{tag}{i}"
        d.mkdir()
        conf = _settings(PASSWORD, addr, d, None)  # its journal file name selects DurableJournal
        if not durable:
            conf.journalFile = str(d / "pysyncobj.journal")  # pysyncobj's own journal (mmap, never fsynced)
        nodes.append(_Raw(addr, [a for a in addrs if a != addr], conf, _DurableTransport if durable else None))
    try:
        leader = _wait_leader(lambda n: n._isLeader(), nodes)
        write = lambda k, v: leader.set(k, v, sync=True, timeout=5)
        return _figures("raw pysyncobj, durable" if durable else "raw pysyncobj", write)
    finally:
        for n in nodes:
            n.destroy_synchronous()


def raft_log(root: Path) -> dict:
    """Our adapter."""
    addrs = _ports(3)
    logs = [RaftLog(addr, [a for a in addrs if a != addr], PASSWORD, root / f"ours{i}") for i, addr in enumerate(addrs)]
    try:
        leader = _wait_leader(lambda log: log.status().role == "leader", logs)
        write = lambda k, v: leader.submit(ConfigSet(key=k, value=v), 5)
        return _figures("consensus.RaftLog (durable)", write)
    finally:
        for log in logs:
            log.close()


def lone_voter(root: Path) -> dict:
    """A mesh's first node, alone in its cluster: one-at-a-time writes (no peer answer wakes its tick)."""
    log = RaftLog(_ports(1)[0], [], PASSWORD, root / "lone")
    try:
        _wait_leader(lambda lg: lg.status().role == "leader", [log])
        rate, latencies = _drive(lambda k, v: log.submit(ConfigSet(key=k, value=v), 5), 1)
        return {"name": "consensus.RaftLog, lone voter", "writes_per_s_1": round(rate, 1),
                "p50_ms": round(statistics.median(latencies) * 1000, 3)}
    finally:
        log.close()


def run() -> list[dict]:
    """Baselines, ours, and the ratios."""
    with tempfile.TemporaryDirectory(prefix="meshnode-bench-raft-") as tmp:
        root = Path(tmp)
        base = raw_pysyncobj(root)
        durable = raw_pysyncobj(root, durable=True)
        ours = raft_log(root)
        lone = lone_voter(root)
    return [
        base,
        durable,
        ours,
        lone,
        {
            "name": "ratio ours/raw durable",
            "sequential": round(ours["writes_per_s_1"] / durable["writes_per_s_1"], 3),
            "8_threads": round(ours["writes_per_s_8"] / durable["writes_per_s_8"], 3),
        },
        {
            "name": "ratio ours/raw (not durable)",
            "sequential": round(ours["writes_per_s_1"] / base["writes_per_s_1"], 3),
            "8_threads": round(ours["writes_per_s_8"] / base["writes_per_s_8"], 3),
        },
    ]
