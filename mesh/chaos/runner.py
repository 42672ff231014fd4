"""``meshnode chaos run``: real nodes, workloads, a seeded fault schedule, heal, quiet period, checkers, a report.

Theory of operation
-------------------
A run has five phases, each bounded in time:

1. **Set-up.** N real ``meshnode`` processes: each in its own network namespace
   (``mesh.netlab``) when this machine lets us build them (root, iproute2), so
   partitions are real packet drops; otherwise on 127.0.0.1 (``LocalCluster``),
   where partitions are cut by a test-only fault filter in each node's
   transports (``mesh.fault_filter``: libp2p and Raft connections, both ways,
   so no one-way cuts and no netem). The report says which backend ran and
   which nemeses it could not apply. The mesh forms and agrees on a Raft leader.
2. **Faults and load** for ``duration`` seconds. Client threads run the chosen
   workloads against all nodes in turn, each operation recorded as invoke →
   ok / fail / unknown with the runner's monotonic times (``history.Recorder``);
   a nemesis thread applies the schedule ``nemesis.schedule(seed, ...)`` (the
   same seed gives the same faults and the same workload choices); an observer
   records every node's (term, leader) twice a second.
3. **Heal.** Every fault is undone (``faults.heal_all``), stopped processes
   continued, killed ones restarted.
4. **Quiet period.** No new operations; the runner waits (at most ``quiet``
   seconds) for the mesh to re-form and the replicas to agree.
5. **Check.** The checkers (``mesh/chaos/checkers.py``) judge the histories and
   the final states; ``report.json`` holds the seed, the schedule, what each
   fault really did, the histories and every verdict, and ``report.html``
   draws it (``report_html.py``). The run passes only if every checker does.

Workloads. ``register``: writes of run-unique values, linearizable reads and
compare-and-set to a few config keys through Raft; a timeout or a lost
connection is ``unknown`` (it may have committed), a clear refusal ``fail``.
``sensor``: writes of run-unique values to a few sensor keys (acknowledged =
durable on the node that took it) and increments of one counter.
``inference``: requests to the demo model (registered at set-up) with inputs
whose answers the runner computed beforehand, a 5 s deadline each; a request
whose entry node itself does not answer, or was killed or paused while the
request was with it, is counted apart as unjudged: a stopped process answers
when it is continued, and its clock did not run meanwhile.
``tasks``: holders take task leases with fencing tokens and write to a fenced
resource the runner keeps (``tasks_workload.py``).

Measured beside the checks (``measures.py``): after each healed fault, how
long until a leader all nodes agree on commits a write and until every replica
holds the sensor writes acknowledged before the heal (a probe thread per heal,
polling at most twice a second until the next fault); and mesh RPC frames per
operation, from every node's ``rpc.frames_sent`` and ``raft.messages_sent`` read
by the observer.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crdt.errors import MeshError

from ..client import ClientError
from ..dashboard import write_chaos_now
from . import checkers, faults, measures, nemesis
from .history import Recorder
from .report_html import render as render_html
from .tasks_workload import TasksWorkload

log = logging.getLogger("meshnode.chaos")

WORKLOADS = {
    "inference": "requests to the demo model with known answers, to every node in turn "
                 "(checked: each answered correctly or refused clearly, within its deadline)",
    "register": "config writes, linearizable reads and compare-and-set through Raft (checked: linearizable)",
    "sensor": "sensor writes of unique values and counter increments through the CRDT "
              "(checked: converged, no acknowledged write lost, counters exact)",
    "tasks": "holders acquire, renew and release task leases and write to a fenced resource "
             "(checked: tokens monotonic, never two live holders, no in-lease write refused)",
}
CHECKERS = {
    "linearizable": "the register history has a linearization (WGL search, per key)",
    "leaders-per-term": "no two nodes were ever seen leading the same term",
    "crdt-converged": "after heal and the quiet period every replica holds the same sensor map",
    "crdt-no-lost-writes": "every acknowledged sensor write is there unless a later write replaced it",
    "counters-exact": "the counter equals the acknowledged increments (unknown ones may or may not count)",
    "inference-answers": "every inference request answered correctly or refused with a clear error, in time",
    "fencing-monotonic": "a task's fencing tokens never go backwards, one token never goes to two holders",
    "no-double-holders": "no task is held by two holders at once (each stops at its own safe deadline)",
    "fenced-writes": "no write within its lease, nor under the newest token, is refused by the fence "
                     "(late writes of stale holders refused: fencing at work)",
    "recovery": f"after each heal a leader all nodes agree on commits a write within {measures.LEADER_BOUND_S:g} s",
}
MODEL = "chaos-demo"
INFER_DEADLINE = 5.0  # seconds each inference request may take (its timeout)
INPUTS = 8  # distinct inputs, each with its answer computed here beforehand
DIR_PREFIX = "meshnode-chaos-"
NS_PREFIX = "mnch"  # network namespaces of a run start with this (``chaos clean`` removes leftovers)
REGISTER_KEYS = ("chaos/r0", "chaos/r1", "chaos/r2")
SENSOR_KEYS = tuple(f"chaos/s{i}" for i in range(8))
COUNTER = "chaos/count"
OP_TIMEOUT = 3.0  # seconds a client waits for one operation before it counts as unknown
RESTART_MARGIN = 3.0  # seconds after a process fault is healed that its node may still be coming back
CONVERGE_BOUND = 15.0  # seconds after the heal within which replicas must agree (the stated bound)
PROBE_KEY = "chaos/probe"  # the recovery probe's config key (not one the register workload checks)
IDLE_S = 2.0  # seconds the mesh's idle frame rate is measured before the load starts


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """What ``meshnode chaos run`` was asked for."""

    nodes: int = 5
    duration: float = 60.0
    seed: int = 0
    nemeses: tuple[str, ...] = ("partition-halves", "partition-leader", "kill", "pause")
    workloads: tuple[str, ...] = ("register", "sensor", "inference", "tasks")
    report: Path | None = None
    quiet: float = CONVERGE_BOUND
    backend: str = "auto"  # auto, netns or local
    clients: int = 3
    logs: Path | None = None  # copy every node's log here once the nodes have stopped

    def __post_init__(self) -> None:
        if not 3 <= self.nodes <= 9:
            raise MeshError(f"chaos: --nodes must be 3..9, got {self.nodes}")
        if not 10 <= self.duration <= 86_400:
            raise MeshError(f"chaos: --duration must be 10..86400 seconds, got {self.duration:g}")
        unknown = [w for w in self.workloads if w not in WORKLOADS]
        if unknown or not self.workloads:
            raise MeshError(f"chaos: unknown workload(s) {unknown or '(none given)'}; choose from {', '.join(WORKLOADS)}")
        if self.backend not in ("auto", "netns", "local"):
            raise MeshError(f"chaos: --backend must be auto, netns or local, got {self.backend!r}")
        if not 1 <= self.clients <= 16:
            raise MeshError(f"chaos: --clients must be 1..16, got {self.clients}")


@dataclass
class _Run:
    options: RunOptions
    cluster: Any
    backend: str
    names: list[str]
    t0: float
    rng: random.Random
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    register: Recorder = field(default_factory=Recorder)
    sensor_writes: list[checkers.SensorWrite] = field(default_factory=list)
    sensor_times: list[float] = field(default_factory=list)  # when each sensor write completed
    increments: list[checkers.Increment] = field(default_factory=list)
    leaders: list[checkers.LeaderObservation] = field(default_factory=list)
    actions: list[dict] = field(default_factory=list)
    counter: int = 0
    inference: list[checkers.InferenceRequest] = field(default_factory=list)
    unjudged: int = 0  # inference requests whose entry node itself did not answer (faulted): not the mesh's doing
    pool: list[tuple[dict, dict]] = field(default_factory=list)  # (inputs, expected outputs)
    inference_entry: list[tuple[str, float, float]] = field(default_factory=list)  # (entry node, sent, done)
    process_faults: list[tuple[str, float, float]] = field(default_factory=list)  # (node, from, until)
    tasks: TasksWorkload | None = None
    frames: measures.FrameTally = field(default_factory=measures.FrameTally)
    idle_frames_per_s: float | None = None
    load_s: float = 0.0  # seconds the frame tally covers
    recovery: list[dict] = field(default_factory=list)  # one row per healed fault (measures.recovery)
    probes: list[threading.Thread] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def unique(self, prefix: str) -> str:
        with self.lock:
            self.counter += 1
            return f"{prefix}-{self.counter}"


def choose_backend(requested: str) -> tuple[str, str | None]:
    """(backend, why netns is not used or None)."""
    from ..netlab import why_unavailable

    reason = why_unavailable()
    if requested == "netns" and reason:
        raise MeshError(f"chaos: the netns backend cannot run here: {reason}")
    if requested == "local" or reason:
        return "local", reason or "asked for the local backend"
    return "netns", None


def runnable_nemeses(requested: tuple[str, ...], backend: str, nodes: int) -> tuple[list[str], dict[str, str]]:
    """The nemeses this backend can apply, and why each other one is skipped."""
    from ..netlab import why_no_netem

    keep, skipped = [], {}
    for name in requested:
        if name not in nemesis.NEMESES:
            raise MeshError(f"chaos: unknown nemesis {name!r}; choose from {', '.join(nemesis.NEMESES)}")
        if name == "partition-one-way" and backend != "netns":
            skipped[name] = ("a one-way cut needs the network-namespace backend (root and iproute2): "
                             "the local backend's fault filter cuts TCP links, which carry both ways")
        elif name == "netem" and (backend != "netns" or why_no_netem()):
            skipped[name] = why_no_netem() or "netem needs the network-namespace backend"
        elif name == "partition-ring" and nodes < 4:
            skipped[name] = "a majorities ring needs at least 4 nodes"
        else:
            keep.append(name)
    return keep, skipped


def run(options: RunOptions, progress: Callable[[str], None] = print) -> dict:
    """Run one chaos test (see the module doc); returns the report (also written to ``options.report``)."""
    backend, why_local = choose_backend(options.backend)
    chosen, skipped = runnable_nemeses(options.nemeses, backend, options.nodes)
    root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
    progress(f"chaos: {options.nodes} nodes, {backend} backend"
             + (f" ({why_local})" if why_local and backend == "local" else "")
             + f", seed {options.seed}, nemeses {', '.join(chosen) or 'none'}"
             + (f"; skipped {', '.join(skipped)}" if skipped else ""))
    cluster = r = None
    # A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the nodes are stopped and the namespaces removed.
    on_term = (signal.signal(signal.SIGTERM, _terminated)
               if threading.current_thread() is threading.main_thread() else None)
    try:
        cluster, names = _start_cluster(root, options, backend, progress, spare="membership" in chosen)
        sched = nemesis.schedule(options.seed, names, options.duration, chosen) if chosen else []
        names = list(names)  # grows when the spare node joins (a membership fault)
        r = _Run(options=options, cluster=cluster, backend=backend, names=names, t0=time.monotonic(),
                 rng=random.Random(options.seed))
        if "inference" in options.workloads:
            r.pool = _register_model(cluster, root, options.seed, progress)
        if "tasks" in options.workloads:
            r.tasks = TasksWorkload(r.now, r.lock)
        _measure_idle(r)
        load_from = r.now()
        threads = [threading.Thread(target=_observe, args=(r,), daemon=True),
                   threading.Thread(target=_nemesis, args=(r, sched, progress), daemon=True)]
        for k in range(options.clients):
            for w in options.workloads:
                threads.append(threading.Thread(target=_client, args=(r, w, k), daemon=True))
        for t in threads:
            t.start()
        deadline = time.monotonic() + options.duration
        while time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            progress(f"chaos: t={r.now():5.1f}s  ops {r.register.count()} register, "
                     f"{len(r.sensor_writes)} sensor, {len(r.increments)} incr")
        r.stop.set()
        for t in threads + r.probes:
            t.join(OP_TIMEOUT + 10)
        _tally_frames(r)
        r.load_s = r.now() - load_from
        healed = faults.heal_all(cluster)
        heal_at = r.now()
        r.actions.append({"t": round(heal_at, 3), "fault": "heal-all", "actions": list(healed)})
        progress(f"chaos: healed at t={heal_at:.1f}s; quiet period (up to {options.quiet:g} s)")
        final, matched = _quiet(r, options.quiet)
        verdicts = _check(r, final, matched, heal_at)
        report = _report(r, sched, skipped, why_local, verdicts, final)
        report["converged_at"] = {n: (None if t is None else round(t, 3)) for n, t in matched.items()}
        for row in r.recovery:
            progress(f"chaos: recovery after {row['fault']}: leader {_secs(row['leader_s'])}, "
                     f"replicas caught up {_secs(row['converged_s'])}")
        m = report["messages"]
        progress(f"chaos: {m['frames_sent']} messages (mesh frames and Raft) for {m['ops']} ops: "
                 f"{m['messages_per_op']} per op "
                 f"({m['messages_per_op_above_idle']} above the idle {m['idle_frames_per_s']}/s)")
    finally:
        if r is not None:
            r.stop.set()  # the nemesis and client threads stop touching the nodes
        try:
            if cluster is not None:
                _close(cluster)
        finally:
            if options.logs is not None:
                _save_logs(root, options.logs, progress)
            shutil.rmtree(root, ignore_errors=True)
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
    if options.report is not None:
        _write(options.report, report)
    for v in verdicts:
        progress(f"chaos: {'PASS' if v['ok'] else 'FAIL'} {v['name']}: {v['summary']}")
    return report


def _save_logs(root: Path, dest: Path, progress) -> None:
    """Copy the nodes' logs (``<node>.log``) out of the run directory before it is removed."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        saved = 0
        for path in sorted(root.rglob("*.log")):
            shutil.copyfile(path, dest / path.name)
            saved += 1
        progress(f"chaos: {saved} node log(s) saved in {dest}")
    except OSError as exc:
        progress(f"chaos: could not save the node logs in {dest}: {exc}")


