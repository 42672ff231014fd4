"""``report.html``: one self-contained page (inline SVG, no scripts, no downloads) drawn from ``report.json``.

Four plots and the verdicts:

* **timeline**: the run's seconds, each fault's window shaded and labelled,
  the heal and the end of the quiet period marked, and each Raft term change;
* **latency**: every register operation at its invoke time against how long it
  took, green ok, red fail, orange unknown (drawn at the top: it never came back);
* **throughput**: acknowledged operations per second (register and sensor);
* **convergence**: when each replica first held the common final map after the heal;
* **recovery**: per healed fault, seconds until a leader committed and until the
  replicas held everything acknowledged before the heal, against the bound;
* **task leases**: per task, who held it when (one lane per task), each
  fenced write a dot (green admitted, red refused: a stale holder fenced off);
* **messages per operation**: mesh frames and Raft messages sent per answered operation.

Pure: a function of the report dict; the runner writes the file.
"""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

WIDTH, HEIGHT, PAD = 900, 180, 40
COLOURS = {"ok": "#2e7d32", "fail": "#c62828", "unknown": "#ef6c00"}


def render(report: dict[str, Any]) -> str:
    """The page for ``report`` (a chaos ``report.json`` document)."""
    end = float(report.get("duration_s", 0)) + float(report.get("quiet_s", 0))
    ops = report.get("history", {}).get("register", {}).get("ops", [])
    verdicts = report.get("verdicts", [])
    parts = [
        "<!doctype html><meta charset='utf-8'><title>meshnode chaos report</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:24px;max-width:960px}"
        "table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}"
        ".pass{color:#2e7d32;font-weight:600}.fail{color:#c62828;font-weight:600}</style>",
        f"<h1>Chaos run: {'PASS' if report.get('ok') else 'FAIL'}</h1>",
        f"<p>seed {html.escape(str(report.get('seed')))} · {len(report.get('nodes', []))} nodes · "
        f"{html.escape(str(report.get('backend')))} backend ({html.escape(str(report.get('backend_note') or ''))}) · "
        f"{report.get('duration_s')} s of faults and load, {report.get('quiet_s')} s quiet</p>",
    ]
    skipped = report.get("skipped_nemeses") or {}
    if skipped:
        parts.append("<p>Not applied here: " + "; ".join(
            f"{html.escape(k)} ({html.escape(v)})" for k, v in skipped.items()) + "</p>")
    parts.append("<h2>Verdicts</h2><table><tr><th>checker</th><th></th><th>summary</th></tr>" + "".join(
        f"<tr><td>{html.escape(v['name'])}</td><td class='{'pass' if v['ok'] else 'fail'}'>"
        f"{'pass' if v['ok'] else 'FAIL'}</td><td>{html.escape(v['summary'])}</td></tr>" for v in verdicts) + "</table>")
    parts.append("<h2>Timeline</h2>" + timeline(report, end))
    parts.append("<h2>Register operation latency</h2>" + latency(ops, end))
    parts.append("<h2>Throughput (acknowledged operations per second)</h2>" + throughput(report, end))
    parts.append("<h2>Convergence after the heal</h2>" + convergence(report))
    parts.append("<h2>Recovery after each heal</h2>" + recovery(report))
    if report.get("tasks"):
        parts.append("<h2>Task leases and fenced writes</h2>" + tasks(report["tasks"], end))
    parts.append("<h2>Messages per operation</h2>" + messages(report.get("messages")))
    return "\n".join(parts)


def _x(t: float, end: float) -> float:
    return PAD + (WIDTH - 2 * PAD) * (max(0.0, min(t, end)) / end if end > 0 else 0.0)


def _axis(end: float, label: str) -> str:
    ticks = []
    step = max(1, round(end / 10)) if end > 0 else 1
    t = 0
    while t <= end:
        x = _x(t, end)
        ticks.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{HEIGHT - PAD}' y2='{HEIGHT - PAD + 4}' stroke='#555'/>"
                     f"<text x='{x:.1f}' y='{HEIGHT - PAD + 16}' font-size='10' text-anchor='middle'>{t}</text>")
        t += step
    return (f"<line x1='{PAD}' x2='{WIDTH - PAD}' y1='{HEIGHT - PAD}' y2='{HEIGHT - PAD}' stroke='#555'/>"
            + "".join(ticks)
            + f"<text x='{WIDTH / 2}' y='{HEIGHT - 4}' font-size='11' text-anchor='middle'>{html.escape(label)}</text>")


