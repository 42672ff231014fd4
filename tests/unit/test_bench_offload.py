"""The skewed-load benchmark's pure helpers: percentiles, CPU quotas, pinning, load summaries (no timing)."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from bench.offload import (
    CpuQuota,
    LoadResult,
    assign_cpus,
    cfs_quota_us,
    offload_off_settings,
    percentile,
    stat_cpu_seconds,
)
from crdt.errors import MeshError


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # order of arrival does not matter
    assert math.isnan(percentile([], 50))


@pytest.mark.parametrize("q", [0, -1, 101])
def test_percentile_refuses_a_rank_outside_0_100(q):
    with pytest.raises(MeshError, match="^bench: percentile"):
        percentile([1.0], q)


def test_quota_is_cores_times_the_period():
    assert cfs_quota_us(0.25, available=2) == 25_000
    assert cfs_quota_us(0.9, available=2) == 90_000
    assert cfs_quota_us(2, available=2) == 200_000
    assert cfs_quota_us(0.5, period_us=50_000, available=2) == 25_000


@pytest.mark.parametrize("cores", [0, -0.5, 3, math.nan, math.inf, "1", True, 0.005])
def test_quota_refuses_what_the_machine_cannot_give(cores):
    with pytest.raises(MeshError, match="^bench: CPU quota"):
        cfs_quota_us(cores, available=2)


def test_cgroup_refuses_a_bad_quota_before_touching_the_filesystem(tmp_path):
    with pytest.raises(MeshError, match="^bench: CPU quota"):
        CpuQuota("n0", 0, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cpus_go_largest_quota_first_onto_the_least_loaded():
    # Rule: each node (largest quota first) goes on the CPU holding the least quota so far.
    assert assign_cpus((0.25, 0.5, 0.9), 2) == [1, 1, 0]
    assert assign_cpus((0.5, 0.5, 0.5, 0.5), 2) == [0, 1, 0, 1]
    assert assign_cpus((0.3,), 4) == [0]
    with pytest.raises(MeshError, match="^bench: need at least one CPU"):
        assign_cpus((0.3,), 0)


def test_load_summary_counts_answers_errors_and_where_they_ran():
    result = LoadResult(seconds=2.0, latencies_ms=[10.0, 20.0, 30.0, 40.0],
                        ran_on=Counter({"n1": 3, "n0": 1}), errors=Counter({"HTTP 503: busy": 2}),
                        client_cpu_s=0.5)
    summary = result.summary()
    assert summary["req_s"] == 2.0 and summary["ok"] == 4 and summary["errors"] == 2
    assert summary["p50_ms"] == 20.0 and summary["p99_ms"] == 40.0
    assert summary["ran_on"] == {"n0": 1, "n1": 3}
    assert summary["client_cpu"] == 0.25
    assert summary["first_errors"] == ["HTTP 503: busy"]
    empty = LoadResult(seconds=1.0).summary()
    assert empty["ok"] == 0 and empty["p99_ms"] is None and "first_errors" not in empty


def test_cpu_seconds_come_from_utime_and_stime_even_with_spaces_in_the_name():
    stat = "4242 (python -m mesh) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 123 0 0"
    assert stat_cpu_seconds(stat, 100) == 3.0
    with pytest.raises(MeshError, match="^bench: not a /proc/PID/stat line"):
        stat_cpu_seconds("4242 (x) S 1", 100)


def test_offload_is_turned_off_by_the_knob_this_tree_has():
    from mesh.config import InferenceSettings

    assert offload_off_settings({"offload", "max_queue"}) == {"offload": "off"}
    assert offload_off_settings({"max_queue"}) == {"max_queue": 10_000}  # before `offload`: a bound never reached
    with pytest.raises(MeshError, match="^bench: the inference config"):
        offload_off_settings(set())
    knobs = offload_off_settings(set(InferenceSettings.model_fields))
    InferenceSettings(**knobs)  # whatever is chosen validates