def _start_cluster(root: Path, options: RunOptions, backend: str, progress, *,
                   spare: bool = False) -> tuple[Any, list[str]]:
    """Start and mesh the nodes; with ``spare``, also create (not start) one more that a membership fault brings in."""
    if backend == "netns":
        from ..netlab import LanCluster

        cluster = LanCluster(root / "lab", prefix=NS_PREFIX, chaos_clock=True)
        add = cluster.add_node
    else:
        from ..cluster import LocalCluster

        cluster = LocalCluster(root / "local", chaos_clock=True, chaos_filter=True)

        def add():
            return cluster.init_node(f"n{len(cluster.nodes)}")
    try:
        for _ in range(options.nodes):
            add()
        progress("chaos: starting nodes")
        cluster.start_all()
        cluster.wait_mesh(timeout=90)
        _wait_leader(cluster)
        cluster.spare = None
        if spare:
            cluster.spare = add()  # made after the mesh formed, so it joins a running mesh when started
            cluster.nodes.remove(cluster.spare)
    except BaseException:
        _close(cluster)  # the caller never got the cluster: stop what started here
        raise
    return cluster, [n.name for n in cluster.nodes]


def _wait_leader(cluster: Any, timeout: float = 60.0) -> None:
    from ..cluster import wait_for

    def agreed() -> bool:
        leaders = set()
        for node in cluster.nodes:
            raft = node.client(timeout=2).get("/status")["raft"]
            if raft["role"] != "forwarder":
                leaders.add(raft.get("leader"))
        return len(leaders) == 1 and None not in leaders

    wait_for(agreed, timeout, "the nodes to agree on a Raft leader", interval=0.2)


