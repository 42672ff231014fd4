"""The LWW map: last writer wins by hybrid timestamp, dots say who has seen what."""

from __future__ import annotations

import pytest

from crdt import (
    CausalContext,
    Delta,
    Dot,
    Entry,
    HybridLogicalClock,
    LocalProtocolError,
    LWWMap,
    Timestamp,
    VersionVector,
)


def ts(wall: int, node: str, counter: int = 0) -> Timestamp:
    return Timestamp(wall, counter, node)


def test_put_then_get():
    m = LWWMap("a")
    m.put("temp/kitchen", 21.5, ts(100, "a"))
    entry = m.get("temp/kitchen")
    assert entry == Entry(key="temp/kitchen", value=21.5, ts=ts(100, "a"), dot=Dot("a", 1))
    assert m.get("missing") is None
    assert len(m) == 1 and "temp/kitchen" in m


def test_put_assigns_consecutive_dots_and_returns_only_its_own_write():
    m = LWWMap("a")
    m.put("x", 1, ts(100, "a"))
    delta = m.put("y", 2, ts(101, "a"))
    assert delta.entries == (Entry(key="y", value=2, ts=ts(101, "a"), dot=Dot("a", 2)),)
    # A write-time delta carries its own dot only, not the replica's whole context.
    assert delta.context == CausalContext.from_dots([Dot("a", 2)])
    assert m.context == CausalContext(VersionVector({"a": 2}))


def test_the_later_timestamp_wins_whatever_the_arrival_order():
    early = LWWMap("a").put("k", "early", ts(100, "a"))
    late = LWWMap("b").put("k", "late", ts(200, "b"))
    for order in ([early, late], [late, early]):
        m = LWWMap("c")
        for delta in order:
            m.apply_delta(delta)
        assert m.get("k").value == "late"


def test_equal_wall_time_and_counter_tie_break_by_node_id():
    from_a = LWWMap("a").put("k", "from a", ts(100, "a"))
    from_b = LWWMap("b").put("k", "from b", ts(100, "b"))
    for order in ([from_a, from_b], [from_b, from_a]):
        m = LWWMap("c")
        for delta in order:
            m.apply_delta(delta)
        assert m.get("k").value == "from b"  # "b" > "a"


def test_apply_delta_returns_only_what_changed_and_is_idempotent():
    a = LWWMap("a")
    delta = a.put("k", 1, ts(100, "a"))
    b = LWWMap("b")
    assert b.apply_delta(delta) == [delta.entries[0]]
    assert b.apply_delta(delta) == []
    older = LWWMap("c").put("k", 0, ts(50, "c"))
    assert b.apply_delta(older) == []
    assert b.get("k").value == 1
    assert b.context.contains(Dot("c", 1))  # the losing write is still known as seen


def test_put_refuses_a_timestamp_from_another_clock_or_older_than_the_current_entry():
    m = LWWMap("a")
    with pytest.raises(LocalProtocolError, match="^crdt: put\\(\\) on 'a'"):
        m.put("k", 1, ts(100, "b"))
    m.apply_delta(LWWMap("b").put("k", 1, ts(500, "b")))
    with pytest.raises(LocalProtocolError, match="not newer than the current entry"):
        m.put("k", 2, ts(400, "a"))
    assert m.get("k").value == 1 and m.context.max_counter("a") == 0  # nothing half-done


def test_a_clock_that_observes_peers_always_writes_a_winner():
    m = LWWMap("a")
    clock = HybridLogicalClock("a")
    for entry in m.apply_delta(LWWMap("b").put("k", "remote", ts(10_000, "b"))):
        clock.observe(entry.ts, 100)
    m.put("k", "local", clock.now(100))  # our wall clock is far behind b's
    assert m.get("k").value == "local"


def test_entries_are_sorted_by_key_and_filtered_by_prefix():
    m = LWWMap("a")
    clock = HybridLogicalClock("a")
    for key in ("temp/b", "hum/a", "temp/a", "temp"):
        m.put(key, key, clock.now(1))
    assert [e.key for e in m.entries()] == ["hum/a", "temp", "temp/a", "temp/b"]
    assert [e.key for e in m.entries("temp/")] == ["temp/a", "temp/b"]


def test_values_are_copied_and_made_canonical():
    value = {"readings": (1, 2.5, None, True), "unit": "C"}
    m = LWWMap("a")
    m.put("k", value, ts(1, "a"))
    value["unit"] = "F"
    assert m.get("k").value == {"readings": [1, 2.5, None, True], "unit": "C"}


