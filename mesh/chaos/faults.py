"""The chaos harness's fault injector: turns a scheduled ``Fault`` into netlab calls, process signals and clock files.

Theory of operation
-------------------
``apply(fault, cluster, resolve_leader)`` starts a fault and ``heal(injection.fault,
cluster)`` ends it; both return what they actually did, one line per action, for
the report. The fault that ``apply`` returns in its ``Injection`` has the leader
resolved (the leader may change while the fault is in force, so ``heal`` must be
given the resolved fault, never the scheduled one).

- Partitions: every directed pair of ``nemesis.blocked_pairs`` becomes a
  blackhole route for dst's address in src's namespace (``LanCluster.block``);
  heal removes exactly those routes.
- netem: ``tc qdisc replace ... netem`` on each target's eth0; heal deletes it.
- kill: SIGKILL each target (by the pid we started); heal starts them again.
- pause: SIGSTOP each target; heal sends SIGCONT. Schedules keep a pause longer
  than the election timeout (``nemesis.PAUSE_MIN_S``).
- restart-all: SIGTERM every node (graceful); heal starts them all again.
- membership: the halves partition, then either the run's spare node
  (``cluster.spare``, created but never started) is started and joins the
  mesh for good (it becomes one of ``cluster.nodes``), or, once the spare has
  joined, the target is stopped with SIGTERM (a graceful leave: it hands over
  its vote) and started again at the heal.
- clock-jump / clock-drift: write each target's skew file
  (``<data_dir>/chaos-clock.json``, a temp file ``os.replace``-d in, so a node
  never reads half of one) with ``since`` = now; heal removes it, which the
  node reads as no skew within ``mesh.clock.RELOAD_S``. A node reads the file
  only if it was started with ``MESHNODE_CHAOS_CLOCK`` pointing at it, which
  ``LocalCluster`` and ``LanCluster`` do only when built with
  ``chaos_clock=True``; on any other cluster a clock fault is refused, since
  it would silently do nothing.

Network faults need the network-namespace backend (``mesh.netlab.LanCluster``,
root); process faults also work on a plain ``mesh.cluster.LocalCluster``.
Nothing here waits for the cluster to recover: the runner does that.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from crdt.errors import MeshError

from ..clock import CHAOS_CLOCK_FILE, Skew
from .nemesis import Fault, blocked_pairs, resolve


@dataclass(frozen=True, slots=True, kw_only=True)
class Injection:
    """A fault as applied: the fault with its leader resolved, and what was done."""

    fault: Fault
    actions: tuple[str, ...]


def _by_name(cluster: Any) -> dict[str, tuple[int, Any]]:
    return {node.name: (index, node) for index, node in enumerate(cluster.nodes)}


def _node(cluster: Any, name: str) -> tuple[int, Any]:
    nodes = _by_name(cluster)
    if name not in nodes:
        raise MeshError(f"chaos: the fault names {name!r}, which is not a node of this cluster {sorted(nodes)}")
    return nodes[name]


def _need_network(fault: Fault, cluster: Any) -> None:
    if not hasattr(cluster, "block") or not hasattr(cluster, "netem"):
        raise MeshError(f"chaos: {fault.kind} needs the network-namespace backend (root, mesh.netlab.LanCluster); "
                        "without it choose process nemeses only: kill, pause, restart-all")


def _need_clock(fault: Fault, cluster: Any) -> None:
    if not getattr(cluster, "chaos_clock", False):
        raise MeshError(f"chaos: {fault.kind} needs a cluster built with chaos_clock=True (LocalCluster(..., "
                        "chaos_clock=True) or LanCluster(..., chaos_clock=True)); its nodes would never read the skew")


def clock_file(node: Any) -> Path:
    """Where ``node`` reads its test-only clock skew (``MESHNODE_CHAOS_CLOCK`` names this path)."""
    return Path(node.data_dir) / CHAOS_CLOCK_FILE


def set_skew(node: Any, skew: Skew) -> None:
    """Write ``node``'s skew file atomically (temp file, then ``os.replace``)."""
    path = clock_file(node)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(skew.to_json())
    os.replace(tmp, path)


