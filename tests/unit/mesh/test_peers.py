"""The peer table's states follow the module's table: alive, suspect, gone."""

from __future__ import annotations

import pytest

from crdt.errors import RemoteProtocolError
from mesh.peers import (
    GONE_AFTER,
    LOAD_EXPIRES_AFTER,
    MAX_ADVERT_MODELS,
    SUSPECT_AFTER,
    Descriptor,
    Load,
    PeerTable,
    RunTimes,
)


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


def test_a_dead_peer_that_keeps_speaking_is_back_once_not_at_every_advert():
    table = PeerTable("me")
    table.heard(desc(), now=0.0)
    table.judge("p1", "dead")  # the detector lost it while the connection lingered
    assert table.heard(desc(), now=1.0) is False  # the same connection: not a return
    table.connection("p1", False)
    assert table.heard(desc(), now=2.0) is True  # a new connection after a drop is
    assert [table.heard(desc(), now=2.0 + i) for i in range(1, 10)] == [False] * 9
    assert table.get("p1").state(12.0) == "gone"  # until the detector sees it alive again


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


# -- adverts: soft state that expires ------------------------------------------------------


def test_an_advert_load_is_used_only_until_it_expires():
    """Soft state: a peer's load and speed older than LOAD_EXPIRES_AFTER are no longer used."""
    table = PeerTable("me")
    table.heard(desc(), now=0.0)
    assert table.get("p1").fresh_load(0.0) is None and table.get("p1").load_age(0.0) is None  # no advert yet
    load = Load(queue=1, max_queue=4, models=("m",), latency_ms=12.5, speed_ms=(("m", 3.0),))
    table.set_load("p1", load, now=10.0)
    rec = table.get("p1")
    assert rec.fresh_load(10.0 + LOAD_EXPIRES_AFTER) == load and rec.load_age(11.5) == 1.5
    assert rec.fresh_load(10.0 + LOAD_EXPIRES_AFTER + 0.01) is None
    assert [r.descriptor.peer_id for r, _ in table.loads(11.0)] == ["p1"]
    # Alive (heard through hello or the failure detector) but its adverts stopped: no figures.
    table.heard(desc(), now=10.0 + LOAD_EXPIRES_AFTER + 1)
    assert table.get("p1").state(10.0 + LOAD_EXPIRES_AFTER + 1) == "alive"
    assert table.loads(10.0 + LOAD_EXPIRES_AFTER + 1) == []
    table.set_load("p1", load, now=20.0)  # a new advert makes it fresh again
    assert table.loads(20.0)[0][1] == load


def test_a_departed_peer_has_no_load():
    table = PeerTable("me")
    table.heard(desc(), now=0.0)
    table.set_load("p1", Load(queue=1, max_queue=4), now=0.0)
    table.departed("p1")
    assert table.get("p1").fresh_load(0.0) is None and table.loads(0.0) == []


def test_load_round_trips_and_reads_the_old_shape():
    load = Load(queue=2, max_queue=8, models=("a", "b"), latency_ms=4.25, speed_ms=(("a", 1.5), ("b", 30.0)))
    assert Load.from_wire(load.to_wire()) == load
    assert load.speed("b") == 30.0 and load.speed("c") is None
    # Adverts from nodes that predate the figures: no latency, no speeds, still valid.
    old = Load.from_wire({"queue": 1, "max_queue": 4, "models": ["a"]})
    assert old == Load(queue=1, max_queue=4, models=("a",)) and old.speed("a") is None
    assert Load.from_wire({**load.to_wire(), "future_key": [1, 2]}) == load  # unknown keys are ignored


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({"queue": -1}, "queue"),
        ({"queue": True}, "queue"),
        ({"max_queue": 1.5}, "queue"),
        ({"max_queue": 2**40}, "queue"),
        ({"models": "m"}, "models"),
        ({"models": ["m"] * (MAX_ADVERT_MODELS + 1)}, "models"),
        ({"models": ["x" * 1000]}, "models"),
        ({"models": [""]}, "models"),
        ({"latency_ms": -1.0}, "latency_ms"),
        ({"latency_ms": float("nan")}, "latency_ms"),
        ({"latency_ms": float("inf")}, "latency_ms"),
        ({"latency_ms": "1"}, "latency_ms"),
        ({"latency_ms": False}, "latency_ms"),
        ({"latency_ms": 1e300}, "latency_ms"),
        ({"speed_ms": [["m", 1.0]]}, "speed_ms"),
        ({"speed_ms": {"m": -0.5}}, "speed_ms"),
        ({"speed_ms": {"m": float("nan")}}, "speed_ms"),
        ({"speed_ms": {"m": None}}, "speed_ms"),
        ({"speed_ms": {1: 1.0}}, "speed_ms"),
        ({"speed_ms": {f"m{i}": 1.0 for i in range(MAX_ADVERT_MODELS + 1)}}, "speed_ms"),
    ],
)
def test_malformed_advert_figures_are_refused(patch, needle):
    good = Load(queue=0, max_queue=4, models=("m",), latency_ms=1.0, speed_ms=(("m", 1.0),)).to_wire()
    with pytest.raises(RemoteProtocolError, match=f"^mesh: advert .*{needle}"):
        Load.from_wire({**good, **patch})


