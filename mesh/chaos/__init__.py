"""The chaos harness: real nodes, workloads, a seeded fault schedule, heal, checkers and a report."""
