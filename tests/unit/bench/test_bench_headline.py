"""bench.summary: each headline figure beside its baseline and the ratio, from the suites' own rows."""

from __future__ import annotations

import pytest

from bench.summary import format_table, headline

RPC = [
    {"name": "raw trio TCP: 1 KiB, one at a time", "calls_per_s": 20000.0},
    {"name": "raw trio TCP: 1024 KiB tensor + ack", "calls_per_s": 300.0, "MB_per_s": 400.0},
    {"name": "mesh RPC, libp2p only: 1 KiB, one at a time", "calls_per_s": 1500.0},
    {"name": "mesh RPC: 1 KiB, one at a time", "calls_per_s": 2000.0},
    {"name": "mesh RPC: 1024 KiB tensor + ack", "calls_per_s": 30.0, "MB_per_s": 60.0},
    {"name": "mesh RPC: 8 callers, no baseline row", "calls_per_s": 10.0},
    {"name": "ratio mesh/raw", "1KiB_one_at_a_time": 0.1},
]
RAFT = [
    {"name": "raw pysyncobj", "writes_per_s_1": 1000.0, "writes_per_s_8": 2000.0},
    {"name": "raw pysyncobj, durable", "writes_per_s_1": 500.0, "writes_per_s_8": 1000.0},
    {"name": "consensus.RaftLog (durable)", "writes_per_s_1": 400.0, "writes_per_s_8": 900.0},
]
CRDT = [
    {"name": "ours (LWWMap+SyncCore+codec): apply, 1/message", "readings_per_s": 90000.0},
    {"name": "pycrdt (Yjs): apply, 1/message", "readings_per_s": 30000.0},
    {"name": "ratio ours/pycrdt apply rate", "1_per_message": 3.0},
]
OFFLOAD = [
    {"name": "[0.25/0.5/0.9] sum of standalone", "req_s": 100.0},
    {"name": "[0.25/0.5/0.9] all load at n0, offload off", "req_s": 14.0},
    {"name": "[0.25/0.5/0.9] all load at n0, offload on", "req_s": 85.0},
]
PLANNER = [{"name": "mobilenetv2: summary", "worst chosen/best": 1.0}, {"name": "mobilenetv2: here 1x"}]


def test_each_comparison_pairs_the_figure_with_its_own_baseline():
    rows = headline({"rpc": RPC, "raft": RAFT, "crdt": CRDT, "offload": OFFLOAD, "planner": PLANNER})
    got = {(r["suite"], r["figure"], r["baseline"]): (r["value"], r["baseline_value"], r["ratio"]) for r in rows}
    assert got[("rpc", "mesh RPC, 1 KiB, one at a time", "raw trio TCP")] == (2000.0, 20000.0, 0.1)
    assert got[("rpc", "mesh RPC, 1024 KiB tensor + ack", "raw trio TCP")] == (60.0, 400.0, 0.15)  # MB/s
    assert got[("raft", "Raft writes, one at a time", "raw pysyncobj (durable)")] == (400.0, 500.0, 0.8)
    assert got[("raft", "Raft writes, 8 threads", "raw pysyncobj (durable)")] == (900.0, 1000.0, 0.9)
    assert got[("crdt", "CRDT apply, 1/message", "pycrdt (Yjs)")] == (90000.0, 30000.0, 3.0)
    assert got[("offload", "offload on, 0.25/0.5/0.9", "offload off")] == (85.0, 14.0, 6.071)
    assert got[("offload", "offload on, 0.25/0.5/0.9", "sum of nodes standalone")] == (85.0, 100.0, 0.85)
    assert got[("planner", "planner, mobilenetv2 (worst case)", "brute force")] == (1.0, 1.0, 1.0)
    # Rows without a baseline in the same run (the libp2p-only variant, a lone figure) make no headline.
    assert len(rows) == 8


def test_suites_that_did_not_run_or_lack_figures_contribute_nothing():
    assert headline({}) == []
    assert headline({"raft": RAFT[:2], "rpc": [{"name": "mesh RPC: x", "calls_per_s": 1.0}], "crdt": "broken"}) == []
    assert headline({"offload": [{"name": "all load at n0, offload on"}]}) == []


def test_a_zero_baseline_gives_no_ratio_and_the_table_shows_every_row():
    rows = headline({"raft": [{"name": "raw pysyncobj, durable", "writes_per_s_1": 0.0},
                              {"name": "consensus.RaftLog (durable)", "writes_per_s_1": 5.0}]})
    assert rows[0]["ratio"] is None
    table = format_table(headline({"rpc": RPC, "raft": RAFT}) + rows).splitlines()
    assert table[0].split() == ["suite", "figure", "value", "baseline", "baseline", "value", "ratio", "target"]
    assert len(table) == 1 + 2 + 2 + 1
    assert any("0.8" in line and "raw pysyncobj (durable)" in line for line in table)
    assert "no headline figures" in format_table([])


@pytest.mark.slow
@pytest.mark.long  # real benchmark runs: CI's second stage
def test_the_headline_reads_the_real_suites_rows_and_the_cli_writes_them(monkeypatch, tmp_path):
    """Row names are the suites' own: a renamed row would silently drop out of the headline."""
    import json

    from click.testing import CliRunner

    from bench import raft, rpc
    from mesh.cli import main

    pytest.importorskip("pysyncobj")
    rows = headline({"rpc": rpc.run(n=64, bulk_n=2, rounds=1)})
    assert {r["figure"] for r in rows} >= {"mesh RPC, 1 KiB, one at a time", "mesh RPC, 4096 KiB tensor + ack"}
    assert all(r["baseline"] == "raw trio TCP" and r["ratio"] > 0 for r in rows)

    monkeypatch.setattr(raft, "DURATION", 0.3)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "raft", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert [r["figure"] for r in doc["headline"]] == ["Raft writes, one at a time", "Raft writes, 8 threads"]
    assert doc["raft"][2]["name"] == "consensus.RaftLog (durable)"
    assert "Raft writes, one at a time" in result.output and "raw pysyncobj (durable)" in result.output
