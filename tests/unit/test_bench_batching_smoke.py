"""The batching benchmark runs and reports single and batched figures with their ratio (no timing is asserted)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_batching_bench_reports_both_sides_and_a_ratio_per_batch_size():
    from bench import batching

    rows = batching.run(runs=1, repeats=1, batches=(1, 2), models=["mobilenet_v2 width 0.5"])
    assert [row["name"] for row in rows] == ["mobilenet_v2 width 0.5: B=1", "mobilenet_v2 width 0.5: B=2"]
    for row in rows:
        assert row["single_ms"] > 0 and row["batched_ms"] > 0 and row["batched/single"] > 0
