"""Voters organize themselves (mesh/voters.py) on real processes.

Three edge voters and a cloud node that forwards. "A voter that stays dead longer than
``raft.replace_after`` is replaced by the leader with the best candidate, one change at a
time, never losing quorum. A graceful leave hands over voting first." (issue 4)
"""

from __future__ import annotations

import itertools
import signal

import pytest
import yaml

from mesh.cluster import LocalCluster, LocalNode, wait_for
from mesh.config import NODE_FILE, Config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long]  # a minute of real restarts: CI stage 2


def set_replace_after(node: LocalNode, seconds: float) -> None:
    path = node.data_dir / NODE_FILE
    raw = yaml.safe_load(path.read_text())
    raw.setdefault("raft", {})["replace_after"] = seconds
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def raft_addr(node: LocalNode) -> str:
    cfg = Config.load(node.data_dir)
    return f"{cfg.listen_host}:{cfg.raft.port}"


def raft_of(node: LocalNode) -> dict:
    return node.client(timeout=5).get("/status")["raft"]


def three_voters_and_a_cloud_forwarder(cluster: LocalCluster, replace_after: float) -> tuple[list[LocalNode], LocalNode]:
    voters = [cluster.init_node(name) for name in ("n1", "n2", "n3")]
    for node in voters:
        set_replace_after(node, replace_after)
    cluster.start_all()
    cluster.wait_mesh()
    cluster.wait_leader()
    cloud = cluster.init_node("n4", tier="cloud")
    set_replace_after(cloud, replace_after)
    cluster.start(cloud)
    cluster.wait_api(cloud)
    cluster.wait_mesh()
    # The seats were taken before it came: a live voter is never swapped for a better node.
    wait_for(lambda: raft_of(cloud)["role"] == "forwarder", 30, "n4 to settle as a forwarder")
    assert sorted(raft_of(voters[0])["voters"]) == sorted(raft_addr(n) for n in voters)
    return voters, cloud


def writes_keep_working(client, counter) -> None:
    key = f"during.{next(counter)}"
    assert client.post("/config/set", {"key": key, "value": 1})["value"] == 1


def test_a_dead_voter_is_replaced_by_the_cloud_forwarder(tmp_path):
    with LocalCluster(tmp_path) as cluster:
        voters, cloud = three_voters_and_a_cloud_forwarder(cluster, replace_after=2.0)
        by_id = {n.peer_id: n for n in voters}
        leader = by_id[cluster.wait_leader()]
        victim = next(n for n in voters if n is not leader)
        dead = raft_addr(victim)
        cluster.stop(victim, signal.SIGKILL)

        counter = itertools.count()
        client = leader.client()

        def replaced() -> bool:
            writes_keep_working(client, counter)  # every poll also commits a write
            seats = raft_of(leader)["voters"]
            return dead not in seats and raft_addr(cloud) in seats and raft_of(cloud)["role"] in ("leader", "follower")

        wait_for(replaced, 60, "the leader to replace the dead voter with n4", interval=0.2)
        assert sorted(raft_of(leader)["voters"]) == sorted([raft_addr(leader), raft_addr(cloud)]
                                                           + [raft_addr(n) for n in voters if n not in (leader, victim)])
        assert next(counter) > 0
        # The new voter serves writes, and every live node reads them.
        assert cloud.client().post("/config/set", {"key": "after", "value": 2})["value"] == 2
        for node in (n for n in cluster.nodes if n.running):
            assert node.client().get("/config/get", key="after")["value"] == 2

        # Restarted, the removed voter runs Raft with its old voter set and journal until the leader, which
        # has committed past the end of its log, tells it it no longer votes: it forwards from then on.
        seats = sorted(raft_of(leader)["voters"])
        cluster.start(victim)
        cluster.wait_api(victim)
        wait_for(lambda: raft_of(victim)["role"] == "forwarder" and raft_of(victim)["leader"], 30,
                 "the removed voter to forward to the leader")
        assert sorted(raft_of(leader)["voters"]) == seats
        assert victim.client().post("/config/set", {"key": "back", "value": 3})["value"] == 3
        assert leader.client().get("/config/get", key="back")["value"] == 3


def test_a_leader_that_stops_gracefully_hands_over_its_vote(tmp_path):
    with LocalCluster(tmp_path) as cluster:
        # replace_after is far longer than the poll below: the seat must change without waiting for it.
        voters, cloud = three_voters_and_a_cloud_forwarder(cluster, replace_after=300.0)
        by_id = {n.peer_id: n for n in voters}
        leaving = by_id[cluster.wait_leader()]
        gone = raft_addr(leaving)
        assert cluster.stop(leaving, signal.SIGTERM) == 0

        rest = [n for n in voters if n is not leaving]
        counter = itertools.count()

        def handed_over() -> bool:
            writes_keep_working(rest[0].client(), counter)
            seats = raft_of(rest[0])["voters"]
            return gone not in seats and raft_addr(cloud) in seats

        wait_for(handed_over, 60, "the stopped leader's seat to go to n4", interval=0.2)
        cluster.wait_leader()

        # Restarted, it does not found a cluster of its own nor reuse its old seat: it forwards.
        cluster.start(leaving)
        cluster.wait_api(leaving)
        cluster.wait_mesh()
        wait_for(lambda: raft_of(leaving)["role"] == "forwarder" and raft_of(leaving)["leader"], 30,
                 "the restarted node to forward to the leader")
        assert leaving.client().post("/config/set", {"key": "back", "value": 3})["value"] == 3
        assert sorted(raft_of(rest[0])["voters"]) == sorted([raft_addr(n) for n in rest] + [raft_addr(cloud)])


def test_the_leader_of_two_voters_stops_gracefully_and_the_other_leads_alone(tmp_path):
    """It hands leadership over before asking to be removed: alone, the other could never be elected."""
    with LocalCluster(tmp_path) as cluster:
        pair = [cluster.init_node(name) for name in ("n1", "n2")]
        cluster.start_all()
        cluster.wait_mesh()
        by_id = {n.peer_id: n for n in pair}
        leaving = by_id[cluster.wait_leader()]
        stays = next(n for n in pair if n is not leaving)
        wait_for(lambda: sorted(raft_of(stays)["voters"]) == sorted(raft_addr(n) for n in pair), 30,
                 "both nodes to vote")
        assert cluster.stop(leaving, signal.SIGTERM) == 0
        assert "handed leadership to" in leaving.log_path.read_text()

        wait_for(lambda: raft_of(stays)["role"] == "leader" and raft_of(stays)["voters"] == [raft_addr(stays)], 30,
                 "the remaining node to lead a voter set of its own")
        assert stays.client().post("/config/set", {"key": "alone", "value": 1})["value"] == 1
