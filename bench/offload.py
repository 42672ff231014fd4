"""Skewed load on real ``meshnode`` processes: every request arrives at the weakest of unequal nodes.

The issue's check: with all requests sent to the weakest of three nodes, the
cluster's throughput should reach at least 0.85x the sum of the nodes'
standalone throughputs, with p99 latency bounded, compared with offload off.

Set-up. Three nodes on 127.0.0.1, each in its own cgroup-v1 CPU quota
(``quotas`` cores, e.g. 0.25 / 0.5 / 0.9) and pinned to one CPU, so each
node's onnxruntime uses one intra-op thread that fits its quota
(``cpu_cores()`` follows the affinity mask). The quota covers the whole node
process: HTTP, msgpack, libp2p and Raft count against it, as on a real small
machine. Where cgroups are not writable the nodes are only pinned, weaker ones
sharing a CPU, and the rows say so. The model is the generated ResNet-18-shaped
CNN (``inference/cnn.py``) at twice the width, 96x96: ~16 ms per run on one
core for a 108 KB input — a model worth sending away (at 160x160 and width 1,
~9 ms for 300 KB, the weakest node spends about as much CPU passing a request
on as the model costs, and no placement can beat that); the result cache is
off (``inference.result_cache_mb = 0``) so every request runs.

Load. A closed loop of ``concurrency`` client threads per standalone node (and
``concurrency`` times the node count at the weakest in the cluster phases, the
load of all standalone phases together), each with a keep-alive
HTTP connection to one node's ``/infer``, sending the next request as soon as
the last one answers, for ``seconds`` after a ``warmup``. Every reply's
``ran_on_name`` is counted; failures are counted, never retried or hidden.

Phases, in one run:

1. offload off (``inference.offload = off``; in trees without that field,
   ``inference.max_queue`` far above the load, so the local queue never fills):
   each node alone, then all load at the weakest;
2. nodes restarted with the default inference settings, offload on: all load
   at the weakest.

Figures: each standalone req/s and their sum, cluster req/s on and off, the
ratio cluster/sum (target >= 0.85), p50/p99 latency, and where requests ran
(per-node ``infer_*`` counter deltas from ``/status``: local, offloaded,
served for peers, and split where the node has it). A node's CPU use below its
quota under full load shows something else on the machine held it back.

``python -m bench offload`` (``--duration S`` sets each measured phase).
"""

from __future__ import annotations

import http.client
import math
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from crdt.errors import MeshError
from inference import encode_tensors
from inference.cnn import INPUT_NAME, cnn_bytes
from mesh.cluster import LocalCluster, LocalNode, wait_for
from mesh.config import API_ADDR_FILE, NODE_FILE, InferenceSettings
from mesh.wire import pack, unpack

QUOTAS = (0.25, 0.5, 0.9)  # cores per node; the sum stays well under 2 so the load generator has CPU
# Also run with a less weak entry node: at ~2 ms of CPU per request passed on (HTTP in, mesh RPC out,
# reply back), a 0.25-core node spends most of its quota passing ~80 req/s on and has little left.
QUOTA_SETS = (QUOTAS, (0.4, 0.6, 0.9))
SECONDS = 12.0
WARMUP = 3.0
CONCURRENCY = 8
TARGET_RATIO = 0.85
MODEL_NAME = "bench-cnn"
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
CFS_PERIOD_US = 100_000
OFFLOAD_OFF_MAX_QUEUE = 10_000  # config's ceiling: far above any closed-loop concurrency used here
OFFLOAD_KNOBS = ("offload", "max_queue")  # the inference settings this bench sets; absent = the default
INPUT_POOL = 16


