"""A private LAN of network namespaces with real ``meshnode`` processes in it (tests, benches, chaos).

Needs root and iproute2's ``ip``. Nothing touches the machine's own network:
one *switch* namespace holds two bridges (``br0``, where every host starts,
and ``br1``, the other side of a partition); each host gets its own namespace
whose ``eth0`` is one end of a veth pair, the other end (``p<i>``) a port of a
bridge in the switch namespace, with a 10.x address that exists nowhere else.

- ``partition(side)`` moves the ports of ``side`` to ``br1``: the two groups
  can no longer reach each other, each group still talks within itself.
- ``heal()`` moves every port back to ``br0``.
- ``block(src, dst)`` cuts one direction (a blackhole route for dst's /32 in
  src's namespace; no nftables needed), ``unblock_all()`` removes them;
  ``netem(i, ...)`` shapes what host i sends (tc netem on its eth0).
- ``close()`` stops the processes we started (by pid) and deletes our
  namespaces (which deletes the veths and bridges), even after a failure.

A node's HTTP API listens on its namespace's loopback; ``NetnsClient`` reaches
it through a socket created inside that namespace (``setns`` in a short-lived
thread: only that thread changes namespace; the socket keeps it).
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crdt.errors import MeshError

from .client import ClientError
from .clock import CHAOS_CLOCK_ENV
from .cluster import NodeProcesses, chaos_clock_env, wait_for
from .config import API_ADDR_FILE, MESH_KEY_FILE, NODE_FILE

IP = shutil.which("ip") or "/usr/sbin/ip"
TC = shutil.which("tc") or "/usr/sbin/tc"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip`` with ``args``; raises ``MeshError`` with its stderr when ``check`` and it fails."""
    out = subprocess.run([IP, *args], capture_output=True, text=True, timeout=20, check=False)
    if check and out.returncode != 0:
        raise MeshError(f"netlab: `ip {' '.join(args)}` failed: {out.stderr.strip()}")
    return out


def why_unavailable() -> str | None:
    """Why private network namespaces cannot be built here, or None if they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "creating network namespaces needs root"
    if not os.path.exists(IP):
        return "iproute2's `ip` is not installed"
    probe = f"labprobe{secrets.token_hex(3)}"
    try:
        made = ip("netns", "add", probe, check=False)
    except OSError as exc:
        return f"`ip netns` cannot run: {exc}"
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def why_no_netem() -> str | None:
    """Why tc netem cannot shape traffic here (no namespaces, no ``tc``, a kernel without it), or None if it can."""
    reason = why_unavailable()
    if reason:
        return reason
    if not os.path.exists(TC):
        return "iproute2's `tc` is not installed"
    probe = f"labprobe{secrets.token_hex(3)}"
    ip("netns", "add", probe)
    try:
        out = subprocess.run([TC, "-netns", probe, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                             capture_output=True, text=True, timeout=20, check=False)
    finally:
        ip("netns", "del", probe, check=False)
    if out.returncode != 0:
        return f"this kernel cannot run tc netem (CONFIG_NET_SCH_NETEM): {out.stderr.strip()}"
    return None


def socket_in(ns: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A TCP socket (or another ``kind``, e.g. ``socket.SOCK_DGRAM``) that lives in network namespace ``ns``."""
    result: dict[str, Any] = {}

    def make() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
                result["sock"] = socket.socket(socket.AF_INET, kind)
            finally:
                os.close(fd)
        except OSError as exc:  # handed to the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=make, name=f"netns-{ns}", daemon=True)
    worker.start()
    worker.join(10)
    if "error" in result:
        raise result["error"]
    if "sock" not in result:
        raise MeshError(f"netlab: no socket in {ns} within 10 s")
    return result["sock"]


class NetnsClient:
    """A node's HTTP API reached from outside its namespace (``get``/``post`` like ``mesh.client.Client``)."""

    def __init__(self, ns: str, data_dir: Path, timeout: float = 30.0) -> None:
        self.ns, self.data_dir, self.timeout = ns, Path(data_dir), timeout
        addr_file = self.data_dir / API_ADDR_FILE
        if not addr_file.exists():
            raise ClientError(f"client: no node is running in {self.data_dir}")
        text = addr_file.read_text().strip()
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit():
            raise ClientError(f"client: {addr_file} holds {text!r}, not host:port (is the node starting?)")
        self.addr = (host, int(port))

    def _request(self, method: str, path: str, body: bytes | None = None,
                 content_type: str = "application/json", raw: bool = False) -> Any:
        sock = socket_in(self.ns)
        conn = http.client.HTTPConnection(*self.addr, timeout=self.timeout)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.addr)
            conn.sock = sock
            headers = {"Content-Type": content_type} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as exc:
            sock.close()
            raise ClientError(f"client: no node answers in {self.data_dir} ({exc})") from None
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                message = json.loads(data)["error"]
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {resp.status}: {data[:200]!r}"
            raise ClientError(message)
        return data if raw else json.loads(data)

    def post_msgpack(self, path: str, body: dict) -> Any:
        """POST msgpack (tensors), return the decoded msgpack answer (as ``mesh.client.Client.post_msgpack``)."""
        from .wire import pack, unpack

        return unpack(self._request("POST", path, pack(body), content_type="application/msgpack", raw=True))

    def get(self, path: str, **params: str) -> Any:
        """GET a JSON document."""
        from urllib.parse import urlencode

        return self._request("GET", path + (("?" + urlencode(params)) if params else ""))

    def post(self, path: str, body: dict) -> Any:
        """POST a JSON object, return the JSON answer."""
        return self._request("POST", path, json.dumps(body).encode())


