"""The CI chaos scenario: five real nodes, a partition, a paused leader and a killed leader under load.

Issue 7: "a short scenario (<= 2 minutes) with partitions, a leader kill and a pause runs in every CI
run and must pass". Seed 6's schedule (70 s) is exactly that: partition-halves at 10-20 s, the
leader paused at 30-40 s, the leader killed and restarted at 50-60 s. It runs in CI's second stage
(`make test-long`), next to the 1,000-node simulation, to keep `make test` under ten minutes.
"""

from __future__ import annotations

import json

import pytest

from mesh.chaos.nemesis import schedule
from mesh.chaos.runner import RunOptions, run
from mesh.netlab import why_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long]

NEMESES = ("partition-halves", "partition-leader", "kill", "pause")
SEED, DURATION = 6, 70.0


def test_the_schedule_is_the_scenario_the_issue_names():
    kinds = [(f.kind, f.mode) for f in schedule(SEED, [f"n{i}" for i in range(5)], DURATION, list(NEMESES))]
    assert [k for k, _ in kinds] == ["partition-halves", "pause", "kill"]
    assert kinds[1][1] == kinds[2][1] == "leader"


def test_partition_pause_and_leader_kill_lose_nothing(tmp_path):
    backend = "netns" if why_unavailable() is None else "local"
    lines: list[str] = []
    report = run(RunOptions(nodes=5, duration=DURATION, seed=SEED, nemeses=NEMESES, report=tmp_path,
                            backend=backend, logs=tmp_path / "logs"), progress=lines.append)
    print("\n".join(lines))
    # Every node's log is kept for reading afterwards; the run's own directory is gone.
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [f"n{i}.log" for i in range(5)]
    assert "raft" in (tmp_path / "logs" / "n0.log").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["seed"] == SEED
    assert "<svg" in (tmp_path / "report.html").read_text()
    failed = [v for v in report["verdicts"] if not v["ok"]]
    assert not failed, failed
    names = {v["name"] for v in report["verdicts"]}
    assert {"linearizable", "leaders_per_term", "crdt_converged", "crdt_no_lost_writes", "counters_exact",
            "inference_answers", "fencing_monotonic", "no_double_holders", "fenced_writes", "recovery"} <= names
    applied = [a for a in report["actions"] if a.get("kind")]
    kinds = [a["kind"] for a in applied]
    assert "pause" in kinds and "kill" in kinds
    # Partitions run on both backends: routes in namespaces, or the nodes' fault filter on 127.0.0.1.
    assert "partition-halves" in kinds and any(x.startswith("block ") for x in applied[0]["actions"])
    assert len(report["recovery"]) == 3 and report["messages"]["messages_per_op"]
    # Enough happened for the checks to mean something.
    history = report["history"]
    assert len(history["register"]["ops"]) > 100 and len(history["sensor_writes"]) > 100
    assert len(history["inference"]) > 100
    assert report["tasks"]["holdings"] > 10 and report["tasks"]["fenced_admitted"] > 10
