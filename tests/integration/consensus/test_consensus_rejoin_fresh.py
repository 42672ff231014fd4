"""Joining afresh: a node's old Raft journal must not bring back the voter set it once had.

Found by an hour-long chaos run: a node that had handed over its vote rejoined later; pysyncobj
replayed the voter set from its old journal and the entries of its old cluster, so its view of
the voters (and its state machine) was no longer the cluster's, and the cluster's leader, which
had already counted it as a voter, could not commit or be elected again. A node now discards its journal
when it joins a cluster it is not a member of (``consensus.discard_journal``, used by ``mesh.node``).
"""

from __future__ import annotations

import pytest

from consensus import ConfigSet, discard_journal

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(90)]


def test_a_fresh_joiner_takes_the_voters_it_is_given_and_nothing_of_its_old_cluster(nodes):
    joiner_addr, other_addr, leader_addr = sorted(nodes.free_addr() for _ in range(3))

    # The joiner's past: a cluster of itself and a node that is gone now.
    old = nodes.start(joiner_addr, [], "joiner")
    nodes.wait_for(lambda: old.status().role == "leader", 5, "the old cluster's leader")
    gone = nodes.start(other_addr, [joiner_addr], "gone")
    old.add_voter(other_addr, timeout=5)
    old.submit(ConfigSet(key="old", value=1), timeout=5)
    old.close()
    gone.close()

    leader = nodes.start(leader_addr, [], "leader")
    nodes.wait_for(lambda: leader.status().role == "leader", 5, "the new cluster's leader")
    leader.submit(ConfigSet(key="new", value=2), timeout=5)

    # With its old journal, the node would bring back the voter it had (and applied entries the new
    # cluster never had: pysyncobj warns its state machine may have diverged).
    stale = nodes.start(joiner_addr, [leader_addr], "joiner")
    assert other_addr in stale.status().voters and "old" in stale.state().config
    stale.close()

    assert "raft.wal" in discard_journal(nodes.root / "joiner")
    fresh = nodes.start(joiner_addr, [leader_addr], "joiner")
    assert sorted(fresh.status().voters) == sorted([joiner_addr, leader_addr])
    leader.add_voter(joiner_addr, timeout=10)
    nodes.wait_for(lambda: "new" in fresh.state().config, 10, "the fresh joiner to catch up")
    assert "old" not in fresh.state().config  # nothing of its old cluster came back
    assert sorted(fresh.status().voters) == sorted(leader.status().voters)
