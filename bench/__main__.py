"""``python -m bench [--json FILE] [NAME...]``: run the benchmarks and print figures beside baselines."""

from __future__ import annotations

import argparse
import json
import logging

SUITES = {
    "rpc": "bench.rpc",
    "raft": "bench.raft",
    "membership": "bench.membership_curve",
    "failure-detection": "bench.failure_detection",
    "starvation": "bench.starvation",
}


def main() -> None:
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"some of {', '.join(SUITES)} (default: all)")
    parser.add_argument("--json", dest="json_file", help="Also write the figures to this file.")
    args = parser.parse_args()
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    args.suites = args.suites or list(SUITES)
    results = {}
    for name in args.suites:
        module = __import__(SUITES[name], fromlist=["run"])
        rows = module.run()
        results[name] = rows
        print(f"== {name}")
        for row in rows:
            print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    if args.json_file:
        with open(args.json_file, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
