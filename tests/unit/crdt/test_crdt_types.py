"""What each delta-state type means: counters count, LWW ties go to the node id, adds win, removals stay removed."""

from __future__ import annotations

import pytest

from crdt import (
    CausalContext,
    Dot,
    GCounter,
    LocalProtocolError,
    LWWRegister,
    ORMap,
    ORSet,
    PNCounter,
    RemoteProtocolError,
    Sample,
    TimeSeriesWindow,
    Timestamp,
    VersionVector,
    decode_state,
    encode_state,
)
from crdt._dot_store import MAX_ITEMS


def apply(state, delta):
    return state.apply_delta(delta)


# -- counters ---------------------------------------------------------------------------


def test_g_counter_sums_each_nodes_entry_and_merge_takes_the_maximum():
    a = apply(GCounter(), GCounter().increment("a", 3))
    b = apply(GCounter(), GCounter().increment("b"))
    b = apply(b, b.increment("b", 2))
    assert a.merge(b).value == 6
    assert a.merge(b).merge(a.merge(b)) == a.merge(b)
    assert a.delta_since(a.merge(b).version) == GCounter()
    assert b.delta_since(a.version) == GCounter({"b": 3})


def test_g_counter_refuses_to_go_down():
    with pytest.raises(LocalProtocolError, match="GCounter increment"):
        GCounter().increment("a", 0)


def test_pn_counter_counts_up_and_down_per_node():
    c = PNCounter()
    for node, amount in (("a", 5), ("b", -2), ("a", -1)):
        c = apply(c, c.increment(node, amount))
    c = apply(c, c.decrement("b"))
    assert c.value == 1
    assert c.entry_of("a") == (5, 1) and c.entry_of("b") == (0, 3)
    assert c.version == VersionVector({"a": 6, "b": 3})
    with pytest.raises(LocalProtocolError, match="non-zero"):
        c.increment("a", 0)


# -- LWW register ------------------------------------------------------------------------


def test_lww_register_ties_in_time_are_broken_by_node_id():
    """Rule: timestamps order by (wall_ms, counter, node), so the same millisecond goes to the larger node id."""
    from_a = LWWRegister().set("from a", Timestamp(10, 0, "a"))
    from_b = LWWRegister().set("from b", Timestamp(10, 0, "b"))
    assert from_a.merge(from_b).value == from_b.merge(from_a).value == "from b"
    assert from_a.merge(from_b).vv == VersionVector({"a": 1, "b": 1})


def test_lww_register_refuses_a_write_older_than_what_it_holds():
    reg = LWWRegister().set(1, Timestamp(10, 0, "a"))
    with pytest.raises(LocalProtocolError, match="not newer"):
        reg.set(2, Timestamp(9, 5, "a"))


def test_lww_register_delta_since_is_empty_for_a_peer_that_has_seen_every_write():
    reg = LWWRegister().set(1, Timestamp(10, 0, "a"))
    assert reg.delta_since(VersionVector({"a": 1})) == LWWRegister()
    assert reg.delta_since(VersionVector()) == reg


# -- OR-set ------------------------------------------------------------------------------


def test_or_set_concurrent_add_wins_over_remove():
    """Rule (add-wins): a remove only kills the adds it observed."""
    base = apply(ORSet(), ORSet().add("a", "tag"))
    removed = apply(base, base.remove("b", "tag"))
    re_added = apply(base, base.add("c", "tag"))  # concurrent with the remove
    assert "tag" in removed.merge(re_added) and "tag" in re_added.merge(removed)
    assert "tag" not in removed.merge(base)


def test_or_set_removal_leaves_no_tombstones():
    """Rule (ORSWOT): after any number of add/remove cycles the state is the live elements plus a version vector."""
    s = ORSet()
    for i in range(500):
        s = apply(s, s.add("a", f"e{i % 7}"))
        s = apply(s, s.remove("a", f"e{i % 7}"))
    assert len(s) == 0 and s.dots == {}
    assert s.context.cloud == frozenset() and s.context.vv == VersionVector({"a": 1000})
    assert len(encode_state(s)["state"]["dots"]) == 0


def test_or_set_re_add_after_remove_and_removing_an_absent_element():
    s = apply(ORSet(), ORSet().add("a", "x"))
    s = apply(s, s.remove("a", "x"))
    assert s.remove("a", "x") == ORSet()
    s = apply(s, s.add("b", "x"))
    assert list(s) == ["x"]


def test_or_set_delta_since_a_current_peer_is_empty():
    s = apply(ORSet(), ORSet().add("a", "x"))
    assert s.delta_since(s.context) == ORSet()
    assert s.delta_since(VersionVector()) == s


# -- OR-map ------------------------------------------------------------------------------


def test_or_map_removal_does_not_resurrect_an_older_concurrent_value():
    """Rule: a value lives in the put that wrote it; removing the put removes the value everywhere."""
    put_a = ORMap().put("k", "newer from a", Timestamp(10, 0, "a"))
    put_b = ORMap().put("k", "older from b", Timestamp(5, 0, "b"))  # concurrent, never saw a's put
    a = apply(ORMap(), put_a)
    removal = a.remove("a", "k")  # a removes what it saw: its own put
    saw_everything = ORMap().apply_delta(put_a).apply_delta(put_b).apply_delta(removal)
    saw_only_b_and_removal = ORMap().apply_delta(put_b).apply_delta(removal)
    assert saw_everything == saw_only_b_and_removal
    assert saw_everything.items() == [("k", "older from b")]