def _terminated(signum: int, frame: Any) -> None:
    # Once: a second SIGTERM (e.g. `timeout` passing on the one it got) must not cut the clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _close(cluster: Any) -> None:
    if hasattr(cluster, "close"):
        cluster.close()
    else:
        cluster.stop_all()


def _client_of(r: _Run, index: int):
    node = r.cluster.nodes[index % len(r.cluster.nodes)]
    return node.name, node.client(timeout=OP_TIMEOUT)


def _outcome(exc: Exception) -> str:
    """fail for a clear refusal the op cannot have passed, unknown when it may have committed."""
    text = str(exc)
    if isinstance(exc, ClientError) and any(s in text for s in ("must be", "is not set", "api: ")):
        return "fail"
    return "unknown"


def _client(r: _Run, workload: str, k: int) -> None:
    rng = random.Random(f"{r.options.seed}/{workload}/{k}")
    i = k
    while not r.stop.is_set():
        i = rng.randrange(len(r.names)) if workload == "tasks" else i + 1
        try:
            name, client = _client_of(r, i)  # a killed node has no API address until it is back
        except Exception as exc:  # noqa: BLE001 - a client thread must outlive whatever a restarting node shows
            log.debug("chaos: no client for node %d: %s", i, exc)
            r.stop.wait(0.1)
            continue
        try:
            if workload == "register":
                _register_op(r, rng, name, client)
            elif workload == "inference":
                _infer_op(r, rng, name, client)
            elif workload == "tasks":
                r.tasks.cycle(rng, f"tasks-c{k}", name, client, r.stop)
            else:
                _sensor_op(r, rng, name, client)
        except Exception as exc:  # noqa: BLE001 - recorded in the history; the loop goes on
            log.debug("chaos: %s op on %s: %s", workload, name, exc)
        time.sleep(rng.uniform(0.01, 0.05))


