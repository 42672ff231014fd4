"""The benchmark suites run and report figures beside their baselines (no timing is asserted)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_rpc_bench_reports_both_sides_and_a_ratio():
    from bench import rpc

    rows = rpc.run(n=64, bulk_n=2, rounds=1)
    by_name = {row["name"]: row for row in rows}
    for label in ("raw trio TCP", "mesh RPC, libp2p only", "mesh RPC"):
        assert by_name[f"{label}: 1 KiB, one at a time"]["calls"] == 64
        assert by_name[f"{label}: 1 KiB, {rpc.CONCURRENCY} callers"]["calls"] == 64
        assert by_name[f"{label}: 600 KiB tensor + ack"]["MB_per_s"] > 0
        assert by_name[f"{label}: 4096 KiB tensor + ack"]["MB_per_s"] > 0
    for kind in ("mesh-libp2p", "mesh"):
        ratio = by_name[f"ratio {kind}/raw"]
        assert set(ratio) == {"name", "1KiB_one_at_a_time", f"1KiB_{rpc.CONCURRENCY}_callers",
                              "600KiB_tensor", "4096KiB_tensor"}
        assert all(v > 0 for k, v in ratio.items() if k != "name")


def test_raft_bench_reports_three_clusters_and_ratios(monkeypatch):
    from bench import raft

    monkeypatch.setattr(raft, "DURATION", 0.3)
    rows = raft.run()
    names = [row["name"] for row in rows]
    assert names == ["raw pysyncobj", "raw pysyncobj, durable", "consensus.RaftLog (durable)",
                     "consensus.RaftLog, lone voter", "ratio ours/raw durable", "ratio ours/raw (not durable)"]
    for row in rows[:3]:
        assert row["writes_per_s_1"] > 0 and row["writes_per_s_8"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    assert rows[3]["writes_per_s_1"] > 0 and rows[3]["p50_ms"] > 0
    assert all(row["sequential"] > 0 and row["8_threads"] > 0 for row in rows[4:])


def test_crdt_bench_reports_ours_beside_pycrdt_with_ratios():
    from bench import crdt

    rows = crdt.run(keys=40, writers=3, rounds=2, batch=10, overwrites=(1, 3), repeats=1)
    by_name = {row["name"]: row for row in rows}
    for side in ("ours (LWWMap+SyncCore+codec)", "pycrdt (Yjs)"):
        for per_msg in (1, 10):
            row = by_name[f"{side}: apply, {per_msg}/message"]
            assert row["readings"] == 80 and row["readings_per_s"] > 0 and row["bytes_per_reading"] > 0
        sizes = by_name[f"{side}: full state, 40 keys"]
        assert sizes["bytes_after_1"] > 0 and sizes["bytes_after_3"] > 0
    assert by_name["ratio ours/pycrdt apply rate"]["1_per_message"] > 0
    assert by_name["ratio ours/pycrdt apply rate"]["10_per_message"] > 0
    assert all(v > 0 for k, v in by_name["ratio ours/pycrdt full-state bytes"].items() if k != "name")
    ours = by_name["ours (LWWMap+SyncCore+codec): 1 of 40 keys changed"]
    assert 0 < ours["reconnect_bytes"] < ours["full_state_bytes"] and ours["push_bytes"] > 0
    theirs = by_name["pycrdt (Yjs): 1 of 40 keys changed"]
    assert 0 < theirs["diff_bytes"] < theirs["full_state_bytes"]


def test_crdt_sim_bench_reports_rounds_and_bytes_per_size_and_loss():
    from bench import crdt_sim

    rows = crdt_sim.run(sizes=(10, 30), losses=(0.0, 0.05), seeds=(1,))
    assert [(row["n"], row["loss"]) for row in rows] == [(10, 0.0), (10, 0.05), (30, 0.0), (30, 0.05)]
    for row in rows:
        assert 1 <= row["rounds"] <= 10 and row["bytes"] > 0 and row["bytes_per_node"] > 0
        assert 0 < row["digest_share"] < 1 and row["digest_B_all_writers"] >= row["digest_B"] > 0
    assert rows[1]["dropped"] > 0 or rows[3]["dropped"] > 0


def test_partition_bench_reports_plan_and_split_beside_loading():
    from bench import partition

    rows = partition.run(repeats=1, models=["demo", "mobilenet_v2 (generated)"])
    assert [row["name"] for row in rows] == ["demo", "mobilenet_v2 (generated)"]
    for row in rows:
        assert row["single"] >= 5 and row["parts"] >= 2
        assert all(row[k] > 0 for k in ("session_ms", "plan_ms", "split_ms", "(plan+split)/session"))


def test_planner_bench_reports_chosen_beside_brute_force():
    from bench import planner

    rows = planner.run(models=("resnet18",), size=32, width=0.125, bandwidths_mbit=(10, 1000), speeds=(4,),
                       slowdowns=(1, 10), runs=1, calls=3)
    assert [row["name"] for row in rows][-1] == "resnet18: summary"
    assert len(rows) == 5
    for row in rows[:-1]:
        assert row["chosen/best"] >= 1.0 - 1e-9 and row["considered"] >= 2 and row["plan_us"] > 0
    assert rows[-1]["partitions"] >= 2 and rows[-1]["per_partition_ms"] > 0


def test_quantize_bench_reports_int8_variants_beside_fp32():
    from bench import quantize

    rows = quantize.run(runs=1, repeats=1, drift_rows=4, models=["mobilenet_v2 width 0.5"])
    assert [row["name"] for row in rows] == [f"mobilenet_v2 width 0.5: {v}" for v in ("fp32", "static QDQ int8", "dynamic int8")]
    assert rows[0]["ms"] > 0
    for row in rows[1:]:
        assert row["fp32/variant"] > 0 and row["max_abs_diff"] >= 0 and 0 <= row["top1_agree"] <= 1
        assert row["use"] in ("fp32", "int8")