def _svg(body: str) -> str:
    return f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' role='img'>{body}</svg>"


def fault_windows(report: dict[str, Any]) -> list[tuple[float, float, str]]:
    """(start, end, label) of every applied fault, from the report's actions."""
    out = []
    for action in report.get("actions", []):
        if action.get("kind") and "until" in action:
            out.append((float(action["t"]), float(action["until"]), str(action.get("fault", action["kind"]))))
    return out


def timeline(report: dict[str, Any], end: float) -> str:
    """Fault windows shaded, the heal and the quiet period marked, term changes ticked."""
    body = []
    for i, (start, stop, label) in enumerate(fault_windows(report)):
        x0, x1 = _x(start, end), _x(stop, end)
        body.append(f"<rect x='{x0:.1f}' y='{PAD}' width='{max(1.0, x1 - x0):.1f}' height='{HEIGHT - 2 * PAD}' "
                    f"fill='#ffcdd2' opacity='0.8'><title>{html.escape(label)}</title></rect>"
                    f"<text x='{x0 + 2:.1f}' y='{PAD + 12 + (i % 3) * 12}' font-size='10'>{html.escape(label)}</text>")
    heal = next((a["t"] for a in report.get("actions", []) if a.get("fault") == "heal-all"), None)
    if heal is not None:
        x = _x(float(heal), end)
        body.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{PAD}' y2='{HEIGHT - PAD}' stroke='#1565c0' "
                    f"stroke-dasharray='4 3'/><text x='{x + 3:.1f}' y='{HEIGHT - PAD - 4}' font-size='10' "
                    f"fill='#1565c0'>heal, then quiet</text>")
    seen_terms: set[int] = set()
    for obs in sorted(report.get("history", {}).get("leaders", []), key=lambda o: o["at"]):
        if obs["term"] not in seen_terms:
            seen_terms.add(obs["term"])
            x = _x(float(obs["at"]), end)
            body.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{HEIGHT - PAD - 10}' y2='{HEIGHT - PAD}' "
                        f"stroke='#6a1b9a'><title>term {obs['term']}</title></line>")
    body.append(_axis(end, "seconds since the start (purple ticks: a new Raft term first seen)"))
    return _svg("".join(body))


MAX_OK_DOTS = 20_000  # ok ops drawn in the latency scatter at most (fails and unknowns are all drawn)


