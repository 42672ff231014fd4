"""This node's budget: how much of its CPU it uses (a busy node passes requests on rather than run them),
and how much memory it could still take (placement does not put a model on a node without room for it).

A node may run on a fraction of a machine: pinned to some cores
(``sched_getaffinity``) or under a CPU quota (cgroup v1 ``cpu.cfs_quota_us``
/ ``cpu.cfs_period_us``, or cgroup v2 ``cpu.max``), as containers, systemd
slices and small VMs do. Its budget is the smaller of the two, in cores. Its
use is the process's CPU time (all threads: onnxruntime's, libp2p's, the
event loop's) per wall second over the last sampling window. Saturated means
the use reached ``SATURATED`` of the budget and has not fallen below
``RELIEVED`` since: then every ms this node computes is a ms it does not spend
passing other requests on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SATURATED = 0.85  # of the budget: at or above this, the node counts as CPU-bound ...
RELIEVED = 0.6  # ... until its use falls below this (hysteresis: passing everything on lowers the use,
# and a node that flipped back at once would run requests here again and saturate again)
WINDOW = 1.0  # seconds per sample


def cpu_budget(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> float:
    """Cores this process may use: its affinity, capped by a cgroup CPU quota when one is set."""
    try:
        cores = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = float(os.cpu_count() or 1)
    quota = _quota(proc_cgroup, root)
    return min(cores, quota) if quota else cores


def _cgroups(proc_cgroup: Path) -> list[tuple[list[str], str]]:
    """(controllers, path relative to the hierarchy root) per line of /proc/self/cgroup; [] if unreadable.

    Controllers are empty for the cgroup v2 line.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            out.append(([c for c in parts[1].split(",") if c], parts[2].lstrip("/")))
    return out


def _quota(proc_cgroup: Path, root: Path) -> float | None:
    for controllers, rel in _cgroups(proc_cgroup):
        if "cpu" in controllers:  # cgroup v1
            for base in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
                found = _read_v1(base / rel)
                if found is not None:
                    return found
        elif not controllers:  # cgroup v2
            for base in (root, root / "unified"):
                found = _read_v2(base / rel / "cpu.max")
                if found is not None:
                    return found
    return None


def _read_v1(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read_v2(path: Path) -> float | None:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period) if int(period) > 0 else None
    except ValueError:
        return None


def memory_available(meminfo: Path = Path("/proc/meminfo"), proc_cgroup: Path = Path("/proc/self/cgroup"),
                     root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process could still allocate: MemAvailable, capped by a cgroup memory limit's headroom.

    None when the system does not say (not Linux): placement then counts the node as having enough.
    """
    try:
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None
    for controllers, rel in _cgroups(proc_cgroup):
        if "memory" in controllers:
            limit, usage = root / "memory" / rel / "memory.limit_in_bytes", root / "memory" / rel / "memory.usage_in_bytes"
        elif not controllers:
            limit, usage = root / rel / "memory.max", root / rel / "memory.current"
        else:
            continue
        try:
            cap, used = limit.read_text().strip(), int(usage.read_text())
        except (OSError, ValueError):
            continue
        if cap.isdigit() and int(cap) < 2**60:  # v1 writes a huge number for "no limit", v2 "max"
            available = min(available, max(0, int(cap) - used))
    return available


class CpuUse:
    """The process's CPU use over the last window, as a fraction of its budget (``sample`` it now and then)."""

    def __init__(self, budget: float | None = None) -> None:
        self._fixed = budget
        self.budget = budget if budget is not None else cpu_budget()
        self._last = (time.monotonic(), time.process_time())
        self.fraction = 0.0
        self._saturated = False

    def sample(self) -> float:
        """Update and return the fraction of the budget used since the last sample (at most every WINDOW s).

        The budget is read again each window: a process can be moved into a
        cgroup, or have its quota or affinity changed, while it runs.
        """
        wall, cpu = time.monotonic(), time.process_time()
        dw = wall - self._last[0]
        if dw >= WINDOW:
            if self._fixed is None:
                self.budget = cpu_budget()
            self.fraction = max(0.0, (cpu - self._last[1]) / dw / self.budget)
            self._last = (wall, cpu)
            if self.fraction >= SATURATED:
                self._saturated = True
            elif self.fraction < RELIEVED:
                self._saturated = False
        return self.fraction

    @property
    def saturated(self) -> bool:
        """CPU-bound: a window reached SATURATED of the budget and none since fell below RELIEVED."""
        return self._saturated