def test_or_map_concurrent_put_wins_over_remove_and_overwrite_keeps_one_entry():
    m = apply(ORMap(), ORMap().put("k", 1, Timestamp(1, 0, "a")))
    for wall in range(2, 50):
        m = apply(m, m.put("k", wall, Timestamp(wall, 0, "a")))
    assert len(m.live_entries()) == 1 and m.get("k").value == 49
    removed = apply(m, m.remove("b", "k"))
    concurrent = apply(m, m.put("k", "still here", Timestamp(60, 0, "c")))
    assert removed.merge(concurrent).items() == [("k", "still here")]
    assert "k" not in removed and removed.live_entries() == []


def test_or_map_concurrent_puts_resolve_by_timestamp_then_node_id():
    a = ORMap().put("k", "a", Timestamp(7, 0, "a"))
    b = ORMap().put("k", "b", Timestamp(7, 0, "b"))
    assert a.merge(b).get("k").value == b.merge(a).get("k").value == "b"
    assert len(a.merge(b).live_entries()) == 2  # both survive until a later put or remove sees them


# -- time-series window ------------------------------------------------------------------


def record_all(window, *readings):
    for node, t_ms, value in readings:
        window = apply(window, window.record(node, t_ms, value))
    return window


def test_time_series_keeps_samples_newer_than_max_minus_window():
    w = record_all(TimeSeriesWindow(window_ms=10), ("a", 0, 0), ("a", 5, 1), ("b", 11, 2), ("a", 14, 3))
    assert [s.t_ms for s in w.samples()] == [5, 11, 14]  # 14 - 10 = 4: the sample at 0 is out
    assert w.context == CausalContext(VersionVector({"a": 3, "b": 1}))  # dropped samples stay seen


def test_time_series_max_count_drops_the_oldest_and_ties_go_to_the_larger_node_id():
    a = record_all(TimeSeriesWindow(window_ms=100, max_count=2), ("a", 7, "a7"), ("a", 9, "a9"))
    b = record_all(TimeSeriesWindow(window_ms=100, max_count=2), ("b", 7, "b7"))
    assert [s.value for s in a.merge(b).samples()] == ["b7", "a9"]
    assert a.merge(b) == b.merge(a)


def test_time_series_refuses_to_merge_windows_of_different_shapes():
    with pytest.raises(LocalProtocolError, match="same shape"):
        TimeSeriesWindow(window_ms=10).merge(TimeSeriesWindow(window_ms=10, max_count=5))


def test_time_series_delta_since_sends_only_the_samples_the_peer_lacks():
    w = record_all(TimeSeriesWindow(window_ms=100), ("a", 1, 1), ("a", 2, 2))
    peer = record_all(TimeSeriesWindow(window_ms=100), ("a", 1, 1))
    delta = w.delta_since(peer.context)
    assert [s.dot for s in delta.samples()] == [Dot("a", 2)] and delta.context == w.context
    assert peer.apply_delta(delta) == w


# -- the wire ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj, match",
    [
        ([], "expected a map"),
        ({"t": "or_set", "v": 2, "state": {}}, "version 2"),
        ({"t": "bag", "v": 1, "state": {}}, "unknown state type"),
        ({"t": "g_counter", "v": 1, "state": {"a": -1}}, r"g_counter: .*between 0"),
        ({"t": "pn_counter", "v": 1, "state": {"a": [1]}}, r"pn_counter: .*2 items"),
        ({"t": "or_set", "v": 1, "state": {"dots": [["x", ["a", 2]]], "context": {"vv": {"a": 1}, "cloud": []}}},
         "outside the set's context"),
        ({"t": "or_set", "v": 1, "state": {"dots": [[7, ["a", 1]]], "context": {"vv": {"a": 1}, "cloud": []}}},
         r"or_set\.dots\[0\]: ORSet elements must be strings"),
        ({"t": "time_series", "v": 1, "state": {"window_ms": 0, "max_count": None, "samples": [],
                                                 "context": {"vv": {}, "cloud": []}}}, "window_ms"),
        ({"t": "lww_register", "v": 1, "state": {"value": 1, "ts": None, "vv": {}}}, "needs the timestamp"),
    ],
)  # fmt: skip
def test_malformed_states_are_refused_with_remote_protocol_error(obj, match):
    with pytest.raises(RemoteProtocolError, match=match):
        decode_state(obj)


def test_oversized_collections_are_refused():
    dots = [["x", ["a", i]] for i in range(1, MAX_ITEMS + 2)]
    obj = {"t": "or_set", "v": 1, "state": {"dots": dots, "context": {"vv": {"a": MAX_ITEMS + 1}, "cloud": []}}}
    with pytest.raises(RemoteProtocolError, match="at most"):
        decode_state(obj)


def test_encode_state_refuses_what_it_does_not_carry():
    with pytest.raises(LocalProtocolError, match="cannot encode"):
        encode_state(Sample(t_ms=1, value=1, dot=Dot("a", 1)))