def _failed(r: _Run, handle: int, exc: Exception) -> None:
    """Close an op that raised: ``fail`` (done now) on a clear refusal, else ``unknown`` (no completion time)."""
    status = _outcome(exc)
    with r.lock:
        r.register.complete(handle, status=status, now=r.now() if status == "fail" else None)


def _register_op(r: _Run, rng: random.Random, name: str, client) -> None:
    key = rng.choice(REGISTER_KEYS)
    roll = rng.random()
    if roll < 0.4:
        value = r.unique("w")
        with r.lock:
            h = r.register.invoke(process=name, kind="write", key=key, value=value, now=r.now())
        try:
            client.post("/config/set", {"key": key, "value": value})
        except (ClientError, OSError) as exc:
            _failed(r, h, exc)
            return
        with r.lock:
            r.register.complete(h, status="ok", now=r.now())
        return
    # A linearizable read (through the log); its revision feeds a compare-and-set half the time.
    with r.lock:
        h = r.register.invoke(process=name, kind="read", key=key, now=r.now())
    try:
        entry = client.get("/config/get", key=key)
        value, revision = entry["value"], entry["revision"]
    except ClientError as exc:
        if "is not set" in str(exc):
            value, revision = None, 0
        else:
            _failed(r, h, exc)
            return
    except OSError as exc:
        _failed(r, h, exc)
        return
    with r.lock:
        r.register.complete(h, status="ok", now=r.now(), result=value)
    if roll < 0.7:
        return
    new = r.unique("c")
    with r.lock:
        h = r.register.invoke(process=name, kind="cas", key=key, value=(value, new), now=r.now())
    try:
        answer = client.post("/config/cas", {"key": key, "value": new, "expected_revision": revision})
    except (ClientError, OSError) as exc:
        _failed(r, h, exc)
        return
    with r.lock:
        r.register.complete(h, status="ok", now=r.now(), result=bool(answer["swapped"]))


