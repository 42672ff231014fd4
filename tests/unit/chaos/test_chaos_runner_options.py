"""`meshnode chaos run`'s options and backend choice: bad input refused by name, nemeses the backend cannot apply named."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from crdt.errors import MeshError
from mesh.chaos.runner import RunOptions, runnable_nemeses
from mesh.cli import main


@pytest.mark.parametrize("field, value, needle", [
    ("nodes", 2, "--nodes"), ("duration", 5.0, "--duration"), ("workloads", ("dance",), "workload"),
    ("backend", "cloud", "--backend"), ("clients", 0, "--clients"),
])
def test_bad_options_are_refused_by_name(field, value, needle):
    with pytest.raises(MeshError, match=needle):
        RunOptions(**{field: value})


def test_the_local_backend_cuts_links_both_ways_only_and_says_why():
    """Without root, partitions go through the nodes' fault filter; a one-way cut and netem cannot."""
    requested = ("partition-halves", "partition-leader", "partition-one-way", "kill", "pause", "netem", "clock-jump")
    keep, skipped = runnable_nemeses(requested, "local", 5)
    assert keep == ["partition-halves", "partition-leader", "kill", "pause", "clock-jump"]
    assert set(skipped) == {"partition-one-way", "netem"} and "both ways" in skipped["partition-one-way"]


def test_the_cli_default_workloads_are_the_runners():
    import click

    from mesh.cli import chaos_run

    default = next(p.default for p in chaos_run.params if isinstance(p, click.Option) and p.name == "workloads")
    assert tuple(default.split(",")) == RunOptions().workloads


def test_a_ring_needs_four_nodes_and_unknown_nemeses_are_refused():
    keep, skipped = runnable_nemeses(("partition-ring",), "netns", 3)
    assert keep == [] and "4 nodes" in skipped["partition-ring"]
    with pytest.raises(MeshError, match="unknown nemesis"):
        runnable_nemeses(("earthquake",), "netns", 5)


def test_the_cli_lists_and_refuses_in_one_line():
    listing = CliRunner().invoke(main, ["chaos", "list", "--json"])
    assert listing.exit_code == 0 and '"linearizable"' in listing.output and '"partition-ring"' in listing.output
    bad = CliRunner().invoke(main, ["chaos", "run", "--nemesis", "earthquake"])
    assert bad.exit_code == 1 and "unknown nemesis 'earthquake'" in bad.output
