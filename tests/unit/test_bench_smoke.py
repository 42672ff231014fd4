"""The benchmark suites run and report figures beside their baselines (no timing is asserted)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_rpc_bench_reports_both_sides_and_a_ratio():
    from bench import rpc

    rows = rpc.run(n=20, bulk_n=2)
    base, mesh, ratio = rows[:3]
    assert len(rows) == 9 and all(r["MB_per_s"] > 0 for r in rows[3:5] + rows[6:8])
    assert base["calls"] == mesh["calls"] == 20
    assert base["name"] == "raw trio TCP" and mesh["name"].startswith("mesh RPC")
    assert ratio["p50"] > 0 and ratio["throughput"] > 0