# -- pure helpers ----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``; NaN when empty."""
    if not 0 < q <= 100:
        raise MeshError(f"bench: percentile must be in (0, 100], got {q!r}")
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def cfs_quota_us(cores: float, *, period_us: int = CFS_PERIOD_US, available: int | None = None) -> int:
    """``cpu.cfs_quota_us`` giving ``cores`` CPUs per ``period_us``; refuses a quota the machine cannot give."""
    available = available if available is not None else (os.cpu_count() or 1)
    if isinstance(cores, bool) or not isinstance(cores, (int, float)) or not math.isfinite(cores):
        raise MeshError(f"bench: CPU quota must be a finite number of cores, got {cores!r}")
    if not 0 < cores <= available:
        raise MeshError(f"bench: CPU quota must be in (0, {available}] cores on this machine, got {cores!r}")
    quota = round(cores * period_us)
    if quota < 1000:  # the kernel's floor for cfs_quota_us is 1 ms
        raise MeshError(f"bench: CPU quota {cores!r} cores is under the kernel's 1 ms per {period_us} us period")
    return quota


def assign_cpus(quotas: tuple[float, ...], cpus: int) -> list[int]:
    """A CPU for each node: largest quota first, each onto the CPU with the least quota so far."""
    if cpus < 1:
        raise MeshError(f"bench: need at least one CPU to pin nodes to, got {cpus}")
    load = [0.0] * cpus
    chosen = [0] * len(quotas)
    for i in sorted(range(len(quotas)), key=lambda i: (-quotas[i], i)):
        cpu = min(range(cpus), key=lambda c: (load[c], c))
        chosen[i] = cpu
        load[cpu] += quotas[i]
    return chosen


def offload_off_settings(inference_fields: set[str] | frozenset[str]) -> dict:
    """The ``inference`` settings that keep a node's own requests at home, for the config fields this tree has.

    With an ``offload`` field, ``off`` says so. Before it existed, a node offloaded only once its
    local queue reached ``max_queue``, so a bound far above the load turned offload off.
    """
    if "offload" in inference_fields:
        return {"offload": "off"}
    if "max_queue" in inference_fields:
        return {"max_queue": OFFLOAD_OFF_MAX_QUEUE}
    raise MeshError("bench: the inference config has neither `offload` nor `max_queue`; "
                    "update bench/offload.py to turn offload off")


@dataclass
class LoadResult:
    """What one closed-loop phase measured."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    ran_on: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    client_cpu_s: float = 0.0  # CPU seconds the load generator itself used: near ``seconds`` means it was the limit

    @property
    def ok(self) -> int:
        """Requests answered with outputs."""
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        """Answered requests per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict:
        """Rounded figures for a bench row."""
        return {
            "req_s": round(self.rate, 1), "ok": self.ok, "errors": sum(self.errors.values()),
            "p50_ms": round(percentile(self.latencies_ms, 50), 1) if self.ok else None,
            "p99_ms": round(percentile(self.latencies_ms, 99), 1) if self.ok else None,
            "ran_on": dict(sorted(self.ran_on.items())),
            "client_cpu": round(self.client_cpu_s / self.seconds, 2) if self.seconds > 0 else None,
            **({"first_errors": sorted(self.errors)[:3]} if self.errors else {}),
        }


# -- cgroups and pinning ---------------------------------------------------------------


def stat_cpu_seconds(stat: str, ticks_per_s: int) -> float:
    """User + system CPU seconds from a ``/proc/PID/stat`` line (fields 14 and 15, counted after the name)."""
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 13:
        raise MeshError(f"bench: not a /proc/PID/stat line: {stat[:80]!r}")
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