def latency(ops: list[dict[str, Any]], end: float) -> str:
    """Invoke time against latency, coloured by outcome; unknown ops at the top."""
    done = [(o["invoke"], o["complete"] - o["invoke"]) for o in ops if o.get("complete") is not None]
    top = max((lat for _, lat in done), default=1.0) or 1.0
    body = []
    # An hour-long run has ~200,000 ops: every fail and unknown is drawn, the ok ones thinned evenly.
    ok = sum(1 for o in ops if o.get("status") == "ok")
    step = max(1, -(-ok // MAX_OK_DOTS))
    seen_ok = 0
    for o in ops:
        if o.get("status") == "ok":
            seen_ok += 1
            if (seen_ok - 1) % step:
                continue
        if o.get("complete") is None:
            y, lat = PAD, None
        else:
            lat = o["complete"] - o["invoke"]
            y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * min(lat / top, 1.0)
        colour = COLOURS.get(o.get("status"), "#000")
        body.append(f"<circle cx='{_x(o['invoke'], end):.1f}' cy='{y:.1f}' r='1.6' fill='{colour}'/>")
    body.append(f"<text x='4' y='{PAD + 4}' font-size='10'>{top * 1000:.0f} ms</text>")
    thinned = f"; 1 in {step} of the {ok} ok ops shown" if step > 1 else ""
    body.append(_axis(end, f"invoke time (s); green ok, red fail, orange unknown (never answered){thinned}"))
    return _svg("".join(body))


def throughput(report: dict[str, Any], end: float) -> str:
    """Acknowledged register and sensor operations per one-second bucket."""
    history = report.get("history", {})
    buckets: Counter[int] = Counter()
    for o in history.get("register", {}).get("ops", []):
        if o.get("status") == "ok" and o.get("complete") is not None:
            buckets[int(o["complete"])] += 1
    for w in history.get("sensor_writes", []):
        if w.get("status") == "ok" and w.get("t") is not None:
            buckets[int(w["t"])] += 1
    top = max(buckets.values(), default=1)
    body = []
    for second, count in sorted(buckets.items()):
        x0, x1 = _x(second, end), _x(second + 1, end)
        h = (HEIGHT - 2 * PAD) * count / top
        body.append(f"<rect x='{x0:.1f}' y='{HEIGHT - PAD - h:.1f}' width='{max(1.0, x1 - x0 - 1):.1f}' "
                    f"height='{h:.1f}' fill='#546e7a'><title>{second} s: {count}</title></rect>")
    body.append(f"<text x='4' y='{PAD + 4}' font-size='10'>{top}/s</text>")
    body.append(_axis(end, "seconds"))
    return _svg("".join(body))


def convergence(report: dict[str, Any]) -> str:
    """A table: each replica and when, after the heal, it first held the common final map."""
    heal = next((a["t"] for a in report.get("actions", []) if a.get("fault") == "heal-all"), None)
    matched = report.get("converged_at") or {}
    if heal is None or not matched:
        return "<p>no convergence measurement in this report</p>"
    rows = "".join(
        f"<tr><td>{html.escape(node)}</td><td>"
        f"{'never' if at is None else f'{max(0.0, at - heal):.2f} s'}</td></tr>"
        for node, at in sorted(matched.items()))
    return f"<table><tr><th>replica</th><th>after the heal</th></tr>{rows}</table>"


def recovery(report: dict[str, Any]) -> str:
    """Two bars per healed fault (leader + commit, replicas caught up) in seconds, the bound dashed."""
    rows = report.get("recovery") or []
    if not rows:
        return "<p>no fault was healed during the run</p>"
    bound = float(report.get("recovery_bound_s") or 0.0)
    top = max([bound, *(float(r[k]) for r in rows for k in ("leader_s", "converged_s") if r.get(k) is not None)]) or 1.0
    span = (WIDTH - 2 * PAD) / len(rows)
    scale = (HEIGHT - 2 * PAD) / top
    body = []
    for i, row in enumerate(rows):
        x = PAD + i * span
        for j, (kind, colour) in enumerate((("leader_s", "#1565c0"), ("converged_s", "#2e7d32"))):
            value = row.get(kind)
            h = (HEIGHT - 2 * PAD) if value is None else max(1.0, float(value) * scale)
            fill = COLOURS["fail"] if value is None else colour
            text = "never, within its window" if value is None else f"{float(value):.2f} s"
            what = "leader + committed write" if kind == "leader_s" else "replicas caught up"
            bx = x + span * (0.2 + 0.3 * j)
            body.append(f"<rect x='{bx:.1f}' y='{HEIGHT - PAD - h:.1f}' width='{span * 0.25:.1f}' height='{h:.1f}' "
                        f"fill='{fill}'><title>{html.escape(str(row.get('fault')))}: {what} {text}</title></rect>")
        body.append(f"<text x='{x + span / 2:.1f}' y='{HEIGHT - PAD + 14}' font-size='10' text-anchor='middle'>"
                    f"heal at {float(row['healed_at']):.1f} s</text>")
    if bound:
        y = HEIGHT - PAD - bound * scale
        body.append(f"<line x1='{PAD}' x2='{WIDTH - PAD}' y1='{y:.1f}' y2='{y:.1f}' stroke='{COLOURS['fail']}' "
                    f"stroke-dasharray='4 3'/><text x='{WIDTH - PAD:.1f}' y='{y - 3:.1f}' font-size='10' "
                    f"text-anchor='end'>leader bound {bound:g} s</text>")
    body.append(f"<text x='4' y='{PAD + 4}' font-size='10'>{top:.1f} s</text>"
                f"<line x1='{PAD}' x2='{WIDTH - PAD}' y1='{HEIGHT - PAD}' y2='{HEIGHT - PAD}' stroke='#555'/>"
                f"<text x='{WIDTH / 2}' y='{HEIGHT - 4}' font-size='11' text-anchor='middle'>blue: leader agreed "
                f"and a write committed; green: every replica holds what was acknowledged before the heal; "
                f"red: not within the window</text>")
    table = "".join(
        f"<tr><td>{html.escape(str(r.get('fault')))}</td><td>{float(r['healed_at']):.1f} s</td>"
        f"<td>{_seconds(r.get('leader_s'))}</td><td>{_seconds(r.get('converged_s'))}</td></tr>" for r in rows)
    worst = (f"<p>worst: leader {_seconds(report.get('worst_leader_s'))}, "
             f"replicas {_seconds(report.get('worst_converged_s'))}</p>")
    return (_svg("".join(body)) + "<table><tr><th>fault</th><th>healed at</th><th>leader</th><th>replicas</th></tr>"
            + table + "</table>" + worst)


def _seconds(value: Any) -> str:
    return "never" if value is None else f"{float(value):.2f} s"


def tasks(summary: dict[str, Any], end: float) -> str:
    """One lane per task: each holding a bar coloured by holder, each fenced write a dot on it."""
    names = list(summary.get("tasks") or [])
    lane = (HEIGHT - 2 * PAD) / max(1, len(names))
    holders = sorted({a["holder"] for a in summary.get("attempts", [])})
    palette = ("#1565c0", "#6a1b9a", "#00838f", "#ef6c00", "#558b2f", "#ad1457", "#4e342e", "#37474f")
    colour = {h: palette[i % len(palette)] for i, h in enumerate(holders)}
    body = []
    for i, task in enumerate(names):
        y = PAD + i * lane
        body.append(f"<text x='4' y='{y + lane / 2 + 4:.1f}' font-size='10'>{html.escape(task)}</text>")
        for a in summary.get("attempts", []):
            if a["task"] != task or a.get("outcome") != "granted" or a["ok"] >= a["deadline"]:
                continue
            stop = a["deadline"] if a.get("stopped") is None else max(a["ok"], min(a["deadline"], a["stopped"]))
            x0, x1 = _x(a["ok"], end), _x(stop, end)
            body.append(f"<rect x='{x0:.1f}' y='{y + 4:.1f}' width='{max(1.0, x1 - x0):.1f}' height='{lane - 8:.1f}' "
                        f"fill='{colour[a['holder']]}' opacity='0.35'><title>{html.escape(a['holder'])} token "
                        f"{a['token']}: {a['ok']:.2f}-{stop:.2f} s</title></rect>")
        for w in summary.get("writes", []):
            if w["task"] == task:
                fill = COLOURS["ok"] if w["admitted"] else COLOURS["fail"]
                what = "admitted" if w["admitted"] else "refused (stale token)"
                body.append(f"<circle cx='{_x(w['t'], end):.1f}' cy='{y + lane / 2:.1f}' r='{3 if w['late'] else 1.8}' "
                            f"fill='{fill}'><title>{html.escape(w['holder'])} token {w['token']} at {w['t']:.2f} s: "
                            f"{what}{', late' if w['late'] else ''}</title></circle>")
    body.append(_axis(end, "seconds; bars: holdings (colour per holder); dots: fenced writes, green admitted, "
                           "red refused, large = a late write after the holder's deadline"))
    acquires = ", ".join(f"{html.escape(str(k))} {v}" for k, v in sorted((summary.get("acquires") or {}).items()))
    text = (f"<p>acquires: {acquires or 'none'} · {summary.get('holdings', 0)} holdings · "
            f"{summary.get('fenced_admitted', 0)} of {summary.get('fenced_writes', 0)} fenced writes admitted, "
            f"{summary.get('fenced_refused_stale', 0)} refused as stale (fencing at work) · "
            f"{summary.get('malformed_answers', 0)} malformed answers · lease {summary.get('lease_s')} s, "
            f"margin {summary.get('drift_margin_s')} s</p>")
    return _svg("".join(body)) + text


def messages(doc: dict[str, Any] | None) -> str:
    """Messages (mesh frames and Raft) per answered operation, with what is counted."""
    if not doc:
        return "<p>no message counts in this report</p>"
    return (f"<p><b>{html.escape(str(doc.get('messages_per_op')))}</b> messages per operation "
            f"({html.escape(str(doc.get('messages_per_op_above_idle')))} above the idle rate of "
            f"{html.escape(str(doc.get('idle_frames_per_s')))} messages/s): {doc.get('frames_sent')} messages for "
            f"{doc.get('ops')} operations in {doc.get('seconds')} s. Counted: {html.escape(str(doc.get('counted')))}.</p>")


__all__ = ["convergence", "fault_windows", "latency", "messages", "recovery", "render", "tasks", "throughput",
           "timeline"]
