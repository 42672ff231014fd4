"""How much of its CPU this node uses: the fact behind "a busy node passes requests on rather than run them".

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


def _quota(proc_cgroup: Path, root: Path) -> float | None:
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.lstrip("/")
        if "cpu" in controllers.split(","):  # cgroup v1
            for base in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
                found = _read_v1(base / rel)
                if found is not None:
                    return found
        elif controllers == "":  # cgroup v2
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
