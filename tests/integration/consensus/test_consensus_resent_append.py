"""A follower that gets an old append again keeps the entries it holds (real pysyncobj cluster).

pysyncobj cut a follower's log after the append's prevLogIdx whenever it went on
further, so a resent, shorter append shortened the log below what the follower
had acknowledged and undid the membership changes in the cut part.
"""

from __future__ import annotations

import logging
import threading

import pytest

from consensus import ConfigSet

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60)]


def on_tick_thread(raft, action):
    """Run ``action(syncobj)`` once on pysyncobj's own thread (the only one that may touch its log)."""
    done, out = threading.Event(), {}
    node = raft._node

    def callback():  # called with pysyncobj's callback lock held: it must not remove itself
        if not done.is_set():
            try:
                out["value"] = action(node)
            finally:
                done.set()

    node.addOnTickCallback(callback)
    try:
        assert done.wait(5), "pysyncobj's thread never ran the callback"
    finally:
        node.removeOnTickCallback(callback)
    return out["value"]


def test_a_resent_shorter_append_leaves_the_follower_log_and_voters_whole(nodes, caplog):
    logs = nodes.cluster(3)
    leader = next(log for log in logs if log.status().role == "leader")
    follower = next(log for log in logs if log is not leader)
    for i in range(40):
        leader.submit(ConfigSet(key=f"k{i}", value=i), timeout=5)
    nodes.wait_for(lambda: follower.status().last_applied >= leader.status().commit_index, 5,
                   "the follower to apply every write")
    voters = follower.status().voters

    def resend(node):
        journal = node._SyncObj__raftLog
        before = [tuple(e) for e in journal[:]]
        first = before[0][1]
        prev = before[-1][1] - 30  # an append of 5 entries from 30 back, as a rewound leader resends
        entries = before[prev - first + 1: prev - first + 6]
        message = {"type": "append_entries", "term": node.raftCurrentTerm, "commit_index": node.raftCommitIndex,
                   "prevLogIdx": prev, "prevLogTerm": before[prev - first][2], "entries": entries}
        node._SyncObj__transport._onMessageReceived(node._getLeader(), message)
        return before, [tuple(e) for e in journal[:]]

    with caplog.at_level(logging.CRITICAL, logger="pysyncobj"):
        before, after = on_tick_thread(follower, resend)
    assert after == before, f"the follower's log went from {len(before)} to {len(after)} entries"
    assert not [r for r in caplog.records if "truncating" in r.getMessage()]
    assert follower.status().voters == voters

    # Replication goes on from where it was: a new write reaches the follower.
    result = leader.submit(ConfigSet(key="after", value=1), timeout=5)
    nodes.wait_for(lambda: "after" in follower.state().config, 5, "the write after the resend on the follower")
    assert follower.state().config["after"].revision == result["revision"]
