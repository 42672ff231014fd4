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


def test_the_local_backend_skips_network_faults_and_says_why():
    keep, skipped = runnable_nemeses(("partition-halves", "kill", "pause", "netem"), "local", 5)
    assert keep == ["kill", "pause"]
    assert set(skipped) == {"partition-halves", "netem"} and "namespace" in skipped["partition-halves"]


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
