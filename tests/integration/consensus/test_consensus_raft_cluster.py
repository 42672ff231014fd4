"""A real three-node RaftLog cluster on loopback: joins, replication, loss of majority, restart."""

from __future__ import annotations

import time

import pytest

from consensus import (
    ConfigGet,
    ConfigSet,
    ConsensusError,
    ConsensusUnavailable,
    MemberAdd,
    ModelRecord,
    ModelRegister,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60)]


def leader_and_followers(logs):
    leader = next(log for log in logs if log.status().role == "leader")
    return leader, [log for log in logs if log is not leader]


def test_a_write_on_a_follower_is_read_through_the_log_on_every_node(nodes):
    logs = nodes.cluster(3)
    leader, followers = leader_and_followers(logs)
    assert len(followers) == 2

    result = followers[0].submit(ConfigSet(key="threshold", value=0.75), timeout=5)
    assert result["key"] == "threshold" and result["value"] == 0.75

    for log in logs:  # linearizable read: ConfigGet goes through the leader and the log
        assert log.submit(ConfigGet(key="threshold"), timeout=5) == {
            "value": 0.75,
            "revision": result["revision"],
        }
    for log in logs:
        assert log.state().config["threshold"].value == 0.75
    terms = {log.status().term for log in logs}
    assert len(terms) == 1


def test_refusals_and_results_are_the_same_on_every_node(nodes):
    logs = nodes.cluster(3)
    record = dict(size=1, inputs=[], outputs=[], origin="p1")
    logs[1].submit(ModelRegister(record=ModelRecord(name="m", sha256="a" * 64, **record)), timeout=5)
    with pytest.raises(ConsensusError, match="already registered") as info:
        logs[2].submit(ModelRegister(record=ModelRecord(name="m", sha256="b" * 64, **record)), timeout=5)
    assert not isinstance(info.value, ConsensusUnavailable)
    logs[0].submit(MemberAdd(peer_id="p1", raft_addr=logs[0].status().self_addr), timeout=5)
    nodes.wait_for(
        lambda: all(log.state().revision == 2 for log in logs), 5, "every node to apply both writes"
    )
    assert logs[0].state() == logs[1].state() == logs[2].state()


def test_without_a_majority_a_write_fails_within_its_timeout(nodes):
    logs = nodes.cluster(3)
    logs[0].submit(ConfigSet(key="before", value=1), timeout=5)
    survivor = logs[2]
    logs[0].close()
    logs[1].close()

    started = time.monotonic()
    with pytest.raises(ConsensusUnavailable, match="^consensus: no majority"):
        survivor.submit(ConfigSet(key="after", value=2), timeout=2)
    assert time.monotonic() - started < 3.0
    assert "after" not in survivor.state().config


def test_a_restarted_node_keeps_its_state_and_term(nodes):
    logs = nodes.cluster(3)
    addrs = [log.status().self_addr for log in logs]
    logs[1].submit(ConfigSet(key="kept", value="yes"), timeout=5)
    nodes.wait_for(lambda: "kept" in logs[2].state().config, 5, "node 3 to apply the write")
    term = logs[2].status().term
    state = logs[2].state()

    for log in logs:  # the whole cluster goes down: only node 3's own files can bring it back
        log.close()
    again = nodes.start(addrs[2], addrs[:2], "n3")
    assert again.state() == state
    assert again.status().term >= term
    assert again.status().voters == sorted(addrs)

    # and once a majority is back it commits new writes on top of what it had
    nodes.start(addrs[0], addrs[1:], "n1")
    again.submit(ConfigSet(key="later", value=1), timeout=10)
    assert again.state().config["kept"].value == "yes"
    assert again.status().term >= term


def test_remove_voter_shrinks_the_majority(nodes):
    logs = nodes.cluster(3)
    gone = logs[2].status().self_addr
    logs[0].remove_voter(gone, timeout=5)
    for log in logs[:2]:
        nodes.wait_for(lambda: gone not in log.status().voters, 5, "the removal to reach node 2")
    logs[2].close()
    # two voters left, both up: a majority of the new configuration
    assert logs[1].submit(ConfigSet(key="k", value=1), timeout=5)["value"] == 1


def test_add_voter_times_out_when_the_new_node_is_not_running(nodes):
    first = nodes.start(nodes.free_addr(), [], "n1")
    nodes.wait_for(lambda: first.status().role == "leader", 5, "node 1 to lead")
    started = time.monotonic()
    with pytest.raises(ConsensusUnavailable, match="partners = the current voters"):
        first.add_voter(nodes.free_addr(), timeout=1)
    assert time.monotonic() - started < 2.0
