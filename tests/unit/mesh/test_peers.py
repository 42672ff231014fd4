"""The peer table's states follow the module's table: alive, suspect, gone."""

from __future__ import annotations

import pytest

from crdt.errors import RemoteProtocolError
from mesh.peers import GONE_AFTER, SUSPECT_AFTER, Descriptor, Load, PeerTable


def desc(pid="p1", **kw):
    return Descriptor(peer_id=pid, name=kw.pop("name", "n1"), tier=kw.pop("tier", "edge"), **kw)


def test_states_follow_freshness_and_connection():
    table = PeerTable("me")
    assert table.heard(desc(), now=0.0) is True
    assert table.heard(desc(), now=0.5) is False
    assert table.get("p1").state(1.0) == "alive"
    assert table.get("p1").state(0.5 + SUSPECT_AFTER + 0.1) == "suspect"
    assert table.get("p1").state(0.5 + GONE_AFTER + 0.1) == "gone"
    table.connection("p1", False)
    assert table.get("p1").state(1.0) == "gone"
    table.set_load("p1", Load(queue=2, max_queue=4, models=("m",)), now=2.0)
    assert table.get("p1").state(2.0) == "alive" and table.get("p1").load.queue == 2


def test_self_is_never_a_peer():
    table = PeerTable("me")
    assert table.heard(desc("me"), now=0) is False and table.records() == []


def test_descriptor_round_trip_and_lookup_by_raft_addr():
    d = desc(capabilities=("gpu",), addrs=("/ip4/127.0.0.1/tcp/1/p2p/p1",), raft_addr="127.0.0.1:9")
    assert Descriptor.from_wire(d.to_wire()) == d
    table = PeerTable("me")
    table.heard(d, now=0)
    assert table.by_raft_addr("127.0.0.1:9").descriptor == d and table.by_raft_addr("x") is None


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({"tier": "moon"}, "tier"),
        ({"name": ""}, "name"),
        ({"capabilities": "gpu"}, "capabilities"),
        ({"peer_id": 5}, "peer_id"),
    ],
)
def test_malformed_descriptor_is_refused(patch, needle):
    with pytest.raises(RemoteProtocolError, match=needle):
        Descriptor.from_wire({**desc().to_wire(), **patch})


def test_malformed_load_is_refused():
    with pytest.raises(RemoteProtocolError):
        Load.from_wire({"queue": -1, "max_queue": 1})
    with pytest.raises(RemoteProtocolError):
        Load.from_wire({"queue": 0, "max_queue": 1, "models": "m"})


def test_a_peer_back_from_gone_counts_as_joining_again():
    table = PeerTable("me")
    assert table.heard(desc(), now=0.0) is True
    table.connection("p1", False)
    table.connection("p1", True)  # a new connection alone is only a hint
    assert table.get("p1").state(1.0) == "gone"
    assert table.heard(desc(), now=1.0) is True  # it spoke again: sync and adverts must restart
    assert table.heard(desc(), now=2.0) is False
    assert table.heard(desc(), now=2.0 + GONE_AFTER + 1) is True  # silent too long, then heard again


def test_goodbye_marks_a_peer_left_until_it_speaks_again():
    table = PeerTable("me")
    table.heard(desc(), now=0.0)
    assert table.departed("p1") is True and table.departed("p1") is False
    assert table.get("p1").state(0.1) == "left"
    table.set_load("p1", Load(queue=1, max_queue=2), now=0.2)  # a late advert does not revive it
    assert table.get("p1").state(0.2) == "left"
    assert table.heard(desc(), now=5.0) is True and table.get("p1").state(5.0) == "alive"
    assert table.departed("unknown") is False


def test_failure_detector_verdicts_override_hints():
    table = PeerTable("me")
    table.heard(desc(), now=0.0)
    assert table.judge("p1", "alive") == ""
    table.connection("p1", False)
    assert table.get("p1").state(0.1) == "suspect"  # a lost connection alone is only a hint
    table.judge("p1", "dead")
    assert table.get("p1").state(0.1) == "gone"
    table.heard(desc(), now=1.0)
    assert table.get("p1").state(1.0) == "gone"  # until the detector sees it alive again
    assert table.judge("p1", "alive") == "dead" and table.get("p1").state(1.0) == "alive"
    assert table.judge("nobody", "dead") == ""


def test_a_restart_is_not_a_duplicate_but_two_live_instances_are():
    table = PeerTable("me")
    first, second = desc(instance="i1"), desc(instance="i2")
    assert table.duplicate(first, now=0.0) is None
    assert table.duplicate(first, now=1.0) is None
    assert table.duplicate(second, now=2.0) is None  # a restart: the old instance has gone quiet
    assert table.duplicate(second, now=3.0) is None
    assert table.duplicate(first, now=4.0) == ("i1", "i2")  # ... unless it speaks again
    assert table.duplicate(desc(), now=5.0) is None  # peers that send no instance are not judged
    later = PeerTable("me")
    later.duplicate(first, now=0.0)
    assert later.duplicate(second, now=20.0) is None  # long after: a restart, whatever came before