def test_run_times_are_an_ewma_per_model_and_forget_unloaded_models():
    times = RunTimes(alpha=0.5)
    assert times.speed_ms() == () and times.latency_ms == 0.0
    times.record("a", run_ms=10.0, latency_ms=20.0)
    times.record("a", run_ms=20.0, latency_ms=40.0)
    times.record("b", run_ms=4.0, latency_ms=4.0)
    assert times.speed_ms() == (("a", 15.0), ("b", 4.0))
    assert times.latency_ms == 17.0  # 20 -> 30 -> 17: latency is over every request, any model
    times.forget({"b"})
    assert times.speed_ms() == (("b", 4.0),)
    # Bounded: figures for at most max_models models.
    small = RunTimes(max_models=2)
    for name in "xyz":
        small.record(name, run_ms=1.0, latency_ms=1.0)
    assert [m for m, _ in small.speed_ms()] == ["x", "y"]
    assert Load.from_wire(Load(queue=0, max_queue=1, speed_ms=times.speed_ms()).to_wire()).speed("b") == 4.0


def test_routing_weighs_only_unexpired_figures():
    """Routing never uses an expired advert (its load, speed and profile are soft state)."""
    table = PeerTable("me")
    table.heard(desc("fast", name="fast", tier="cloud"), now=0.0)
    table.heard(desc("slow", name="slow", tier="device"), now=0.0)
    table.set_load("fast", Load(queue=1, max_queue=4, models=("m",), speed_ms=(("m", 5.0),)), now=0.0)
    table.set_load("slow", Load(queue=0, max_queue=4, models=("m",), speed_ms=(("m", 80.0),)), now=3.0)
    assert [(r.descriptor.peer_id, load.speed("m")) for r, load in table.loads(3.0)] == [("fast", 5.0), ("slow", 80.0)]
    # Later, "fast" is still alive (heard) but its last advert is older than LOAD_EXPIRES_AFTER.
    later = LOAD_EXPIRES_AFTER + 1.0
    table.heard(desc("fast", name="fast", tier="cloud"), now=later)
    assert table.get("fast").state(later) == "alive"
    assert [r.descriptor.peer_id for r, _ in table.loads(later)] == ["slow"]


def test_descriptor_start_time_round_trips_and_is_checked():
    d = desc("a", started_at=1_790_000_000.5)
    assert Descriptor.from_wire(d.to_wire()) == d
    old = {k: v for k, v in d.to_wire().items() if k != "started_at"}  # a node from before started_at
    assert Descriptor.from_wire(old).started_at == 0.0
    for bad in (-1, float("nan"), float("inf"), 2.0**40, "1", True, None):
        with pytest.raises(RemoteProtocolError, match="started_at"):
            Descriptor.from_wire({**d.to_wire(), "started_at": bad})


def test_advertised_memory_round_trips_and_is_checked():
    load = Load(queue=0, max_queue=4, memory_free=123_456)
    assert Load.from_wire(load.to_wire()).memory_free == 123_456
    assert Load.from_wire(Load(queue=0, max_queue=4).to_wire()).memory_free is None  # not reported
    for bad in (-1, 1.5, "lots", True):
        with pytest.raises(RemoteProtocolError, match="memory_free"):
            Load.from_wire({**load.to_wire(), "memory_free": bad})