@pytest.mark.parametrize(
    "value, words",
    [
        ({1: "x"}, "dict key of type int"),
        ({"s": {1, 2}}, "holds a set"),
        (float("nan"), "only finite numbers"),
        (float("inf"), "only finite numbers"),
        (2**70, "outside the 64-bit range"),
        (b"raw", "holds a bytes"),
    ],
)
def test_put_refuses_values_json_cannot_carry(value, words):
    m = LWWMap("a")
    with pytest.raises(LocalProtocolError, match=words):
        m.put("k", value, ts(1, "a"))
    assert len(m) == 0 and not m.context


def test_deep_nesting_is_refused():
    value: list = []
    for _ in range(100):
        value = [value]
    with pytest.raises(LocalProtocolError, match="nested deeper"):
        LWWMap("a").put("k", value, ts(1, "a"))


def test_delta_since_sends_only_unseen_entries_with_the_whole_context():
    a = LWWMap("a")
    clock = HybridLogicalClock("a")
    for key in "pqrs":
        a.put(key, key, clock.now(1))
    a.put("p", "p2", clock.now(2))  # supersedes dot a1: the map holds a2..a5
    peer = CausalContext(VersionVector({"a": 3}))
    delta = a.delta_since(peer)
    assert [(e.key, e.dot.counter) for e in delta.entries] == [("p", 5), ("s", 4)]
    assert delta.context == a.context
    assert a.delta_since(a.context) == Delta(entries=(), context=CausalContext())
    assert a.delta_since(VersionVector({"a": 3})) == delta


def test_delta_since_honours_the_peers_dot_cloud():
    a = LWWMap("a")
    clock = HybridLogicalClock("a")
    for key in "pqr":
        a.put(key, 1, clock.now(1))
    peer = CausalContext(VersionVector({"a": 1}), [Dot("a", 3)])
    assert [e.key for e in a.delta_since(peer).entries] == ["q"]


def test_a_delta_since_an_empty_context_rebuilds_the_replica():
    a = LWWMap("a")
    b = LWWMap("b")
    a.put("x", 1, ts(1, "a"))
    a.apply_delta(b.put("y", 2, ts(2, "b")))
    a.put("x", 3, ts(3, "a"))
    fresh = LWWMap("c")
    fresh.apply_delta(a.delta_since(CausalContext()))
    assert fresh.entries() == a.entries()
    assert fresh.context == a.context


def test_merge_joins_whole_replicas():
    a, b = LWWMap("a"), LWWMap("b")
    a.put("x", 1, ts(1, "a"))
    b.put("x", 2, ts(2, "b"))
    b.put("y", 3, ts(3, "b"))
    assert [e.key for e in a.merge(b)] == ["x", "y"]
    assert b.merge(a) == []
    assert a.entries() == b.entries() and a.context == b.context


def test_restore_rebuilds_from_rows_and_keeps_counting_dots():
    a = LWWMap("a")
    clock = HybridLogicalClock("a")
    a.put("x", 1, clock.now(1))
    a.apply_delta(LWWMap("b").put("y", 2, ts(1, "b")))
    a.put("z", 3, clock.now(2))
    restored = LWWMap.restore("a", a.entries(), a.context)
    assert restored.entries() == a.entries()
    assert restored.context == a.context
    delta = restored.put("w", 4, clock.now(3))
    assert delta.entries[0].dot == Dot("a", 3)
    assert [e.key for e in restored.delta_since(VersionVector({"a": 1, "b": 1})).entries] == ["w", "z"]


def test_restore_refuses_rows_outside_the_saved_context():
    entry = Entry(key="x", value=1, ts=ts(1, "a"), dot=Dot("a", 2))
    with pytest.raises(LocalProtocolError, match="outside the restored context"):
        LWWMap.restore("a", [entry], CausalContext(VersionVector({"a": 1})))
    with pytest.raises(LocalProtocolError, match="two entries for key 'x'"):
        LWWMap.restore("a", [entry, entry], CausalContext(VersionVector({"a": 2})))


def test_next_dot_skips_past_own_dots_learned_from_peers():
    # A replica that learns of its own later writes (say, after a restore from an old backup)
    # must not reuse their dots.
    m = LWWMap("a")
    m.apply_delta(Delta(entries=(), context=CausalContext.from_dots([Dot("a", 7)])))
    assert m.put("k", 1, ts(1, "a")).entries[0].dot == Dot("a", 8)


def test_entry_and_delta_invariants_are_checked():
    with pytest.raises(LocalProtocolError, match="both must name the writer"):
        Entry(key="k", value=1, ts=ts(1, "a"), dot=Dot("b", 1))
    entry = Entry(key="k", value=1, ts=ts(1, "a"), dot=Dot("a", 1))
    with pytest.raises(LocalProtocolError, match="outside the delta's context"):
        Delta(entries=(entry,), context=CausalContext())
    with pytest.raises(LocalProtocolError, match="two entries for key 'k'"):
        Delta(entries=(entry, entry), context=CausalContext.from_dots([entry.dot]))
