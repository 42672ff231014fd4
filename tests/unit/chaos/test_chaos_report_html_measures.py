"""report.html's recovery bars, task lanes and messages per operation: drawn from report.json, escaped, absent when not measured."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from mesh.chaos.report_html import COLOURS, render

NS = "{http://www.w3.org/2000/svg}"


def base(**extra):
    doc = {"seed": 3, "nodes": ["n0", "n1", "n2"], "backend": "netns", "duration_s": 40, "quiet_s": 15, "ok": True,
           "actions": [], "history": {"register": {"ops": []}}, "verdicts": []}
    return {**doc, **extra}


RECOVERY = [{"fault": "10-20s partition-leader <n0>", "healed_at": 20.0, "window_s": 10.0, "leader_s": 0.8,
             "converged_s": 2.5},
            {"fault": "30-40s kill n1", "healed_at": 40.0, "window_s": 10.0, "leader_s": 1.5, "converged_s": None}]
TASKS = {
    "tasks": ["chaos/t0", "chaos/t1"], "lease_s": 3.0, "drift_margin_s": 0.5,
    "acquires": {"granted": 2, "busy": 1}, "holdings": 2, "fenced_writes": 3, "fenced_admitted": 2,
    "fenced_refused_stale": 1, "malformed_answers": 0,
    "attempts": [
        {"task": "chaos/t0", "holder": "tasks-c0", "invoke": 1.0, "outcome": "granted", "ok": 1.1, "token": 1,
         "deadline": 3.5, "stopped": 2.0},
        {"task": "chaos/t0", "holder": "tasks-c1", "invoke": 2.5, "outcome": "granted", "ok": 2.6, "token": 2,
         "deadline": 5.0, "stopped": None},
        {"task": "chaos/t1", "holder": "tasks-c1", "invoke": 6.0, "outcome": "busy", "ok": None, "token": None,
         "deadline": 8.5, "stopped": None}],
    "writes": [{"task": "chaos/t0", "holder": "tasks-c0", "token": 1, "t": 1.5, "admitted": True, "late": False},
               {"task": "chaos/t0", "holder": "tasks-c1", "token": 2, "t": 2.7, "admitted": True, "late": False},
               {"task": "chaos/t0", "holder": "tasks-c0", "token": 1, "t": 4.0, "admitted": False, "late": True}],
}
MESSAGES = {"messages_per_op": 1.02, "messages_per_op_above_idle": 0.74, "frames_sent": 5946, "ops": 5848,
            "idle_frames_per_s": 41.0, "seconds": 42.1, "counted": "mesh RPC frames <not Raft>"}


def svgs(page):
    found = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    return [ET.fromstring(s) for s in found]  # well-formed: every name in them escaped


def test_each_heal_gets_two_bars_and_a_heal_never_recovered_is_drawn_red():
    page = render(base(recovery=RECOVERY, recovery_bound_s=10.0, worst_leader_s=1.5, worst_converged_s=None))
    assert "<h2>Recovery after each heal</h2>" in page
    bars = svgs(page)[-1]
    rects = list(bars.iter(f"{NS}rect"))
    assert len(rects) == 2 * len(RECOVERY)
    assert [r.get("fill") for r in rects].count(COLOURS["fail"]) == 1  # the kill's replicas: not within the window
    assert "leader bound 10 s" in ET.tostring(bars, encoding="unicode")
    assert "partition-leader &lt;n0&gt;" in page and "<td>0.80 s</td><td>2.50 s</td>" in page
    assert "worst: leader 1.50 s, replicas never" in page


def test_task_lanes_show_each_holding_and_each_fenced_write_in_its_outcome_s_colour():
    page = render(base(tasks=TASKS))
    lanes = next(s for s in svgs(page) if any("chaos/t0" == (t.text or "") for t in s.iter(f"{NS}text")))
    holdings = [r.find(f"{NS}title").text for r in lanes.iter(f"{NS}rect")]
    assert holdings == ["tasks-c0 token 1: 1.10-2.00 s", "tasks-c1 token 2: 2.60-5.00 s"]
    fills = [c.get("fill") for c in lanes.iter(f"{NS}circle")]
    assert fills == [COLOURS["ok"], COLOURS["ok"], COLOURS["fail"]]
    assert "1 refused as stale (fencing at work)" in page


def test_messages_per_op_is_shown_with_what_it_counts_and_absent_parts_say_so():
    page = render(base(messages=MESSAGES))
    assert "<b>1.02</b> messages per operation" in page and "&lt;not Raft&gt;" in page
    bare = render(base())
    assert "no fault was healed" in bare and "no message counts" in bare and "Task leases" not in bare
    assert svgs(bare) and len(svgs(bare)) == 3  # timeline, latency, throughput only
