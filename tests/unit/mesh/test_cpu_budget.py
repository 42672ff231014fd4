"""The node's CPU budget: affinity capped by a cgroup quota (v1 and v2 layouts), and its use against it."""

from __future__ import annotations

import os

from mesh.cpu_budget import RELIEVED, SATURATED, CpuUse, cpu_budget


def cores() -> int:
    return len(os.sched_getaffinity(0))


def test_a_v1_quota_caps_the_budget(tmp_path):
    (tmp_path / "cg").write_text("9:cpu,cpuacct:/slice/node\n8:pids:/\n")
    d = tmp_path / "root" / "cpu" / "slice" / "node"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("25000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_budget(tmp_path / "cg", tmp_path / "root") == min(cores(), 0.25)


def test_a_v2_quota_caps_the_budget_and_max_means_none(tmp_path):
    (tmp_path / "cg").write_text("0::/node\n")
    d = tmp_path / "root" / "node"
    d.mkdir(parents=True)
    (d / "cpu.max").write_text("50000 100000\n")
    assert cpu_budget(tmp_path / "cg", tmp_path / "root") == min(cores(), 0.5)
    (d / "cpu.max").write_text("max 100000\n")
    assert cpu_budget(tmp_path / "cg", tmp_path / "root") == cores()


def test_no_quota_or_unreadable_files_leave_the_affinity(tmp_path):
    assert cpu_budget(tmp_path / "missing", tmp_path) == cores()
    (tmp_path / "cg").write_text("9:cpu:/x\ngarbage\n")
    d = tmp_path / "cpu" / "x"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("-1\n")  # v1: no quota
    (d / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_budget(tmp_path / "cg", tmp_path) == cores()


def test_use_is_measured_against_the_budget():
    use = CpuUse(budget=0.001)  # a tiny budget: any work at all saturates it
    use._last = (use._last[0] - 2.0, use._last[1] - 0.5)  # as if 0.5 s of CPU went in the last 2 s
    assert use.sample() >= SATURATED and use.saturated
    idle = CpuUse(budget=1000.0)
    idle._last = (idle._last[0] - 2.0, idle._last[1])
    assert idle.sample() < SATURATED and not idle.saturated


def test_saturation_holds_until_the_use_falls_well_below():
    use = CpuUse(budget=1.0)

    def window(fraction: float) -> bool:
        use._last = (use._last[0] - 1.0, use._last[1] - fraction)
        use.sample()
        return use.saturated

    assert window(SATURATED + 0.05)
    assert window((SATURATED + RELIEVED) / 2)  # passing requests on lowered it, not enough to let go
    assert not window(RELIEVED / 2)
    assert not window((SATURATED + RELIEVED) / 2)


def test_memory_is_what_the_system_has_capped_by_a_cgroup_limit(tmp_path):
    from mesh.cpu_budget import memory_available

    (tmp_path / "meminfo").write_text("MemTotal: 8000000 kB\nMemAvailable: 4000000 kB\n")
    (tmp_path / "cg").write_text("5:memory:/node\n")
    d = tmp_path / "root" / "memory" / "node"
    d.mkdir(parents=True)
    (d / "memory.limit_in_bytes").write_text(str(1_000_000_000))
    (d / "memory.usage_in_bytes").write_text(str(400_000_000))
    assert memory_available(tmp_path / "meminfo", tmp_path / "cg", tmp_path / "root") == 600_000_000
    (d / "memory.limit_in_bytes").write_text(str(2**63 - 4096))  # v1's "no limit"
    assert memory_available(tmp_path / "meminfo", tmp_path / "cg", tmp_path / "root") == 4_096_000_000
    assert memory_available(tmp_path / "missing", tmp_path / "cg", tmp_path / "root") is None
