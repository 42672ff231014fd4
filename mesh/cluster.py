"""A local cluster of real ``meshnode`` processes (demo, tests, benchmarks, chaos).

Each node gets its own data dir under one root, is created with ``meshnode
init`` and runs as ``python -m mesh run DIR`` in its own process. The cluster
ends only the processes it started, by their pid, and every wait is bounded.

A cluster built with ``chaos_clock=True`` (the chaos harness's, nothing else)
starts every node with ``MESHNODE_CHAOS_CLOCK`` naming ``<data_dir>/chaos-clock.json``,
the test-only switch that lets ``mesh.chaos.faults`` skew that node's wall
clock (``mesh.clock``); any other cluster starts its nodes without it.

Likewise ``chaos_filter=True`` starts every node with ``MESHNODE_CHAOS_FILTER``
naming ``<data_dir>/chaos-filter.json`` (``mesh.fault_filter``): then
``block`` / ``unblock`` cut links between nodes without root, by writing the
peers each node must not talk to into its file. A TCP link needs both
directions, so a blocked pair is cut both ways (``one_way`` is False).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from crdt.errors import MeshError

from .client import Client, ClientError
from .clock import CHAOS_CLOCK_ENV, CHAOS_CLOCK_FILE
from .config import API_ADDR_FILE, MESH_KEY_FILE, Config
from .fault_filter import CHAOS_FILTER_ENV, CHAOS_FILTER_FILE


def meshnode_cmd(*args: str) -> list[str]:
    """argv running the meshnode CLI with this interpreter."""
    return [sys.executable, "-m", "mesh", *args]


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (MeshError, OSError, KeyError, ValueError) as exc:
            last_error = exc
        time.sleep(interval)
    raise MeshError(f"cluster: timed out after {timeout:g} s waiting for {what}"
                    + (f" (last error: {last_error})" if last_error else ""))


def chaos_clock_env(data_dir: Path) -> dict[str, str]:
    """The environment that points a node at its test-only clock skew file (chaos runs only)."""
    return {CHAOS_CLOCK_ENV: str(Path(data_dir) / CHAOS_CLOCK_FILE)}


@dataclass
class LocalNode:
    """One node of the cluster: its dir, its process and a client."""

    name: str
    data_dir: Path
    peer_id: str = ""
    join_addr: str = ""
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    extra: dict = field(default_factory=dict)

    def client(self, timeout: float = 30.0) -> Client:
        """A client for this node's API."""
        return Client(self.data_dir, timeout=timeout)

    @property
    def running(self) -> bool:
        """Whether our process is alive."""
        return self.proc is not None and self.proc.poll() is None