def clear_skew(node: Any) -> bool:
    """Remove ``node``'s skew file (its clock is true again); whether there was one."""
    path = clock_file(node)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def apply(fault: Fault, cluster: Any, resolve_leader: Callable[[], int] | None = None) -> Injection:
    """Start ``fault`` on ``cluster`` (``resolve_leader()`` gives the leader's node index when needed)."""
    names = [node.name for node in cluster.nodes]
    if fault.needs_leader:
        if resolve_leader is None:
            raise MeshError(f"chaos: {fault.kind} targets the leader but no resolve_leader was given")
        index = resolve_leader()
        if not 0 <= index < len(names):
            raise MeshError(f"chaos: resolve_leader gave node index {index}; the cluster has {len(names)} nodes")
        fault = resolve(fault, names[index], names)
    actions: list[str] = []
    if fault.network:
        _need_network(fault, cluster)
    if fault.kind.startswith("partition-"):
        for src, dst in sorted(blocked_pairs(fault, names)):
            cluster.block(_node(cluster, src)[0], _node(cluster, dst)[0])
            actions.append(f"block {src}->{dst}")
    elif fault.kind == "membership":
        for src, dst in sorted(blocked_pairs(fault, names)):
            cluster.block(_node(cluster, src)[0], _node(cluster, dst)[0])
            actions.append(f"block {src}->{dst}")
        fault, done = _change_membership(fault, cluster)
        actions += done
    elif fault.kind == "netem":
        shaping = fault.netem()
        for name in fault.targets:
            cluster.netem(_node(cluster, name)[0], **shaping)
            actions.append(f"netem {name} " + " ".join(f"{k}={v:g}" for k, v in fault.params))
    elif fault.kind in ("kill", "restart-all"):
        sig = signal.SIGKILL if fault.kind == "kill" else signal.SIGTERM
        for name in fault.targets:
            _, node = _node(cluster, name)
            if node.running:
                pid = node.proc.pid
                code = cluster.stop(node, sig)
                actions.append(f"{sig.name} {name} pid {pid} (exit {code})")
            else:
                actions.append(f"{sig.name} {name}: not running, nothing to stop")
    elif fault.kind == "pause":
        for name in fault.targets:
            _, node = _node(cluster, name)
            if node.running:
                node.proc.send_signal(signal.SIGSTOP)
                actions.append(f"SIGSTOP {name} pid {node.proc.pid}")
            else:
                actions.append(f"SIGSTOP {name}: not running, nothing to pause")
    elif fault.clock:
        _need_clock(fault, cluster)
        offset, drift = fault.skew()
        since = time.time()  # the real clock the nodes' skew is counted from (same machine)
        for name in fault.targets:
            set_skew(_node(cluster, name)[1], Skew(offset_s=offset, drift=drift, since=since))
            actions.append(f"clock {name} offset {offset:+g} s drift {drift:+g} s/s")
    return Injection(fault=fault, actions=tuple(actions))


def _change_membership(fault: Fault, cluster: Any) -> tuple[Fault, list[str]]:
    """Bring the spare in (the first time), else make the target leave gracefully; the fault says which."""
    spare = getattr(cluster, "spare", None)
    if spare is not None:
        cluster.spare = None
        cluster.nodes.append(spare)  # from now on one of the nodes: workloads, heals and checks include it
        cluster.start(spare)
        return replace(fault, mode="join", targets=(spare.name,)), [f"join {spare.name} (a new node) pid {spare.proc.pid}"]
    name = fault.targets[0]
    _, node = _node(cluster, name)
    if not node.running:
        return replace(fault, mode="leave"), [f"leave {name}: not running, nothing to stop"]
    pid = node.proc.pid
    code = cluster.stop(node, signal.SIGTERM)  # graceful: it hands over its vote and says goodbye
    return replace(fault, mode="leave"), [f"leave {name}: SIGTERM pid {pid} (exit {code})"]


def heal(fault: Fault, cluster: Any) -> tuple[str, ...]:
    """End ``fault`` (the resolved one from ``Injection.fault``); returns what was done."""
    if fault.needs_leader:
        raise MeshError("chaos: heal the resolved fault (Injection.fault), not the scheduled one")
    names = [node.name for node in cluster.nodes]
    actions: list[str] = []
    if fault.network:
        _need_network(fault, cluster)
    if fault.kind.startswith("partition-"):
        for src, dst in sorted(blocked_pairs(fault, names)):
            cluster.unblock(_node(cluster, src)[0], _node(cluster, dst)[0])
            actions.append(f"unblock {src}->{dst}")
    elif fault.kind == "membership":
        for src, dst in sorted(blocked_pairs(fault, names)):
            cluster.unblock(_node(cluster, src)[0], _node(cluster, dst)[0])
            actions.append(f"unblock {src}->{dst}")
        name = fault.targets[0]
        _, node = _node(cluster, name)
        if fault.mode == "leave" and not node.running:
            cluster.start(node)
            actions.append(f"rejoin {name} pid {node.proc.pid}")
        elif fault.mode == "join":
            actions.append(f"{name} stays in the mesh")
    elif fault.kind == "netem":
        for name in fault.targets:
            cluster.clear_netem(_node(cluster, name)[0])
            actions.append(f"clear netem {name}")
    elif fault.kind in ("kill", "restart-all"):
        for name in fault.targets:
            _, node = _node(cluster, name)
            if not node.running:
                cluster.start(node)
                actions.append(f"start {name} pid {node.proc.pid}")
    elif fault.kind == "pause":
        for name in fault.targets:
            _, node = _node(cluster, name)
            if node.running:
                node.proc.send_signal(signal.SIGCONT)
                actions.append(f"SIGCONT {name} pid {node.proc.pid}")
    elif fault.clock:
        for name in fault.targets:
            clear_skew(_node(cluster, name)[1])
            actions.append(f"clock {name} reset")
    return tuple(actions)


def heal_all(cluster: Any) -> tuple[str, ...]:
    """Undo whatever may be left (safety net before the quiet period): links, shaping, clocks, pauses, stopped nodes."""
    actions: list[str] = []
    reset = [node.name for node in cluster.nodes if getattr(node, "data_dir", None) is not None and clear_skew(node)]
    if reset:
        actions.append(f"clock reset {','.join(reset)}")
    if hasattr(cluster, "unblock_all"):
        cluster.unblock_all()
        actions.append("unblock all")
        for index in range(len(cluster.nodes)):
            cluster.clear_netem(index)
        actions.append("clear netem on all")
    for node in cluster.nodes:
        if node.running:
            node.proc.send_signal(signal.SIGCONT)  # harmless when it was not stopped
        else:
            cluster.start(node)
            actions.append(f"start {node.name} pid {node.proc.pid}")
    return tuple(actions)


__all__ = ["Injection", "apply", "clear_skew", "clock_file", "heal", "heal_all", "set_skew"]
