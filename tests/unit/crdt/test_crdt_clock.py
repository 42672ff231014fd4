"""Timestamp order and the hybrid logical clock (Kulkarni et al. 2014, Fig. 5)."""

from __future__ import annotations

import pytest

from crdt import HybridLogicalClock, LocalProtocolError, RemoteProtocolError, Timestamp


def test_timestamps_order_by_wall_then_counter_then_node():
    assert Timestamp(1, 9, "z") < Timestamp(2, 0, "a")
    assert Timestamp(5, 1, "z") < Timestamp(5, 2, "a")
    # Same wall time and counter on two nodes: the node id breaks the tie.
    assert Timestamp(5, 1, "a") < Timestamp(5, 1, "b")
    assert sorted([Timestamp(5, 1, "b"), Timestamp(5, 1, "a"), Timestamp(4, 7, "c")]) == [
        Timestamp(4, 7, "c"),
        Timestamp(5, 1, "a"),
        Timestamp(5, 1, "b"),
    ]


def test_timestamp_is_frozen_and_hashable():
    ts = Timestamp(1, 2, "a")
    with pytest.raises(AttributeError):
        ts.wall_ms = 3  # type: ignore[misc]
    assert {ts, Timestamp(1, 2, "a")} == {ts}


def test_timestamp_wire_round_trip():
    ts = Timestamp(1_700_000_000_123, 4, "node-a")
    assert ts.to_wire() == [1_700_000_000_123, 4, "node-a"]
    assert Timestamp.from_wire(ts.to_wire()) == ts
    assert Timestamp.from_wire(tuple(ts.to_wire())) == ts


@pytest.mark.parametrize(
    "obj, words",
    [
        (None, "expected a list"),
        ([1, 2], "of 3 items"),
        ([-1, 0, "a"], "wall_ms must be between 0"),
        ([1, -1, "a"], "counter must be between 0"),
        ([1.5, 0, "a"], "wall_ms must be an int"),
        ([True, 0, "a"], "wall_ms must be an int"),
        ([1, 0, ""], "node must be 1 to"),
        ([1, 0, 7], "node must be a string"),
        ([2**63, 0, "a"], "wall_ms must be between 0"),
    ],
)
def test_timestamp_from_wire_refuses_malformed_input(obj, words):
    with pytest.raises(RemoteProtocolError, match=words) as info:
        Timestamp.from_wire(obj)
    assert str(info.value).startswith("crdt: timestamp: ")


def test_building_a_bad_timestamp_is_a_local_error():
    with pytest.raises(LocalProtocolError, match="^crdt: Timestamp.counter"):
        Timestamp(1, -1, "a")


def test_now_follows_wall_time_and_counts_within_a_millisecond():
    clock = HybridLogicalClock("a")
    assert clock.last is None
    assert clock.now(100) == Timestamp(100, 0, "a")
    assert clock.now(100) == Timestamp(100, 1, "a")
    assert clock.now(101) == Timestamp(101, 0, "a")
    assert clock.last == Timestamp(101, 0, "a")


def test_now_stays_strictly_increasing_across_a_backwards_clock_jump():
    # "l.j := max(l', pt.j); if l.j = l' then c.j := c.j + 1 else c.j := 0"
    clock = HybridLogicalClock("a")
    stamps = [clock.now(wall) for wall in (1000, 1001, 500, 500, 10, 999, 1001, 1002)]
    assert all(a < b for a, b in zip(stamps, stamps[1:]))
    assert stamps[2] == Timestamp(1001, 1, "a")  # wall time went back: the counter carries order
    assert stamps[-1] == Timestamp(1002, 0, "a")  # and wall time takes over again once it catches up


def test_observe_takes_the_remote_time_when_it_is_ahead():
    # "else if l.j = l.m then c.j := c.m + 1"
    clock = HybridLogicalClock("a")
    clock.now(100)
    clock.observe(Timestamp(200, 5, "b"), 150)
    assert clock.last == Timestamp(200, 6, "a")
    assert clock.now(150) > Timestamp(200, 5, "b")


def test_observe_with_equal_logical_times_takes_the_larger_counter():
    # "if l.j = l' = l.m then c.j := max(c.j, c.m) + 1"
    clock = HybridLogicalClock("a", last=Timestamp(200, 2, "a"))
    clock.observe(Timestamp(200, 7, "b"), 100)
    assert clock.last == Timestamp(200, 8, "a")
    clock.observe(Timestamp(200, 1, "b"), 100)
    assert clock.last == Timestamp(200, 9, "a")


def test_observe_of_an_older_remote_time_only_ticks_the_counter():
    # "else if l.j = l' then c.j := c.j + 1"
    clock = HybridLogicalClock("a", last=Timestamp(300, 4, "a"))
    clock.observe(Timestamp(100, 50, "b"), 200)
    assert clock.last == Timestamp(300, 5, "a")


def test_observe_when_wall_time_is_ahead_of_both_resets_the_counter():
    # "else c.j := 0"
    clock = HybridLogicalClock("a", last=Timestamp(300, 4, "a"))
    clock.observe(Timestamp(310, 9, "b"), 400)
    assert clock.last == Timestamp(400, 0, "a")


def test_observe_on_a_fresh_clock():
    clock = HybridLogicalClock("a")
    clock.observe(Timestamp(500, 3, "b"), 10)
    assert clock.last == Timestamp(500, 4, "a")
    fresh = HybridLogicalClock("a")
    fresh.observe(Timestamp(5, 3, "b"), 10)
    assert fresh.last == Timestamp(10, 0, "a")


def test_a_restored_clock_continues_after_its_persisted_reading():
    clock = HybridLogicalClock("a")
    for wall in (1000, 1000, 1000):
        last = clock.now(wall)
    restored = HybridLogicalClock("a", last=last)
    assert restored.last == last
    assert restored.now(900) > last  # the machine rebooted with its clock behind


def test_restoring_from_another_nodes_timestamp_is_refused():
    with pytest.raises(LocalProtocolError, match="^crdt: cannot restore 'a'"):
        HybridLogicalClock("a", last=Timestamp(1, 0, "b"))


@pytest.mark.parametrize("wall", [-1, 1.5, None, True])
def test_now_refuses_a_bad_wall_time(wall):
    with pytest.raises(LocalProtocolError, match="^crdt: wall_ms"):
        HybridLogicalClock("a").now(wall)