class NodeProcesses:
    """Waiting for, starting and stopping a set of node processes (``LocalCluster``, ``netlab.LanCluster``).

    A subclass has ``nodes`` (each with ``name``, ``proc``, ``running`` and ``client()``) and
    defines ``start(node)``; ``log_of(node)`` names the node's log for errors.
    """

    subsystem = "cluster"
    nodes: list

    def start(self, node: Any) -> None:
        """Start ``node``'s process."""
        raise NotImplementedError

    def log_of(self, node: Any) -> Path | None:
        """Where ``node``'s process logs."""
        return node.log_path

    def wait_api(self, node: Any, timeout: float = 60.0) -> None:
        """Wait until the node's API answers."""

        def ready() -> bool:
            if not node.running:
                raise MeshError(f"{self.subsystem}: {node.name} exited with {node.proc.returncode}; "
                                f"see {self.log_of(node)}")
            return bool(node.client(timeout=2).get("/status"))

        wait_for(ready, timeout, f"{node.name}'s API")

    def start_all(self, timeout: float = 60.0) -> None:
        """Start every node and wait for each API."""
        for node in self.nodes:
            self.start(node)
        for node in self.nodes:
            self.wait_api(node, timeout)

    def stop(self, node: Any, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal our process for ``node`` and wait for it; SIGKILL if it lingers."""
        proc = node.proc  # another thread (a chaos run's nemesis) may be stopping the same node
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if node.proc is proc:
            node.proc = None
        return proc.returncode


class LocalCluster(NodeProcesses):
    """Creates, starts and stops local nodes under ``root`` (``chaos_clock``: see the module doc)."""

    one_way = False  # see the module doc: ``block`` cuts a pair both ways

    def __init__(self, root: Path, *, env: dict[str, str] | None = None, chaos_clock: bool = False,
                 chaos_filter: bool = False) -> None:
        self.root = Path(root)
        self.nodes: list[LocalNode] = []
        self.chaos_clock = chaos_clock
        self.chaos_filter = chaos_filter
        self._cut: set[frozenset[int]] = set()  # node index pairs the fault filter cuts
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.env.pop(CHAOS_CLOCK_ENV, None)  # only chaos_clock turns the test-only switch on, per node
        self.env.pop(CHAOS_FILTER_ENV, None)  # and only chaos_filter the fault filter

    def init_node(self, name: str, *, tier: str = "edge", capabilities: tuple[str, ...] = (),
                  location: str = "", join: bool = True, extra_args: tuple[str, ...] = ()) -> LocalNode:
        """``meshnode init`` a node; it joins the first node unless it is the first."""
        data_dir = self.root / name
        args = ["init", str(data_dir), "--name", name, "--tier", tier, *extra_args]
        for cap in capabilities:
            args += ["--capability", cap]
        if location:
            args += ["--location", location]
        if self.nodes and join:
            first = self.nodes[0]
            args += ["--join", first.join_addr, "--mesh-key", str(first.data_dir / MESH_KEY_FILE)]
        out = subprocess.run(meshnode_cmd(*args), capture_output=True, text=True, env=self.env, timeout=60)
        if out.returncode != 0:
            raise MeshError(f"cluster: init {name} failed: {out.stderr.strip() or out.stdout.strip()}")
        fields = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
        node = LocalNode(name=name, data_dir=data_dir, peer_id=fields["peer id"], join_addr=fields["join address"])
        self.nodes.append(node)
        return node

    def start(self, node: LocalNode) -> None:
        """Start ``meshnode run`` for ``node`` (logs to ``<root>/<name>.log``)."""
        if node.running:
            return
        (node.data_dir / API_ADDR_FILE).unlink(missing_ok=True)
        node.log_path = self.root / f"{node.name}.log"
        log = open(node.log_path, "ab")
        env = dict(self.env, **chaos_clock_env(node.data_dir)) if self.chaos_clock else self.env
        if self.chaos_filter:
            env = dict(env, **{CHAOS_FILTER_ENV: str(node.data_dir / CHAOS_FILTER_FILE)})
        node.proc = subprocess.Popen(
            meshnode_cmd("run", str(node.data_dir)), stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )
        log.close()

    # -- partitions without root (``chaos_filter``) -------------------------------------------

    def block(self, src: int, dst: int) -> None:
        """Cut the link between nodes ``src`` and ``dst`` (both ways: see the module doc)."""
        self._need_filter()
        self._cut.add(frozenset((src, dst)))
        self._write_filters({src, dst})

    def unblock(self, src: int, dst: int) -> None:
        """Restore the link between nodes ``src`` and ``dst``."""
        self._need_filter()
        self._cut.discard(frozenset((src, dst)))
        self._write_filters({src, dst})

    def unblock_all(self) -> None:
        """Restore every link."""
        if self.chaos_filter:
            self._cut.clear()
            self._write_filters(set(range(len(self.nodes))))

    def netem(self, index: int, **shaping: float) -> None:
        """Not on this backend: shaping needs tc inside network namespaces."""
        raise MeshError("cluster: netem needs the network-namespace backend (root); this one is 127.0.0.1")

    def clear_netem(self, index: int) -> None:
        """Nothing to clear on this backend."""

    def _need_filter(self) -> None:
        if not self.chaos_filter:
            raise MeshError("cluster: cutting links without root needs a cluster built with chaos_filter=True")

    def _write_filters(self, indexes: set[int]) -> None:
        for i in sorted(indexes):
            others = [j for pair in self._cut if i in pair for j in pair if j != i]
            doc = {"peers": sorted(self.nodes[j].peer_id for j in others),
                   "raft": sorted(a for j in others if (a := self._raft_addr(self.nodes[j])))}
            path = self.nodes[i].data_dir / CHAOS_FILTER_FILE
            if not others:
                path.unlink(missing_ok=True)
                continue
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)  # a node never reads half a file

    def _raft_addr(self, node: LocalNode) -> str:
        if "raft_addr" not in node.extra:
            cfg = Config.load(node.data_dir)
            node.extra["raft_addr"] = f"{cfg.listen_host}:{cfg.raft.port}" if cfg.raft.port else ""
        return node.extra["raft_addr"]

    def stop_all(self) -> None:
        """Stop every node we started."""
        for node in self.nodes:
            self.stop(node)

    def wait_mesh(self, timeout: float = 60.0) -> None:
        """Wait until every running node sees every other running node alive."""
        live = [n for n in self.nodes if n.running]

        def formed() -> bool:
            for node in live:
                seen = {p["peer_id"] for p in node.client(timeout=2).get("/peers") if p["state"] == "alive"}
                if not {n.peer_id for n in live if n is not node} <= seen:
                    return False
            return True

        wait_for(formed, timeout, "every node to see every other", interval=0.2)

    def wait_leader(self, timeout: float = 60.0, voters: int = 3) -> str:
        """Wait until the running nodes have their voters and all agree on one leader.

        Returns the leader's peer id. ``voters`` is the mesh's ``raft.voters``.
        """
        live = [n for n in self.nodes if n.running]
        expected = min(len(live), voters)

        def agreed() -> str | None:
            leaders, voting = set(), 0
            for node in live:
                raft = node.client(timeout=2).get("/status")["raft"]
                if raft["role"] == "forwarder":
                    continue
                voting += 1
                leaders.add(raft["leader"])
            if voting < expected or len(leaders) != 1 or None in leaders:
                return None
            return leaders.pop()

        return wait_for(agreed, timeout, "one agreed Raft leader", interval=0.2)

    @classmethod
    @contextmanager
    def formed(cls, nodes: int, *, prefix: str = "meshnode-cluster-") -> Iterator["LocalCluster"]:
        """``nodes`` nodes named n0… in a temp dir, running and meshed; all removed afterwards."""
        root = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            with cls(root) as cluster:
                for i in range(nodes):
                    cluster.init_node(f"n{i}")
                cluster.start_all()
                cluster.wait_mesh()
                yield cluster
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


__all__ = ["ClientError", "LocalCluster", "LocalNode", "chaos_clock_env", "meshnode_cmd", "wait_for"]