def _sensor_op(r: _Run, rng: random.Random, name: str, client) -> None:
    if rng.random() < 0.25:
        by = rng.choice((1, 1, 2, 5))
        try:
            client.post("/state/incr", {"key": COUNTER, "by": by})
            status = "ok"
        except (ClientError, OSError) as exc:
            status = _outcome(exc)
        with r.lock:
            r.increments.append(checkers.Increment(counter=COUNTER, by=by, status=status))
        return
    key, value = rng.choice(SENSOR_KEYS), r.unique("s")
    try:
        answer = client.post("/state/put", {"key": key, "value": value})
    except (ClientError, OSError) as exc:
        with r.lock:
            r.sensor_writes.append(checkers.SensorWrite(node=name, key=key, value=value, stamp=None,
                                                        status=_outcome(exc)))
            r.sensor_times.append(r.now())
        return
    with r.lock:
        r.sensor_writes.append(checkers.SensorWrite(node=name, key=key, value=value, stamp=tuple(answer["hlc"])))
        r.sensor_times.append(r.now())


def _register_model(cluster: Any, root: Path, seed: int, progress) -> list[tuple[dict, dict]]:
    """Register the demo model, wait until every node has loaded it; the inputs and their answers."""
    import numpy as np

    from inference import Runtime, build_demo_model
    from inference.spec import read_model_spec

    from ..cluster import wait_for

    path = build_demo_model(root / "chaos-demo.onnx", seed=seed)
    cluster.nodes[0].client(timeout=30).post("/models/add", {"name": MODEL, "path": str(path)})
    for node in cluster.nodes:
        wait_for(lambda node=node: MODEL in node.client(timeout=5).get("/status")["models"], 60,
                 f"{node.name} to load the demo model")
    runtime, spec = Runtime(), read_model_spec(path)
    runtime.load(MODEL, path, spec)
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(INPUTS):
        inputs = {t.name: rng.standard_normal([d if isinstance(d, int) and d > 0 else 1 for d in t.shape])
                  .astype(np.float32) for t in spec.inputs}
        pool.append((inputs, runtime.run(MODEL, inputs)))
    progress(f"chaos: demo model registered and loaded on {len(cluster.nodes)} nodes")
    return pool


def _infer_op(r: _Run, rng: random.Random, name: str, client) -> None:
    import numpy as np

    from inference import decode_tensors, encode_tensors

    j = rng.randrange(len(r.pool))
    inputs, expected = r.pool[j]
    request_id = r.unique("i")
    client.timeout = INFER_DEADLINE + 5.0  # longer than the deadline: the node must answer or refuse first
    started = time.monotonic()
    sent = r.now()
    answer = error = None
    try:
        reply = client.post_msgpack("/infer", {"model": MODEL, "inputs": encode_tensors(inputs),
                                               "timeout": INFER_DEADLINE})
        outputs = decode_tensors(reply["outputs"])
        same = set(outputs) == set(expected) and all(
            np.allclose(outputs[k], expected[k], atol=1e-4) for k in expected)  # batched runs round differently
        answer = "expected" if same else f"differs on {sorted(outputs)}"
    except ClientError as exc:
        text = str(exc)
        if text.startswith("client: "):  # the entry node itself did not answer: it is the one faulted
            with r.lock:
                r.unjudged += 1
            return
        error = text
    except OSError:  # a read that timed out on the entry node's own socket: that node is the faulted one
        with r.lock:
            r.unjudged += 1
        return
    elapsed = time.monotonic() - started
    with r.lock:
        r.inference_entry.append((name, sent, r.now()))
        r.inference.append(checkers.InferenceRequest(
            id=request_id, expected="expected", answer=answer, error=error, answered=int(answer is not None),
            deadline=INFER_DEADLINE, elapsed=elapsed))


def _observe(r: _Run) -> None:
    while not r.stop.is_set():
        for node in list(r.cluster.nodes):
            try:
                status = node.client(timeout=1).get("/status")
                raft = status["raft"]
            except (ClientError, OSError, MeshError, KeyError, TypeError, ValueError):
                continue
            with r.lock:
                _observe_sent(r.frames, node.name, _sent(status))
            if raft.get("leader") and raft.get("term") is not None:
                with r.lock:
                    r.leaders.append(checkers.LeaderObservation(node=node.name, term=raft["term"],
                                                                leader=raft["leader"], time=r.now()))
        r.stop.wait(0.5)


