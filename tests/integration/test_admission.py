"""The admitted-peer list on real processes: admit the running mesh, revoke one, refuse a newcomer.

Issue 3: "when the mesh has an admitted-peer list in Raft, only if its peer id
is on it … revoked peers are disconnected within seconds and cannot rejoin".
"""

from __future__ import annotations

import json
import subprocess

import pytest

from mesh.cluster import LocalCluster, LocalNode, meshnode_cmd, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CUT_WITHIN = 10.0  # "within seconds": a revoke reaches every node in ~1-2 s (ADMISSION_INTERVAL + Raft)


def cli(cluster: LocalCluster, node: LocalNode, *args: str) -> dict:
    """Run a ``meshnode`` client verb against ``node`` and return its JSON."""
    out = subprocess.run(meshnode_cmd(*args, "-d", str(node.data_dir), "--json"), check=False, capture_output=True,
                         text=True, env=cluster.env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def peer_state(node: LocalNode, peer_id: str) -> str:
    """How ``node`` sees ``peer_id``: alive / suspect / gone / left, or "" if unknown."""
    return next((p["state"] for p in node.client(timeout=5).get("/peers") if p["peer_id"] == peer_id), "")


def admission(node: LocalNode) -> dict:
    return node.client(timeout=5).get("/status")["admission"]


def test_revoked_peer_is_cut_everywhere_and_a_newcomer_is_refused(tmp_path):
    with LocalCluster(tmp_path) as cluster:
        for name in ("n0", "n1", "n2"):
            cluster.init_node(name)
        cluster.start_all()
        cluster.wait_mesh()
        leader_id = cluster.wait_leader()
        lead = next(n for n in cluster.nodes if n.peer_id == leader_id)
        others = [n for n in cluster.nodes if n is not lead]
        keeper, victim = others

        # A malformed peer id fails with one line and changes nothing.
        for bad in ("not-a-peer", "abcdefghijkmnopqrstuvwxyzabcdefghijkmnopqrstuvwxyz"):
            out = subprocess.run(meshnode_cmd("admit", bad, "-d", str(lead.data_dir)), check=False,
                                 capture_output=True, text=True, env=cluster.env, timeout=60)
            assert out.returncode == 1 and out.stderr.startswith(f"error: mesh: {bad!r} is not a peer id"), out
        # Open mesh until the first admit; that admit brings the running members along.
        assert cli(cluster, lead, "admitted") == {"enforced": False, "peers": []}
        doc = cli(cluster, lead, "admit", lead.peer_id, "--name", "boss")
        assert doc["name"] == "boss" and sorted(doc["also_admitted"]) == sorted(n.peer_id for n in others)
        everyone = {n.peer_id for n in cluster.nodes}
        for node in cluster.nodes:
            wait_for(lambda node=node: {p["peer_id"] for p in cli(cluster, node, "admitted")["peers"]
                                        if p["status"] == "admitted"} == everyone,
                     CUT_WITHIN, f"{node.name} to enforce the list")
        cluster.wait_mesh(timeout=10)  # nobody locked out
        victim_raft = next(p["raft_addr"] for p in lead.client().get("/peers") if p["peer_id"] == victim.peer_id)
        assert victim_raft in lead.client().get("/status")["raft"]["voters"]

        # Revoke one: cut by every node within seconds, out of Raft, and told why.
        doc = cli(cluster, keeper, "revoke", victim.peer_id)
        assert doc["revoked"] is True and doc["also_admitted"] == []
        for node in (lead, keeper):
            wait_for(lambda node=node: peer_state(node, victim.peer_id) in ("suspect", "gone")
                     and not next(p for p in cli(cluster, node, "admitted")["peers"]
                                  if p["peer_id"] == victim.peer_id)["connected"],
                     CUT_WITHIN, f"{node.name} to drop the revoked peer")
        wait_for(lambda: "revoked" in admission(victim)["notice"], CUT_WITHIN, "the revoked node to learn it")
        wait_for(lambda: victim_raft not in lead.client().get("/status")["raft"]["voters"], CUT_WITHIN,
                 "the leader to remove the revoked voter")
        assert lead.client().post("/config/set", {"key": "after.revoke", "value": 1})["value"] == 1  # quorum kept

        # It cannot come back by itself: a restarted process is refused at once.
        cluster.stop(victim)
        cluster.start(victim)
        cluster.wait_api(victim)
        wait_for(lambda: "revoked" in admission(victim)["notice"], CUT_WITHIN * 2,
                 "the restarted revoked node to be refused")
        assert all(peer_state(node, victim.peer_id) != "alive" for node in (lead, keeper))
        assert not any(p["state"] == "alive" for p in victim.client().get("/peers"))

        # A newcomer holding the mesh key but not on the list is refused too.
        newcomer = cluster.init_node("n3")
        cluster.start(newcomer)
        cluster.wait_api(newcomer)
        wait_for(lambda: "not on the admitted-peer list" in admission(newcomer)["notice"], CUT_WITHIN * 2,
                 "the newcomer to be refused")
        assert peer_state(lead, newcomer.peer_id) != "alive"
        assert newcomer.client().get("/status")["raft"]["role"] == "forwarder"  # never handed Raft

        # One clear line per refused peer in the refusing node's log. The newcomer only ever meets
        # its join address (a refused peer is told nothing of the others), so that node refuses it.
        log = lead.log_path.read_text()
        assert log.count(f"refused peer {victim.peer_id}") == 1, log
        for node in (lead, keeper):
            line = f"refused peer {newcomer.peer_id}: not on the admitted-peer list"
            assert node.log_path.read_text().count(line) <= 1
        join_node = cluster.nodes[0]  # LocalCluster.init_node joins the first node
        assert join_node.log_path.read_text().count(
            f"refused peer {newcomer.peer_id}: not on the admitted-peer list") == 1

        # Admitting the newcomer lets it in (its join loop keeps dialling).
        cli(cluster, keeper, "admit", newcomer.peer_id)
        wait_for(lambda: peer_state(lead, newcomer.peer_id) == "alive" and peer_state(newcomer, lead.peer_id) == "alive",
                 30, "the admitted newcomer to join")
        wait_for(lambda: admission(newcomer)["notice"] == "", 15, "the newcomer's notice to clear")


def test_revoking_the_raft_leader_hands_over_and_removes_it(tmp_path):
    """A revoked leader stops voting; the others elect a leader, which takes it out of the voter set."""
    with LocalCluster(tmp_path) as cluster:
        for name in ("n0", "n1", "n2"):
            cluster.init_node(name)
        cluster.start_all()
        cluster.wait_mesh()
        leader_id = cluster.wait_leader()
        old = next(n for n in cluster.nodes if n.peer_id == leader_id)
        rest = [n for n in cluster.nodes if n is not old]
        old_raft = next(p["raft_addr"] for p in rest[0].client().get("/peers") if p["peer_id"] == old.peer_id)

        doc = cli(cluster, rest[0], "revoke", old.peer_id)  # turns the list on with everyone else
        assert sorted(doc["also_admitted"]) == sorted(n.peer_id for n in rest)

        def new_leader() -> str | None:
            views = [n.client(timeout=5).get("/status")["raft"] for n in rest]
            leaders = {v["leader"] for v in views}
            if len(leaders) == 1 and None not in leaders and leader_id not in leaders and all(
                old_raft not in v["voters"] for v in views
            ):
                return leaders.pop()
            return None

        assert wait_for(new_leader, 30, "a new leader without the revoked voter") in {n.peer_id for n in rest}
        wait_for(lambda: "revoked" in admission(old)["notice"], CUT_WITHIN, "the old leader to learn it")
        # It stops voting on reading its revocation, or once a majority of the voters refuse it
        # (a voter that lagged may be removed and re-keyed out before the revoke reaches it).
        wait_for(lambda: old.client().get("/status")["raft"]["role"] == "forwarder", CUT_WITHIN,
                 "the old leader to stop voting")
        assert rest[1].client().post("/config/set", {"key": "after", "value": 2})["value"] == 2
        for node in rest:
            wait_for(lambda node=node: peer_state(node, old.peer_id) != "alive", CUT_WITHIN,
                     f"{node.name} to drop the old leader")
