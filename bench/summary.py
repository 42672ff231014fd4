"""The headline of a benchmark run: each figure beside its baseline and the ratio.

Every suite returns rows (``{"name": ..., <figures>}``) with its baselines
measured in the same run. This module picks, for the comparisons the project
is judged on, the figure, the baseline it is set against and their ratio:

* ``rpc``: mesh RPC vs raw trio TCP (calls/s one at a time and with callers
  in parallel, MB/s for tensors);
* ``raft``: ``consensus.RaftLog`` vs raw pysyncobj, both durable (writes/s);
* ``crdt``: our CRDT vs pycrdt (Yjs) (readings applied per second);
* ``offload``: all load at the weakest node, offload on vs off, and on vs
  the sum of the nodes standalone (requests/s);
* ``planner``: the chosen plan vs brute force (predicted ms; 1.0 is optimal).

A suite that did not run, or whose rows lack a figure, contributes nothing:
a headline is never made up. Pure: rows in, rows out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


def _row(figure: str, value: float, baseline: str, base: float, unit: str, *, better: str = "higher",
         target: str = "") -> dict:
    ratio = round(value / base, 3) if base else None
    return {"figure": figure, "value": value, "baseline": baseline, "baseline_value": base, "unit": unit,
            "ratio": ratio, "better": better, "target": target}


def _named(rows: Iterable[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in rows if isinstance(r, dict) and isinstance(r.get("name"), str)}


def _rpc(rows: list[dict]) -> list[dict]:
    by_name, out = _named(rows), []
    for name, row in by_name.items():
        if not name.startswith("mesh RPC: "):
            continue
        what = name.removeprefix("mesh RPC: ")
        base = by_name.get(f"raw trio TCP: {what}")
        if base is None:
            continue
        key, unit = ("MB_per_s", "MB/s") if "MB_per_s" in row else ("calls_per_s", "calls/s")
        if key in base:
            out.append(_row(f"mesh RPC, {what}", row[key], "raw trio TCP", base[key], unit))
    return out


def _raft(rows: list[dict]) -> list[dict]:
    by_name = _named(rows)
    ours, base = by_name.get("consensus.RaftLog (durable)"), by_name.get("raw pysyncobj, durable")
    if ours is None or base is None:
        return []
    return [_row(f"Raft writes, {label}", ours[key], "raw pysyncobj (durable)", base[key], "writes/s")
            for key, label in (("writes_per_s_1", "one at a time"), ("writes_per_s_8", "8 threads"))
            if key in ours and key in base]


def _crdt(rows: list[dict]) -> list[dict]:
    by_name, out = _named(rows), []
    for name, row in by_name.items():
        if not name.startswith("ours (LWWMap+SyncCore+codec): apply, "):
            continue
        what = name.split(": ", 1)[1]
        base = by_name.get(f"pycrdt (Yjs): {what}")
        if base is not None and "readings_per_s" in row and "readings_per_s" in base:
            out.append(_row(f"CRDT {what}", row["readings_per_s"], "pycrdt (Yjs)", base["readings_per_s"],
                            "readings/s", target=">= 2"))
    return out


def _offload(rows: list[dict]) -> list[dict]:
    out = []
    prefixes = sorted({r["name"].split("] ")[0] + "] " if r["name"].startswith("[") else ""
                       for r in rows if isinstance(r.get("name"), str)})
    for prefix in prefixes:
        by_name = {n.removeprefix(prefix): r for n, r in _named(rows).items() if n.startswith(prefix)}
        on = next((r for n, r in by_name.items() if n.startswith("all load at") and n.endswith("offload on")), None)
        off = next((r for n, r in by_name.items() if n.startswith("all load at") and n.endswith("offload off")), None)
        total = by_name.get("sum of standalone")
        label = prefix.strip("[] ") or "cluster"
        if on is None or "req_s" not in on:
            continue
        if off is not None and "req_s" in off:
            out.append(_row(f"offload on, {label}", on["req_s"], "offload off", off["req_s"], "req/s"))
        if total is not None and "req_s" in total:
            out.append(_row(f"offload on, {label}", on["req_s"], "sum of nodes standalone", total["req_s"], "req/s",
                            target=">= 0.85"))
    return out


def _planner(rows: list[dict]) -> list[dict]:
    return [_row(f"planner, {r['name'].removesuffix(': summary')} (worst case)", r["worst chosen/best"],
                 "brute force", 1.0, "x predicted ms", better="lower", target="<= 1.1")
            for r in rows if str(r.get("name", "")).endswith(": summary") and "worst chosen/best" in r]


EXTRACTORS: dict[str, Callable[[list[dict]], list[dict]]] = {
    "rpc": _rpc, "raft": _raft, "crdt": _crdt, "offload": _offload, "planner": _planner,
}


def headline(results: dict[str, list[dict]]) -> list[dict]:
    """The headline rows (``suite``, ``figure``, ``value``, ``baseline``, ``baseline_value``, ``ratio``, ...)."""
    out = []
    for suite, extract in EXTRACTORS.items():
        rows = results.get(suite)
        if isinstance(rows, list):
            out += [{"suite": suite, **row} for row in extract(rows)]
    return out


def format_table(rows: list[dict]) -> str:
    """The headline as an aligned text table."""
    if not rows:
        return "(no headline figures: run rpc, raft, crdt, offload or planner)"
    cells = [("suite", "figure", "value", "baseline", "baseline value", "ratio", "target")]
    for r in rows:
        cells.append((r["suite"], r["figure"], f"{r['value']:g} {r['unit']}", r["baseline"],
                      f"{r['baseline_value']:g} {r['unit']}", "-" if r["ratio"] is None else f"{r['ratio']:g}",
                      r["target"]))
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


__all__ = ["EXTRACTORS", "format_table", "headline"]