def _sent(status: Any) -> tuple[int | None, int | None]:
    """(mesh RPC frames, Raft messages) a node has sent, from its ``/status``."""
    rpc = status.get("rpc") if isinstance(status, dict) else None
    raft = status.get("raft") if isinstance(status, dict) else None
    return ((rpc or {}).get("frames_sent"), (raft or {}).get("messages_sent", 0))


def _observe_sent(tally: measures.FrameTally, name: str, sent: tuple[int | None, int | None] | None) -> None:
    """Both counters go into one tally under their own names, so each one's restarts are seen alone."""
    if sent is not None:
        tally.observe(f"{name}/rpc", sent[0])
        tally.observe(f"{name}/raft", sent[1])


def _frames_sent(r: _Run) -> dict[str, tuple[int | None, int | None] | None]:
    """Every node's (mesh frames, Raft messages) sent now (None for a node that does not answer)."""
    out: dict[str, tuple[int | None, int | None] | None] = {}
    for node in list(r.cluster.nodes):
        try:
            out[node.name] = _sent(node.client(timeout=2).get("/status"))
        except (ClientError, OSError, MeshError, KeyError, TypeError, ValueError):
            out[node.name] = None
    return out


def _measure_idle(r: _Run) -> None:
    """The mesh's own message rate with no load (gossip, membership, sync, Raft heartbeats), then the first reading."""
    idle = measures.FrameTally()
    for name, sent in _frames_sent(r).items():
        _observe_sent(idle, name, sent)
    time.sleep(IDLE_S)
    readings = _frames_sent(r)
    for name, sent in readings.items():
        _observe_sent(idle, name, sent)
        _observe_sent(r.frames, name, sent)
    r.idle_frames_per_s = idle.total / IDLE_S if None not in readings.values() else None


def _tally_frames(r: _Run) -> None:
    for name, sent in _frames_sent(r).items():
        with r.lock:
            _observe_sent(r.frames, name, sent)


def _ops_done(r: _Run) -> int:
    """Operations of every workload that got an answer (ok or a refusal): the unit of messages per op."""
    answered = ("ok", "fail")
    with r.lock:
        return (sum(op.status in answered for op in r.register.history().ops)
                + sum(w.status in answered for w in r.sensor_writes)
                + sum(i.status in answered for i in r.increments)
                + len(r.inference) + (r.tasks.answered if r.tasks else 0))


def _probe(r: _Run, fault: str, healed_at: float, until: float) -> None:
    """Poll after a heal until a leader commits and replicas caught up (or ``until``); records one row."""
    with r.lock:
        wanted = measures.acked_before(((w.key, w.stamp, w.status, t) for w, t in zip(r.sensor_writes, r.sensor_times)),
                                       healed_at)
    need = {"leader", *(("converged",) if "sensor" in r.options.workloads else ())}
    successes: list[tuple[str, float]] = []
    while need and r.now() < until:
        polled = time.monotonic()
        if "leader" in need and _leader_commits(r):
            successes.append(("leader", r.now()))
            need.discard("leader")
        if "converged" in need and all(measures.caught_up(rows, wanted) for rows in _sensor_rows(r)):
            successes.append(("converged", r.now()))
            need.discard("converged")
        time.sleep(max(0.0, measures.PROBE_INTERVAL_S - (time.monotonic() - polled)))
    row = measures.recovery(measures.Heal(fault=fault, healed_at=healed_at, until=until), successes)
    with r.lock:
        r.recovery.append(row)


def _leader_commits(r: _Run) -> bool:
    """Whether the answering nodes (a majority) agree on a leader and a config write through it commits."""
    views: dict[str, dict | None] = {}
    for node in list(r.cluster.nodes):
        try:
            views[node.name] = node.client(timeout=1).get("/status")["raft"]
        except (ClientError, OSError, MeshError, KeyError, TypeError, ValueError):
            views[node.name] = None
    if measures.leader_agreed(views, len(r.names)) is None:
        return False
    name = next(n for n, v in views.items() if v is not None)
    node = next(n for n in r.cluster.nodes if n.name == name)
    try:
        node.client(timeout=2).post("/config/set", {"key": PROBE_KEY, "value": r.unique("p")})
    except (ClientError, OSError, MeshError, ValueError):
        return False
    return True


def _sensor_rows(r: _Run) -> list[list | None]:
    out: list[list | None] = []
    for node in list(r.cluster.nodes):
        try:
            out.append(node.client(timeout=1).get("/state/list", prefix="chaos/s"))
        except (ClientError, OSError, MeshError, ValueError):
            out.append(None)
    return out


def _secs(value: float | None) -> str:
    return "not within the window" if value is None else f"{value:.2f} s"


