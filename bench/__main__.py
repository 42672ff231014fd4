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


def main() -> None:
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"some of {', '.join(SUITES)} (default: all)")
    parser.add_argument("--json", dest="json_file", help="Also write the figures to this file.")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="How long suites that observe a running mesh (starvation) watch it.")
    args = parser.parse_args()
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    args.suites = args.suites or list(SUITES)
    results = {}
    for name in args.suites:
        module = __import__(SUITES[name], fromlist=["run"])
        takes_duration = "seconds" in inspect.signature(module.run).parameters
        rows = module.run(seconds=args.duration) if args.duration and takes_duration else module.run()
        results[name] = rows
        print(f"== {name}")
        for row in rows:
            print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    if args.json_file:
        with open(args.json_file, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
