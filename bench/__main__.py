"""``python -m bench [--json FILE] [NAME...]``: run the benchmarks and print figures beside baselines."""

from __future__ import annotations

import argparse
import inspect
import json
import logging

SUITES = {
    "rpc": "bench.rpc",
    "raft": "bench.raft",
    "membership": "bench.membership_curve",
    "failure-detection": "bench.failure_detection",
    "starvation": "bench.starvation",
    "failover": "bench.failover",
    "crdt": "bench.crdt",
    "crdt-heal": "bench.crdt_heal",
    "crdt-sim": "bench.crdt_sim",
    "partition": "bench.partition",
    "quantize": "bench.quantize",
    "planner": "bench.planner",
    "batching": "bench.batching",
    "offload": "bench.offload",
}


def run_suites(names: list[str], duration: float | None = None, progress=print) -> dict[str, list[dict]]:
    """Run the named suites in order; returns ``{suite: rows}`` and reports each suite's rows as it ends."""
    unknown = [s for s in names if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    results = {}
    for name in names or list(SUITES):
        module = __import__(SUITES[name], fromlist=["run"])
        takes_duration = "seconds" in inspect.signature(module.run).parameters
        rows = module.run(seconds=duration) if duration and takes_duration else module.run()
        results[name] = rows
        progress(f"== {name}")
        for row in rows:
            progress("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    return results


def main() -> None:
    from .summary import format_table, headline

    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"some of {', '.join(SUITES)} (default: all)")
    parser.add_argument("--json", dest="json_file", help="Also write the figures to this file.")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="How long suites that observe a running mesh (starvation) watch it.")
    args = parser.parse_args()
    try:
        results = run_suites(args.suites, args.duration)
    except ValueError as exc:
        parser.error(str(exc))
    print("== headline: each figure beside its baseline, measured in the same run")
    print(format_table(headline(results)))
    if args.json_file:
        with open(args.json_file, "w") as fh:
            json.dump({**results, "headline": headline(results)}, fh, indent=2)


if __name__ == "__main__":
    main()