def _leader_index(r: _Run) -> int:
    with r.lock:
        seen = list(r.leaders[-20:])
    if not seen:
        return 0
    leader = max(seen, key=lambda o: (o.term, o.time)).leader
    for i, node in enumerate(r.cluster.nodes):
        if getattr(node, "peer_id", None) == leader:
            return i
    return 0


def _tell_nodes(r: _Run, fault: str | None, seconds: float) -> None:
    """Let every node's dashboard show the fault now in force (``mesh/dashboard.py``); None when healed."""
    for node in list(r.cluster.nodes):
        data_dir = getattr(node, "data_dir", None)
        if data_dir is None:
            continue
        try:
            write_chaos_now(Path(data_dir), fault, seconds)
        except OSError:
            pass  # a node's dashboard missing the note is no reason to stop the run


def _nemesis(r: _Run, sched: list[nemesis.Fault], progress) -> None:
    for n, fault in enumerate(sched):
        if r.stop.wait(max(0.0, fault.start_s - r.now())):
            return
        try:
            injection = faults.apply(fault, r.cluster, resolve_leader=lambda: _leader_index(r))
        except MeshError as exc:
            r.actions.append({"t": round(r.now(), 3), "fault": fault.describe(), "error": str(exc)})
            continue
        started = r.now()
        progress(f"chaos: t={started:5.1f}s  {injection.fault.describe()}")
        _tell_nodes(r, injection.fault.describe(), fault.end_s - started)
        r.actions.append({"t": round(r.now(), 3), "fault": injection.fault.describe(), "kind": fault.kind,
                          "until": fault.end_s, "actions": list(injection.actions)})
        if r.stop.wait(max(0.0, fault.end_s - r.now())):
            return  # the run is ending (or was stopped): heal_all, or closing the cluster, undoes the fault
        try:
            done = faults.heal(injection.fault, r.cluster)
        except MeshError as exc:
            done = (f"heal failed: {exc}",)
        healed_at = r.now()
        r.actions.append({"t": round(healed_at, 3), "fault": f"heal {fault.kind}", "actions": list(done)})
        _tell_nodes(r, None, 0.0)
        next_start = sched[n + 1].start_s if n + 1 < len(sched) else r.options.duration
        probe = threading.Thread(target=_probe, daemon=True, args=(
            r, injection.fault.describe(), healed_at, min(next_start, healed_at + measures.RECOVERY_WINDOW_S)))
        r.probes.append(probe)
        probe.start()
        if injection.fault.mode == "join":
            with r.lock:
                r.names[:] = [node.name for node in r.cluster.nodes]
        if fault.kind in ("kill", "pause", "restart-all") or injection.fault.mode == "leave":
            hit = injection.fault.targets or tuple(r.names)
            with r.lock:  # a request whose entry node was down or stopped meanwhile is not the mesh's to answer
                r.process_faults += [(name, started, r.now() + RESTART_MARGIN) for name in hit]


def _states(r: _Run) -> dict[str, dict | None]:
    out = {}
    for node in r.cluster.nodes:
        try:
            rows = node.client(timeout=5).get("/state/list", prefix="chaos/s")
            out[node.name] = {row["key"]: row["value"] for row in rows}
        except (ClientError, OSError, MeshError):
            out[node.name] = None
    return out


def _quiet(r: _Run, quiet: float) -> tuple[dict[str, dict | None], dict[str, float | None]]:
    """Poll until every node holds the same sensor map (or ``quiet`` passes); when each first matched."""
    matched: dict[str, float | None] = {n: None for n in r.names}
    deadline = time.monotonic() + quiet
    final = _states(r)
    while True:
        values = [json.dumps(s, sort_keys=True) for s in final.values() if s is not None]
        common = max(set(values), key=values.count) if values else None
        for name, state in final.items():
            if state is not None and json.dumps(state, sort_keys=True) == common and matched[name] is None:
                matched[name] = r.now()
        if all(m is not None for m in matched.values()) or time.monotonic() >= deadline:
            return final, matched
        time.sleep(0.5)
        final = _states(r)


