"""The benchmark suites run and report figures beside their baselines (no timing is asserted)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_rpc_bench_reports_both_sides_and_a_ratio():
    from bench import rpc

    base, mesh, ratio = rpc.run(n=20)
    assert base["calls"] == mesh["calls"] == 20
    assert base["name"] == "raw trio TCP" and mesh["name"].startswith("mesh RPC")
    assert ratio["p50"] > 0 and ratio["throughput"] > 0
