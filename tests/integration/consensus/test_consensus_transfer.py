"""RaftLog.transfer_leadership on a real pysyncobj cluster (a stopping leader hands over first)."""

from __future__ import annotations

import pytest

from consensus import ConfigSet

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60)]


def test_the_leader_hands_leadership_to_another_voter_and_writes_go_on(nodes):
    logs = nodes.cluster(3)
    leader = next(log for log in logs if log.status().role == "leader")
    followers = [log for log in logs if log is not leader]
    assert followers[0].transfer_leadership(2.0) is None  # only a leader can hand leadership over
    leader.submit(ConfigSet(key="before", value=1), timeout=5)

    successor = leader.transfer_leadership(3.0)

    assert successor in {f.status().self_addr for f in followers}
    new = next(f for f in followers if f.status().self_addr == successor)
    nodes.wait_for(lambda: new.status().role == "leader" and leader.status().role == "follower", 5,
                   "the successor to lead and the old leader to follow")
    assert leader.status().voters == new.status().voters  # nobody left: it only stopped leading
    result = leader.submit(ConfigSet(key="after", value=2), timeout=5)
    nodes.wait_for(lambda: all("after" in log.state().config for log in logs), 5, "the write on every node")
    assert new.state().config["after"].revision == result["revision"]


def test_a_lone_voter_has_nobody_to_hand_leadership_to(nodes):
    (only,) = nodes.cluster(1)
    assert only.transfer_leadership(1.0) is None
    assert only.status().role == "leader"