class CpuQuota:
    """A cgroup-v1 CPU group limited to ``cores`` CPUs; the directory is removed on close."""

    def __init__(self, name: str, cores: float, *, root: Path = CGROUP_CPU) -> None:
        self.quota_us = cfs_quota_us(cores)  # validated before touching the filesystem
        self.path = Path(root) / name
        self.path.mkdir()
        try:
            (self.path / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        except OSError:
            self.path.rmdir()
            raise

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the group."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        """Remove the group; its processes must have exited (bounded wait for the kernel to notice)."""
        if not self.path.exists():
            return
        wait_for(lambda: not (self.path / "cgroup.procs").read_text().strip(), 10, f"{self.path} to empty")
        self.path.rmdir()


def cgroups_writable(root: Path = CGROUP_CPU) -> bool:
    """Whether we may create CPU cgroups under ``root``."""
    return (root / "cpu.cfs_quota_us").exists() and os.access(root, os.W_OK)


def pin(pid: int, cpu: int) -> None:
    """Pin every thread of process ``pid`` to ``cpu``; threads it starts later inherit the mask."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), {cpu})
        except ProcessLookupError:
            continue


# -- load generator --------------------------------------------------------------------


def request_bodies(size: int, count: int, seed: int) -> list[bytes]:
    """``count`` packed ``/infer`` bodies with distinct seeded random images."""
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(count):
        image = rng.random((1, 3, size, size), dtype=np.float32)
        bodies.append(pack({"model": MODEL_NAME, "inputs": encode_tensors({INPUT_NAME: image}), "timeout": 30.0}))
    return bodies


def _api_addr(node: LocalNode) -> tuple[str, int]:
    host, port = (node.data_dir / API_ADDR_FILE).read_text().strip().rsplit(":", 1)
    return host, int(port)


def drive(node: LocalNode, bodies: list[bytes], *, seconds: float, concurrency: int) -> LoadResult:
    """Closed loop: ``concurrency`` threads send ``/infer`` to ``node`` back to back for ``seconds``."""
    host, port = _api_addr(node)
    result = LoadResult(seconds=seconds)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        latencies, ran_on, errors = [], Counter(), Counter()
        n = k
        while time.monotonic() < deadline:
            body = bodies[n % len(bodies)]
            n += concurrency
            started = time.perf_counter()
            try:
                conn.request("POST", "/infer", body=body, headers={"Content-Type": "application/msgpack"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    errors[f"HTTP {resp.status}: {data[:120].decode(errors='replace')}"] += 1
                    continue
                reply = unpack(data)
            except (OSError, http.client.HTTPException) as exc:
                errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
                continue
            if time.monotonic() <= deadline:  # a reply after the deadline is outside the window
                latencies.append((time.perf_counter() - started) * 1000)
                ran_on[reply["ran_on_name"]] += 1
        conn.close()
        with lock:
            result.latencies_ms.extend(latencies)
            result.ran_on.update(ran_on)
            result.errors.update(errors)

    cpu_before = time.process_time()
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    result.client_cpu_s = time.process_time() - cpu_before
    return result


# -- the cluster -----------------------------------------------------------------------


def _write_inference(node: LocalNode, **settings) -> None:
    """Set ``inference.*`` fields in the node's ``node.yaml`` (None removes a field: its default)."""
    path = node.data_dir / NODE_FILE
    raw = yaml.safe_load(path.read_text())
    section = raw.setdefault("inference", {})
    for key, value in settings.items():
        if value is None:
            section.pop(key, None)
        else:
            section[key] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _node_cpu_seconds(nodes: list[LocalNode]) -> dict[str, float]:
    """CPU seconds each running node's process has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    return {n.name: stat_cpu_seconds(Path(f"/proc/{n.proc.pid}/stat").read_text(), ticks)
            for n in nodes if n.running}


def _counters(nodes: list[LocalNode]) -> dict[str, dict[str, int]]:
    """Each node's ``infer_*`` counters from ``/status`` (local, offloaded, split, served for peers…)."""
    out = {}
    for node in nodes:
        inference = node.client(timeout=10).get("/status")["inference"]
        out[node.name] = {k: v for k, v in inference.items() if k.startswith("infer_") and type(v) is int}
    return out


def _delta(before: dict, after: dict) -> dict[str, dict[str, int]]:
    return {name: {k: v - before[name].get(k, 0) for k, v in after[name].items()} for name in after}


def _leaks(result: LoadResult, name: str) -> dict:
    """With offload off every request should run where it was sent; say so loudly when some did not."""
    elsewhere = sum(n for where, n in result.ran_on.items() if where != name)
    return {"WARNING_ran_elsewhere_with_offload_off": elsewhere} if elsewhere else {}


class _Mesh:
    """The bench's three-node cluster under quotas: start, restart, measure."""

    def __init__(self, root: Path, quotas: tuple[float, ...]) -> None:
        self.cluster = LocalCluster(root)
        self.quotas = quotas
        self.groups: list[CpuQuota | None] = [None] * len(quotas)
        self.cpus = assign_cpus(quotas, len(os.sched_getaffinity(0)))
        self.cpu_list = sorted(os.sched_getaffinity(0))
        self.use_cgroups = cgroups_writable()
        tag = f"meshnode-bench-offload-{os.getpid()}"
        try:
            for i, cores in enumerate(quotas):
                self.cluster.init_node(f"n{i}")
                if self.use_cgroups:
                    self.groups[i] = CpuQuota(f"{tag}-n{i}", cores)
        except BaseException:
            self.close()  # no half-built set of cgroups is left behind
            raise

    @property
    def nodes(self) -> list[LocalNode]:
        """The nodes, in ``quotas`` order."""
        return self.cluster.nodes

    def note(self) -> str:
        """How the nodes were made unequal."""
        where = ", ".join(f"{n.name}: {q:g} core on cpu{self.cpu_list[c]}"
                          for n, q, c in zip(self.nodes, self.quotas, self.cpus))
        if self.use_cgroups:
            return f"cgroup-v1 CPU quotas ({where})"
        return (f"cgroups not writable: quotas NOT applied, nodes only pinned ({where}); "
                "nodes sharing a CPU are weaker, the rest are equal")

    def start(self, *, offload: dict) -> None:
        """Write each node's inference settings (``offload``: knobs to set, the rest default), start, wait."""
        knobs = {k: offload.get(k) for k in OFFLOAD_KNOBS}
        for node in self.nodes:
            _write_inference(node, **knobs, result_cache_mb=0)
        for i, node in enumerate(self.nodes):
            self.cluster.start(node)
            if self.groups[i] is not None:
                self.groups[i].add(node.proc.pid)
            pin(node.proc.pid, self.cpu_list[self.cpus[i]])
        for node in self.nodes:
            self.cluster.wait_api(node, timeout=90)
        self.cluster.wait_mesh(timeout=90)
        self.cluster.wait_leader(timeout=90)

    def wait_model(self, timeout: float = 120.0) -> None:
        """Wait until every node has loaded the bench model."""
        for node in self.nodes:
            wait_for(lambda node=node: MODEL_NAME in node.client(timeout=5).get("/status")["models"], timeout,
                     f"{node.name} to load {MODEL_NAME}", interval=0.3)

    def measure(self, node: LocalNode, bodies: list[bytes], *, seconds: float, warmup: float,
                concurrency: int) -> tuple[LoadResult, dict, dict]:
        """Warm up, then one measured closed-loop phase at ``node``.

        Counters are the phase's ``/status`` deltas, read after every client thread has its last reply,
        so they also hold the up to ``concurrency`` requests answered just after the window closed.
        The third value is the cores each node used meanwhile: a node short of its quota under
        full load was held back by something else on the machine.
        """
        drive(node, bodies, seconds=warmup, concurrency=concurrency)
        before, cpu_before = _counters(self.nodes), _node_cpu_seconds(self.nodes)
        result = drive(node, bodies, seconds=seconds, concurrency=concurrency)
        cpu = {name: round((used - cpu_before[name]) / seconds, 2)
               for name, used in _node_cpu_seconds(self.nodes).items()}
        return result, _delta(before, _counters(self.nodes)), cpu

    def stop(self) -> None:
        """Stop the nodes we started."""
        self.cluster.stop_all()

    def close(self) -> None:
        """Stop the nodes and remove the cgroups."""
        self.stop()
        for group in self.groups:
            if group is not None:
                group.close()


def run(quota_sets: tuple[tuple[float, ...], ...] = QUOTA_SETS, seconds: float = SECONDS, **options) -> list[dict]:
    """``run_quotas`` for each set of quotas, rows prefixed with the set."""
    rows = []
    for quotas in quota_sets:
        label = "/".join(f"{q:g}" for q in quotas)
        rows += [{**row, "name": f"[{label}] {row['name']}"}
                 for row in run_quotas(quotas, seconds=seconds, **options)]
    return rows


def run_quotas(quotas: tuple[float, ...] = QUOTAS, seconds: float = SECONDS, warmup: float = WARMUP,
        concurrency: int = CONCURRENCY, model: str = "resnet18", size: int = 96, width: float = 2.0,
        seed: int = 7) -> list[dict]:
    """Standalone throughputs, then all load at the weakest node with offload off and on."""
    if len(quotas) < 2:
        raise MeshError(f"bench: skewed load needs at least two nodes, got quotas {quotas!r}")
    for cores in quotas:
        cfs_quota_us(cores)
    root = Path(tempfile.mkdtemp(prefix="meshnode-bench-offload-"))
    mesh = None
    try:
        mesh = _Mesh(root, tuple(quotas))
        weakest = mesh.nodes[min(range(len(quotas)), key=lambda i: quotas[i])]
        model_file = root / "model.onnx"
        model_file.write_bytes(cnn_bytes(model, seed, size=size, width=width))
        bodies = request_bodies(size, INPUT_POOL, seed)
        phase = {"seconds": seconds, "warmup": warmup, "concurrency": concurrency}

        off_knobs = offload_off_settings(set(InferenceSettings.model_fields))
        mesh.start(offload=off_knobs)
        mesh.nodes[0].client(timeout=60).post("/models/add", {"name": MODEL_NAME, "path": str(model_file)})
        mesh.wait_model()
        alone = {node.name: mesh.measure(node, bodies, **phase) for node in mesh.nodes}
        # The cluster phases offer the load of all standalone phases together (the sum of their
        # in-flight requests), all at the weakest node: enough to keep every node busy.
        cluster_phase = {**phase, "concurrency": concurrency * len(quotas)}
        off, off_where, off_cpu = mesh.measure(weakest, bodies, **cluster_phase)

        mesh.stop()
        mesh.start(offload={})
        mesh.wait_model()
        on, on_where, on_cpu = mesh.measure(weakest, bodies, **cluster_phase)
    finally:
        if mesh is not None:
            mesh.close()
        shutil.rmtree(root, ignore_errors=True)

    total = sum(result.rate for result, _, _ in alone.values())
    rows = [{"name": "set-up", "nodes": mesh.note(), "model": f"{model} width {width:g} {size}x{size}",
             "load": f"closed loop, {concurrency} in flight per standalone node, {concurrency * len(quotas)} "
                     f"at the weakest in the cluster phases, {seconds:g} s after {warmup:g} s warm-up",
             "offload_off_by": off_knobs, "offload_on_by": "inference defaults",
             "loadavg_after": [round(v, 2) for v in os.getloadavg()]}]
    for (name, (result, _, cpu)), cores in zip(alone.items(), quotas):
        rows.append({"name": f"standalone {name} ({cores:g} core), offload off", **result.summary(),
                     "node_cpu": cpu[name], **_leaks(result, name)})
    rows.append({"name": "sum of standalone", "req_s": round(total, 1)})
    for label, result, where, cpu in (("off", off, off_where, off_cpu), ("on", on, on_where, on_cpu)):
        rows.append({
            "name": f"all load at {weakest.name}, offload {label}", **result.summary(),
            "ratio_vs_sum": round(result.rate / total, 3) if total else None, "target": TARGET_RATIO,
            "p99_vs_weakest_alone": round(result.summary()["p99_ms"] / alone[weakest.name][0].summary()["p99_ms"], 2)
            if result.ok and alone[weakest.name][0].ok else None,
            "node_cpu": cpu, "counters": where, **(_leaks(result, weakest.name) if label == "off" else {}),
        })
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