def _check(r: _Run, final: dict[str, dict | None], matched: dict[str, float | None], heal_at: float) -> list[dict]:
    verdicts = []
    if "register" in r.options.workloads:
        verdicts.append(checkers.linearizable(r.register.history()).to_dict())
    verdicts.append(checkers.leaders_per_term(r.leaders).to_dict())
    if "inference" in r.options.workloads:
        judged = [q for q, (node, sent, done) in zip(r.inference, r.inference_entry)
                  if not any(n == node and a < done and sent < b for n, a, b in r.process_faults)]
        r.unjudged += len(r.inference) - len(judged)
        verdicts.append(checkers.inference_answers(judged, grace_s=1.0).to_dict())
    if "sensor" in r.options.workloads:
        replicas = [checkers.Replica(node=n, state=s or {}, matched_at=matched[n]) for n, s in final.items()]
        verdicts.append(checkers.crdt_converged(replicas, CONVERGE_BOUND, heal_at).to_dict())
        reference = next((s for s in final.values() if s is not None), {})
        verdicts.append(checkers.crdt_no_lost_writes(r.sensor_writes, reference).to_dict())
        verdicts.append(checkers.counters_exact(r.increments, {COUNTER: _counter(r)}).to_dict())
    if r.tasks is not None:
        clock_kinds = getattr(nemesis, "CLOCKS", frozenset())  # clock faults cut leases short: fencing covers them
        skewed = [(a["t"], a["until"]) for a in r.actions if a.get("kind") in clock_kinds and "until" in a]
        verdicts += r.tasks.verdicts(skewed)
    if r.recovery:
        verdicts.append(measures.recovery_verdict(sorted(r.recovery, key=lambda row: row["healed_at"])).to_dict())
    return verdicts


def _counter(r: _Run) -> int:
    """The counter as the first node that answers reads it (all replicas are equal after the quiet period)."""
    for node in r.cluster.nodes:
        try:
            value = node.client(timeout=5).get("/state/get", key=COUNTER)["value"]
        except ClientError as exc:
            if "is not set" in str(exc):
                return 0
            continue
        except (OSError, MeshError):
            continue
        if type(value) is int:
            return value
    return 0


def _report(r: _Run, sched, skipped, why_local, verdicts, final) -> dict:
    history = r.register.history()
    recovery = sorted(r.recovery, key=lambda row: row["healed_at"])
    return {
        "format": "meshnode-chaos-report", "version": 1,
        "seed": r.options.seed, "nodes": r.names, "backend": r.backend,
        "backend_note": (f"127.0.0.1 ({why_local}): partitions cut by each node's test-only fault filter "
                         "(mesh/fault_filter.py: libp2p and Raft connections, both ways)" if r.backend == "local"
                         else "network namespaces, packet drops by route"),
        "duration_s": r.options.duration, "quiet_s": r.options.quiet,
        "workloads": list(r.options.workloads),
        "nemeses": [f.kind for f in sched], "skipped_nemeses": skipped,
        "schedule": [{"kind": f.kind, "start_s": f.start_s, "end_s": f.end_s, "describe": f.describe()}
                     for f in sched],
        "actions": r.actions,
        "history": {"register": json.loads(history.to_json()),
                    "sensor_writes": [{"node": w.node, "key": w.key, "value": w.value, "status": w.status,
                                       "stamp": list(w.stamp) if w.stamp else None, "t": round(t, 3)}
                                      for w, t in zip(r.sensor_writes, r.sensor_times)],
                    "increments": [{"by": i.by, "status": i.status} for i in r.increments],
                    "inference": [{"id": q.id, "answer": q.answer, "error": q.error, "elapsed": q.elapsed}
                                  for q in r.inference],
                    "inference_unjudged": r.unjudged,
                    "leaders": [{"node": o.node, "term": o.term, "leader": o.leader, "at": round(o.time, 3)}
                                for o in r.leaders]},
        "final_state": final,
        "tasks": r.tasks.summary() if r.tasks is not None else None,
        "recovery": recovery, **measures.worst(recovery), "recovery_bound_s": measures.LEADER_BOUND_S,
        "messages": measures.messages_per_op(r.frames.total, _ops_done(r), r.idle_frames_per_s, r.load_s),
        "verdicts": verdicts,
        "ok": all(v["ok"] for v in verdicts),
    }


def _write(directory: Path, report: dict) -> None:
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.json").write_text(json.dumps(report, indent=1, default=str))
        (directory / "report.html").write_text(render_html(report))
    except OSError as exc:
        raise MeshError(f"chaos: cannot write the report to {directory}: {exc.strerror or exc}") from exc


def clean() -> list[str]:
    """Remove what a crashed run left: its node processes, our network namespaces and temp dirs; returns what was done."""
    from ..netlab import ip

    removed = []
    # A run killed hard (SIGKILL) leaves its nodes running: `meshnode run <tmp>/meshnode-chaos-*/...`.
    ours = f" run {Path(tempfile.gettempdir()) / DIR_PREFIX}"
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if " -m mesh run " in cmdline and ours in cmdline:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
                removed.append(f"process {proc.name} ({cmdline.split(' run ', 1)[1].strip()})")
            except OSError:
                pass
    listing = ip("netns", "list", check=False).stdout.split("\n")
    for line in listing:
        name = line.split(" ")[0].strip()
        if name.startswith(NS_PREFIX):
            ip("netns", "delete", name, check=False)
            removed.append(f"netns {name}")
    for path in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


__all__ = ["CHECKERS", "WORKLOADS", "RunOptions", "clean", "run"]
