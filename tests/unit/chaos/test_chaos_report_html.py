"""report.html: fault windows shaded, every operation plotted in its outcome's colour, verdicts shown, text escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from mesh.chaos.report_html import COLOURS, fault_windows, render


def report(**extra):
    ops = [
        {"process": "n0", "kind": "write", "key": "k", "value": "a", "invoke": 1.0, "complete": 1.2, "status": "ok"},
        {"process": "n1", "kind": "read", "key": "k", "invoke": 12.0, "complete": 12.5, "status": "fail"},
        {"process": "n2", "kind": "write", "key": "k", "value": "b", "invoke": 13.0, "complete": None,
         "status": "unknown"},
    ]
    doc = {
        "seed": 7, "nodes": ["n0", "n1", "n2"], "backend": "netns", "backend_note": "x", "duration_s": 30,
        "quiet_s": 10, "ok": False,
        "actions": [{"t": 10.0, "fault": "10-20s partition-halves <n0> | n1,n2", "kind": "partition-halves",
                     "until": 20.0, "actions": ["block n0->n1"]},
                    {"t": 20.0, "fault": "heal partition-halves", "actions": []},
                    {"t": 30.0, "fault": "heal-all", "actions": []}],
        "history": {"register": {"ops": ops}, "sensor_writes": [{"status": "ok", "t": 2.5}],
                    "leaders": [{"node": "n0", "term": 1, "leader": "p", "at": 0.5},
                                {"node": "n1", "term": 2, "leader": "q", "at": 15.0}]},
        "verdicts": [{"name": "linearizable", "ok": True, "summary": "fine"},
                     {"name": "crdt_converged", "ok": False, "summary": "n1 differs on <key>"}],
        "converged_at": {"n0": 31.0, "n1": None},
    }
    return {**doc, **extra}


def test_each_fault_window_is_shaded_and_each_op_plotted_in_its_colour():
    page = render(report())
    assert fault_windows(report()) == [(10.0, 20.0, "10-20s partition-halves <n0> | n1,n2")]
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 3
    for svg in svgs:
        ET.fromstring(svg)  # well-formed: the names in it are escaped
    timeline, scatter, _ = (ET.fromstring(s) for s in svgs)
    ns = "{http://www.w3.org/2000/svg}"
    assert [r.find(f"{ns}title").text for r in timeline.iter(f"{ns}rect")] == ["10-20s partition-halves <n0> | n1,n2"]
    assert sorted(c.get("fill") for c in scatter.iter(f"{ns}circle")) == sorted(COLOURS.values())


def test_verdicts_and_convergence_are_shown_and_escaped():
    page = render(report())
    assert "<h1>Chaos run: FAIL</h1>" in page and "n1 differs on &lt;key&gt;" in page
    assert "<td>n0</td><td>1.00 s</td>" in page and "<td>n1</td><td>never</td>" in page
    assert "<script" not in render(report(backend="<script>x</script>"))


def test_a_long_runs_latency_scatter_draws_every_failure_and_thins_the_ok_ops():
    from mesh.chaos.report_html import MAX_OK_DOTS, latency

    ops = [{"invoke": i * 0.01, "complete": i * 0.01 + 0.005, "status": "ok"} for i in range(3 * MAX_OK_DOTS)]
    ops += [{"invoke": 5.0, "complete": None, "status": "unknown"}, {"invoke": 6.0, "complete": 6.1, "status": "fail"}]
    svg = latency(ops, 1000.0)
    assert svg.count("<circle") == MAX_OK_DOTS + 2
    assert "1 in 3 of the 60000 ok ops shown" in svg
    assert latency(ops[:10], 10.0).count("<circle") == 10  # a short run is drawn whole