class Lan:
    """A switch namespace with two bridges and one namespace per host; everything torn down by ``close``."""

    def __init__(self, root: Path, *, prefix: str = "lab", subnet: str = "10.77.0") -> None:
        self.root = Path(root)
        self.tag = secrets.token_hex(3)
        self.prefix, self.subnet = prefix, subnet
        self.switch = f"{prefix}{self.tag}sw"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.ports: dict[int, str] = {}  # host index -> its bridge
        self.blocked: set[tuple[int, int]] = set()  # (src, dst) host pairs cut by block()
        self.shaped: set[int] = set()  # hosts with a netem qdisc

    def build_switch(self) -> None:
        """The switch namespace with ``br0`` and ``br1``."""
        ip("netns", "add", self.switch)
        self.namespaces.append(self.switch)
        for bridge in ("br0", "br1"):
            # Snooping off: with no IGMP querier on this LAN the bridge must flood multicast (mDNS).
            ip("-n", self.switch, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0")
            ip("-n", self.switch, "link", "set", bridge, "up")

    def add_host(self, index: int) -> tuple[str, str]:
        """A namespace with eth0 on ``br0``; returns (namespace, address)."""
        ns = f"{self.prefix}{self.tag}n{index}"
        addr = f"{self.subnet}.{index + 1}"
        ip("netns", "add", ns)
        self.namespaces.append(ns)
        port = f"p{index}"
        # Both ends are created inside namespaces: nothing touches the machine's own network.
        ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "multicast", "on", "up")
        ip("-n", ns, "link", "set", "lo", "up")  # the node's HTTP API listens on this namespace's loopback
        self.ports[index] = "br0"
        return ns, addr

    def partition(self, side: list[int]) -> None:
        """Cut the hosts in ``side`` off from the others (each group still reaches itself)."""
        for index in self.ports:
            self._move(index, "br1" if index in side else "br0")

    def heal(self) -> None:
        """Every host back on one bridge."""
        for index in self.ports:
            self._move(index, "br0")

    def _move(self, index: int, bridge: str) -> None:
        if self.ports[index] != bridge:
            ip("-n", self.switch, "link", "set", f"p{index}", "master", bridge)
            self.ports[index] = bridge

    def meshnode(self, ns: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the meshnode CLI inside ``ns``."""
        return subprocess.run([IP, "netns", "exec", ns, sys.executable, "-m", "mesh", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, ns: str, data_dir: Path, *, env: dict[str, str] | None = None) -> subprocess.Popen:
        """``meshnode run`` inside ``ns`` (``ip netns exec`` execs it: the pid is the node's), ``env`` added."""
        (data_dir / API_ADDR_FILE).unlink(missing_ok=True)
        base = {k: v for k, v in os.environ.items() if k != CHAOS_CLOCK_ENV}  # the test-only switch: only via env
        with open(self.root / f"{data_dir.name}.log", "ab") as log:
            proc = subprocess.Popen(
                [IP, "netns", "exec", ns, sys.executable, "-m", "mesh", "run", str(data_dir)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=dict(base, PYTHONUNBUFFERED="1", **(env or {})),
            )
        self.procs.append(proc)
        return proc

    def host_ns(self, index: int) -> str:
        """The namespace of host ``index`` (which must exist)."""
        if index not in self.ports:
            raise MeshError(f"netlab: no host {index}; hosts are {sorted(self.ports)}")
        return f"{self.prefix}{self.tag}n{index}"

    def address(self, index: int) -> str:
        """Host ``index``'s address on the LAN."""
        self.host_ns(index)
        return f"{self.subnet}.{index + 1}"

    def block(self, src: int, dst: int) -> None:
        """Host ``src`` can no longer send to host ``dst`` (a blackhole route for dst's /32 in src's namespace).

        Packet filtering without nftables: the longest-prefix route wins over the
        LAN's /24, so src's packets to dst are dropped while dst still sends to
        src. Both ways blocked is a symmetric cut; TCP needs both ways.
        """
        if src == dst:
            raise MeshError(f"netlab: a host cannot be blocked from itself ({src})")
        ip("-n", self.host_ns(src), "route", "replace", "blackhole", f"{self.address(dst)}/32")
        self.blocked.add((src, dst))

    def unblock(self, src: int, dst: int) -> None:
        """Undo ``block(src, dst)`` (no-op when not blocked)."""
        if (src, dst) in self.blocked:
            ip("-n", self.host_ns(src), "route", "del", "blackhole", f"{self.address(dst)}/32", check=False)
            self.blocked.discard((src, dst))

    def unblock_all(self) -> None:
        """Remove every route ``block`` added."""
        for src, dst in sorted(self.blocked):
            self.unblock(src, dst)

    def routes(self, index: int) -> list[str]:
        """Host ``index``'s routing table, one route a line (to check what is installed)."""
        return ip("-n", self.host_ns(index), "route", "show", "table", "all").stdout.splitlines()

    def tc(self, index: int, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``tc`` inside host ``index``'s namespace."""
        out = subprocess.run([TC, "-netns", self.host_ns(index), *args],
                             capture_output=True, text=True, timeout=20, check=False)
        if check and out.returncode != 0:
            raise MeshError(f"netlab: `tc {' '.join(args)}` failed: {out.stderr.strip()}")
        return out

    def netem(self, index: int, *, delay_ms: float = 0, jitter_ms: float = 0, loss_pct: float = 0,
              duplicate_pct: float = 0, reorder_pct: float = 0) -> None:
        """Shape what host ``index`` sends with tc netem on its eth0 (replaces any earlier shaping)."""
        if jitter_ms and not delay_ms:
            raise MeshError("netlab: netem jitter needs a delay; set delay_ms too")
        if reorder_pct and not delay_ms:
            raise MeshError("netlab: netem reordering needs a delay (reordered packets skip it); set delay_ms")
        args = ["qdisc", "replace", "dev", "eth0", "root", "netem"]
        if delay_ms:
            args += ["delay", f"{delay_ms:g}ms"] + ([f"{jitter_ms:g}ms"] if jitter_ms else [])
        if loss_pct:
            args += ["loss", f"{loss_pct:g}%"]
        if duplicate_pct:
            args += ["duplicate", f"{duplicate_pct:g}%"]
        if reorder_pct:
            args += ["reorder", f"{reorder_pct:g}%"]
        out = self.tc(index, *args, check=False)
        if out.returncode != 0:
            hint = (" (this kernel has no netem: CONFIG_NET_SCH_NETEM; see why_no_netem())"
                    if "qdisc kind is unknown" in out.stderr else "")
            raise MeshError(f"netlab: `tc {' '.join(args)}` failed: {out.stderr.strip()}{hint}")
        self.shaped.add(index)

    def clear_netem(self, index: int) -> None:
        """Host ``index`` back to its default queueing (no-op when not shaped)."""
        if index in self.shaped:
            self.tc(index, "qdisc", "del", "dev", "eth0", "root", check=False)
            self.shaped.discard(index)

    def qdisc(self, index: int) -> str:
        """``tc qdisc show dev eth0`` in host ``index``'s namespace."""
        return self.tc(index, "qdisc", "show", "dev", "eth0").stdout

    def close(self) -> None:
        """Stop our processes (by pid), then delete our namespaces (which deletes the veths)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for ns in reversed(self.namespaces):
            ip("netns", "del", ns, check=False)

    def leftover(self) -> set[str]:
        """Our namespaces that still exist (empty after ``close``)."""
        return set(ip("netns", "list").stdout.split()) & set(self.namespaces)


@dataclass
class LabNode:
    """One node of a ``LanCluster``."""

    name: str
    index: int
    ns: str
    addr: str
    data_dir: Path
    peer_id: str = ""
    join_addr: str = ""
    proc: subprocess.Popen | None = None

    def client(self, timeout: float = 30.0) -> NetnsClient:
        """A client for this node's API."""
        return NetnsClient(self.ns, self.data_dir, timeout)

    @property
    def running(self) -> bool:
        """Whether our process is alive."""
        return self.proc is not None and self.proc.poll() is None


class LanCluster(NodeProcesses):
    """N real nodes, each in its own namespace on one ``Lan``, joined to node 0; ``close`` ends it all.

    ``chaos_clock=True`` (chaos runs only) starts every node with the test-only
    ``MESHNODE_CHAOS_CLOCK`` switch on, naming its own skew file (``mesh.clock``).
    """

    subsystem = "netlab"

    def __init__(self, root: Path, *, prefix: str = "lab", subnet: str = "10.77.0",
                 chaos_clock: bool = False) -> None:
        self.root = Path(root)
        self.chaos_clock = chaos_clock
        self.lan = Lan(self.root, prefix=prefix, subnet=subnet)
        self.nodes: list[LabNode] = []
        self.lan.build_switch()

    def add_node(self, *, mdns: bool = False, sync_interval: float | None = None) -> LabNode:
        """Create a host and ``meshnode init`` a node on it (joined to node 0, unless it is node 0)."""
        index = len(self.nodes)
        ns, addr = self.lan.add_host(index)
        node = LabNode(name=f"n{index}", index=index, ns=ns, addr=addr, data_dir=self.root / f"n{index}")
        args = ["init", str(node.data_dir), "--name", node.name, "--listen", f"/ip4/{addr}/tcp/0"]
        if self.nodes:
            first = self.nodes[0]
            args += ["--join", first.join_addr, "--mesh-key", str(first.data_dir / MESH_KEY_FILE)]
        out = self.lan.meshnode(ns, *args)
        if out.returncode != 0:
            raise MeshError(f"netlab: init {node.name} failed: {out.stderr.strip() or out.stdout.strip()}")
        fields = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
        node.peer_id, node.join_addr = fields["peer id"], fields["join address"]
        config = node.data_dir / NODE_FILE
        text = config.read_text()
        if not mdns:
            text = text.replace("mdns: true", "mdns: false")  # join addresses only: fewer threads, no multicast
        if sync_interval is not None:
            text = text.replace("interval: 0.5", f"interval: {sync_interval}")
        config.write_text(text)
        self.nodes.append(node)
        return node

    def start(self, node: LabNode) -> None:
        """Start ``meshnode run`` for ``node`` in its namespace."""
        if not node.running:
            env = chaos_clock_env(node.data_dir) if self.chaos_clock else None
            node.proc = self.lan.start(node.ns, node.data_dir, env=env)

    def alive_peers(self, node: LabNode) -> set[str]:
        """Peer ids ``node`` sees alive."""
        return {p["peer_id"] for p in node.client(timeout=5).get("/peers") if p["state"] == "alive"}

    def wait_mesh(self, timeout: float = 60.0, nodes: list[LabNode] | None = None) -> None:
        """Wait until each of ``nodes`` (default: all running) sees the others alive."""
        group = nodes if nodes is not None else [n for n in self.nodes if n.running]

        def formed() -> bool:
            return all({n.peer_id for n in group if n is not node} <= self.alive_peers(node) for node in group)

        wait_for(formed, timeout, "every node to see every other", interval=0.2)

    def partition(self, side: list[LabNode]) -> None:
        """Cut ``side`` off from the other nodes."""
        self.lan.partition([n.index for n in side])

    def heal(self) -> None:
        """Reconnect every node."""
        self.lan.heal()

    def address(self, index: int) -> str:
        """Node ``index``'s address on the LAN."""
        return self.lan.address(index)

    def block(self, src_index: int, dst_index: int) -> None:
        """Node ``src_index`` can no longer send to node ``dst_index`` (see ``Lan.block``)."""
        self.lan.block(src_index, dst_index)

    def unblock(self, src_index: int, dst_index: int) -> None:
        """Undo ``block(src_index, dst_index)``."""
        self.lan.unblock(src_index, dst_index)

    def unblock_all(self) -> None:
        """Remove every block."""
        self.lan.unblock_all()

    def netem(self, index: int, **shaping: float) -> None:
        """Delay, jitter, loss, duplication or reordering on what node ``index`` sends (see ``Lan.netem``)."""
        self.lan.netem(index, **shaping)

    def clear_netem(self, index: int) -> None:
        """Node ``index`` sends unshaped again."""
        self.lan.clear_netem(index)

    def log(self, node: LabNode) -> Path:
        """Where ``node`` logs."""
        return self.root / f"{node.name}.log"

    log_of = log

    def log_tails(self, lines: int = 25) -> str:
        """The end of every node's log (for a failing test's output)."""
        parts = []
        for node in self.nodes:
            path = self.log(node)
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {node.name} log (tail) ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def close(self) -> None:
        """Stop every node and delete every namespace (safe to call after a failure, and twice)."""
        self.lan.close()
        for node in self.nodes:
            node.proc = None


def time_until(check, timeout: float, interval: float = 0.02) -> float | None:
    """Seconds until ``check()`` is truthy (polled), or None after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except (MeshError, OSError):
            pass
        time.sleep(interval)
    return None


__all__ = ["LabNode", "Lan", "LanCluster", "NetnsClient", "ip", "socket_in", "time_until", "why_no_netem",
           "why_unavailable"]
