"""The node's live dashboard: ``GET /dashboard`` (one HTML page) and ``GET /dashboard/data`` (its JSON).

Theory of operation
-------------------
The page is self-contained (no script, style or font from anywhere else: a
mesh may run with no internet at all) and polls ``/dashboard/data`` once a
second. It draws what this node knows of the mesh:

* every node by tier (device, edge, cloud columns) with its state (alive,
  suspect, gone, left) and load (queue), the Raft leader crowned and the
  voters marked;
* links: this node's connections with their measured cost, and which peers
  each peer says it is connected to (from their adverts);
* sensor values as this node holds them, updating as they sync;
* the last inference requests made here: model, where each ran (local,
  remote, split, early exit, degraded, cache), on which node, how long;
* faults while a chaos run is going: the fault the harness has on now (it
  writes ``chaos-now.json`` into each node's data dir when a fault starts and
  removes it at the heal; a file past its end, left by a run that died, is
  ignored), and the test-only fault filter's cut links and a skewed clock when
  this node runs under them (``mesh/fault_filter.py``, ``mesh/clock.py``).

The API it is served from listens on 127.0.0.1 unless ``api`` in
``node.yaml`` says otherwise; exposed beyond loopback, every request needs the
token in ``api.token`` (``mesh/api.py``), which the page takes from its own
URL (``/dashboard?token=...``) and passes on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from . import clock
from .metrics import inference_metrics

if TYPE_CHECKING:
    from .node import Node

MAX_SENSORS = 60


def dashboard_data(node: Node) -> dict[str, Any]:
    """What the page shows, as this node knows it now."""
    now = trio.current_time()
    raft = node.raft_status()
    leader = raft.get("leader")  # a peer id
    voters = set(raft.get("voters") or [])  # Raft addresses
    me = node.descriptor()
    nodes = [{
        "peer_id": node.peer_id, "name": node.settings.name, "tier": node.settings.tier, "state": "alive",
        "queue": node.inference.queue, "voter": bool(me.raft_addr) and me.raft_addr in voters,
        "leader": leader == node.peer_id, "self": True,
        "models": sorted(node.runtime.loaded()),
    }]
    for peer in node.peer_list():
        nodes.append({
            "peer_id": peer["peer_id"], "name": peer["name"], "tier": peer["tier"], "state": peer["state"],
            "queue": peer["queue"], "voter": bool(peer["raft_addr"]) and peer["raft_addr"] in voters,
            "leader": leader == peer["peer_id"], "self": False, "models": peer["models"],
        })
    link_ms = dict(getattr(node.inference, "_link_ms", {}))
    links = [{"a": node.peer_id, "b": n["peer_id"], "ms": round(link_ms[n["peer_id"]], 2)
              if n["peer_id"] in link_ms else None}
             for n in nodes[1:] if node.host.is_connected(n["peer_id"])]
    known = {n["peer_id"] for n in nodes}
    seen = {frozenset((link["a"], link["b"])) for link in links}
    for peer, (heard, views) in list(getattr(node, "_advert_views", {}).items()):
        if now - heard > 10:
            continue  # an old advert says little about links now
        for other in views:
            pair = frozenset((peer, other))
            if other in known and peer in known and len(pair) == 2 and pair not in seen:
                seen.add(pair)
                links.append({"a": peer, "b": other, "ms": None})
    try:
        sensors = node.state.list("")[:MAX_SENSORS]
    except Exception as exc:  # a damaged store says so on the page, the rest still shows
        sensors = [{"key": "(sensor state unreadable)", "value": str(exc)}]
    faults = []
    if node.fault_filter.active:
        names = {n["peer_id"]: n["name"] for n in nodes}
        cut = sorted(names.get(p, p[-8:]) for p in node.fault_filter.blocked_peers())
        if cut:
            faults.append(f"links to {', '.join(cut)} cut (chaos fault filter)")
    now_fault = read_chaos_now(node.data_dir)
    if now_fault:
        faults.append(f"chaos run: {now_fault}")
    skew = clock.wall() - time.time()
    if abs(skew) >= 0.5:
        faults.append(f"clock skewed {skew:+.1f} s (chaos clock)")
    return {
        "time": round(time.time(), 3),
        "self": node.peer_id,
        "nodes": nodes,
        "links": links,
        "raft": {"role": raft.get("role"), "term": raft.get("term"), "leader": raft.get("leader_name") or leader,
                 "commit_index": raft.get("commit_index")},
        "sensors": [{"key": s["key"], "value": s.get("value"), "scope": s.get("scope", "shared")} for s in sensors],
        "inferences": list(inference_metrics(node).recent)[::-1][:20],
        "faults": faults,
    }


CHAOS_NOW_FILE = "chaos-now.json"  # written by the chaos harness into each node's data dir while a fault is on


def write_chaos_now(data_dir: Path, fault: str | None, seconds: float) -> None:
    """(The chaos harness) say which fault is on for the next ``seconds``; None: none is."""
    path = Path(data_dir) / CHAOS_NOW_FILE
    if fault is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"fault": fault, "until": time.time() + seconds}))
    tmp.replace(path)


def read_chaos_now(data_dir: Path) -> str | None:
    """The fault a chaos run has on now, or None (no file, a broken one, or one past its end: a run that died)."""
    try:
        doc = json.loads((Path(data_dir) / CHAOS_NOW_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("fault"), str) or \
            not isinstance(doc.get("until"), (int, float)) or doc["until"] + 5 < time.time():
        return None
    return doc["fault"][:300]


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>meshnode dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#0f172a;color:#e2e8f0}
 header{padding:10px 16px;background:#1e293b;display:flex;gap:24px;align-items:baseline}
 header h1{font-size:18px;margin:0}
 main{display:grid;grid-template-columns:2fr 1fr;gap:12px;padding:12px}
 section{background:#1e293b;border-radius:8px;padding:10px 12px}
 h2{font-size:14px;margin:0 0 8px;color:#94a3b8;text-transform:uppercase;letter-spacing:.05em}
 table{border-collapse:collapse;width:100%} td,th{padding:3px 6px;text-align:left;border-bottom:1px solid #334155}
 .faults{color:#fca5a5} #mesh{width:100%;height:420px}
 .alive{fill:#22c55e}.suspect{fill:#eab308}.gone{fill:#ef4444}.left{fill:#64748b}
</style></head><body>
<header><h1>meshnode</h1><span id="who"></span><span id="raft"></span><span id="updated"></span></header>
<main>
 <section><h2>Mesh</h2><svg id="mesh" viewBox="0 0 900 420"></svg></section>
 <section><h2>Faults</h2><div id="faults" class="faults">none</div>
  <h2 style="margin-top:12px">Recent inferences</h2><table id="infer"></table></section>
 <section style="grid-column:1 / span 2"><h2>Sensor values</h2><table id="sensors"></table></section>
</main>
<script>
const TIERS = ["device", "edge", "cloud"], NS = "http://www.w3.org/2000/svg";
const token = new URLSearchParams(location.search).get("token");  // an exposed API asks for it
function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]); }
function draw(d) {
  const svg = document.getElementById("mesh"); svg.replaceChildren();
  const pos = {};
  TIERS.forEach((tier, col) => {
    const x = 150 + col * 300;
    svg.appendChild(el("text", {x: x, y: 24, "text-anchor": "middle", fill: "#94a3b8"}, tier));
    const here = d.nodes.filter(n => n.tier === tier);
    here.forEach((n, i) => { pos[n.peer_id] = [x, 80 + i * (320 / Math.max(1, here.length))]; });
  });
  for (const l of d.links) {
    if (!pos[l.a] || !pos[l.b]) continue;
    const [x1, y1] = pos[l.a], [x2, y2] = pos[l.b];
    svg.appendChild(el("line", {x1, y1, x2, y2, stroke: "#475569", "stroke-width": 2}));
    if (l.ms !== null) svg.appendChild(el("text", {x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, fill: "#94a3b8",
      "font-size": 11, "text-anchor": "middle"}, l.ms + " ms"));
  }
  for (const n of d.nodes) {
    const [x, y] = pos[n.peer_id];
    const g = el("g", {"data-name": n.name, "data-state": n.state});
    g.appendChild(el("circle", {cx: x, cy: y, r: n.self ? 26 : 22, class: n.state,
      stroke: n.voter ? "#f8fafc" : "none", "stroke-width": 3}));
    g.appendChild(el("text", {x, y: y + 44, "text-anchor": "middle", fill: "#e2e8f0"},
      n.name + (n.leader ? " \\u2605 leader" : "") + (n.self ? " (here)" : "")));
    g.appendChild(el("text", {x, y: y + 5, "text-anchor": "middle", fill: "#0f172a", "font-weight": "bold"},
      String(n.queue)));
    svg.appendChild(g);
  }
  document.getElementById("who").textContent = d.nodes.filter(n => n.self).map(n => n.name + " (" + n.tier + ")")[0];
  document.getElementById("raft").textContent = "raft: " + d.raft.role + ", leader " + (d.raft.leader || "none") +
    ", term " + d.raft.term;
  document.getElementById("updated").textContent = "updated " + new Date(d.time * 1000).toLocaleTimeString();
  const faults = document.getElementById("faults");
  faults.textContent = d.faults.length ? d.faults.join("; ") : "none";
  faults.className = d.faults.length ? "faults" : "";
  document.getElementById("sensors").innerHTML = "<tr><th>key</th><th>value</th><th>scope</th></tr>" +
    d.sensors.map(s => `<tr><td>${esc(s.key)}</td><td>${esc(JSON.stringify(s.value))}</td><td>${esc(s.scope)}</td></tr>`).join("");
  document.getElementById("infer").innerHTML = "<tr><th>model</th><th>route</th><th>ran on</th><th>ms</th></tr>" +
    d.inferences.map(r => `<tr><td>${esc(r.model)}</td><td>${esc(r.route)}</td><td>${esc(r.ran_on)}</td><td>${r.ms}</td></tr>`).join("");
  document.body.dataset.ready = "1";
}
async function tick() {
  try {
    const r = await fetch("dashboard/data" + (token ? "?token=" + encodeURIComponent(token) : ""));
    if (r.ok) draw(await r.json());
  } catch (e) { document.getElementById("updated").textContent = "node unreachable"; }
}
tick(); setInterval(tick, 1000);
</script></body></html>
"""

__all__ = ["PAGE", "dashboard_data"]
