"""Dots, version vectors and the compact causal context (Almeida et al. 2018, §4.2)."""

from __future__ import annotations

import pytest

from crdt import CausalContext, Dot, LocalProtocolError, RemoteProtocolError, VersionVector


def test_missing_nodes_count_as_zero():
    vv = VersionVector({"a": 2})
    assert vv.get("a") == 2
    assert vv.get("b") == 0
    assert "b" not in vv
    assert VersionVector({"a": 0}) == VersionVector()


def test_increment_returns_a_new_vector_and_the_new_dot():
    vv = VersionVector({"a": 2})
    bigger, dot = vv.increment("a")
    assert dot == Dot("a", 3)
    assert bigger == VersionVector({"a": 3})
    assert vv == VersionVector({"a": 2})  # immutable
    assert VersionVector().increment("b") == (VersionVector({"b": 1}), Dot("b", 1))


def test_merge_is_the_pointwise_maximum():
    a = VersionVector({"a": 3, "b": 1})
    b = VersionVector({"b": 4, "c": 2})
    assert a.merge(b) == VersionVector({"a": 3, "b": 4, "c": 2})
    assert a.merge(b) == b.merge(a)


def test_contains_and_dominates():
    vv = VersionVector({"a": 3})
    assert vv.contains(Dot("a", 3))
    assert not vv.contains(Dot("a", 4))
    assert not vv.contains(Dot("b", 1))
    assert vv.dominates(VersionVector({"a": 2}))
    assert vv.dominates(VersionVector())
    assert not vv.dominates(VersionVector({"a": 2, "b": 1}))
    assert not VersionVector({"a": 1, "b": 2}).dominates(VersionVector({"a": 2, "b": 1}))


def test_vectors_are_hashable_values():
    assert hash(VersionVector({"a": 1, "b": 2})) == hash(VersionVector({"b": 2, "a": 1}))
    assert len({VersionVector({"a": 1}), VersionVector({"a": 1}), VersionVector({"a": 2})}) == 2
    assert dict(VersionVector({"a": 1, "b": 2})) == {"a": 1, "b": 2}


def test_vector_wire_round_trip_is_sorted():
    vv = VersionVector({"b": 2, "a": 1})
    assert list(vv.to_wire().items()) == [("a", 1), ("b", 2)]
    assert VersionVector.from_wire(vv.to_wire()) == vv


@pytest.mark.parametrize(
    "obj, words",
    [
        ([], "expected a map"),
        ({"a": -1}, "counter for 'a' must be between 1"),
        ({"a": 0}, "counter for 'a' must be between 1"),
        ({"a": "1"}, "counter for 'a' must be an int"),
        ({1: 1}, "node must be a string"),
        ({"": 1}, "node must be 1 to"),
    ],
)
def test_vector_from_wire_refuses_malformed_input(obj, words):
    with pytest.raises(RemoteProtocolError, match=words):
        VersionVector.from_wire(obj)


def test_a_bad_vector_is_a_local_error():
    with pytest.raises(LocalProtocolError, match="^crdt: "):
        VersionVector({"a": -1})
    with pytest.raises(LocalProtocolError, match="^crdt: Dot.counter"):
        Dot("a", 0)


def test_a_dot_beyond_a_gap_waits_in_the_cloud_until_the_gap_fills():
    ctx = CausalContext().add(Dot("a", 1)).add(Dot("a", 3)).add(Dot("a", 5))
    assert ctx.vv == VersionVector({"a": 1})
    assert ctx.cloud == {Dot("a", 3), Dot("a", 5)}
    assert ctx.contains(Dot("a", 3)) and not ctx.contains(Dot("a", 2))
    ctx = ctx.add(Dot("a", 2))
    assert ctx.vv == VersionVector({"a": 3})
    assert ctx.cloud == {Dot("a", 5)}
    ctx = ctx.add(Dot("a", 4))
    assert ctx.vv == VersionVector({"a": 5})
    assert ctx.cloud == frozenset()


def test_compaction_makes_equal_sets_of_dots_equal():
    dots = [Dot("a", 1), Dot("a", 2), Dot("b", 2), Dot("a", 4), Dot("b", 1), Dot("a", 3)]
    forward = CausalContext.from_dots(dots)
    backward = CausalContext.from_dots(reversed(dots))
    assert forward == backward
    assert hash(forward) == hash(backward)
    assert forward == CausalContext(VersionVector({"a": 4, "b": 2}))
    # Dots already covered by the vector are dropped, not kept in the cloud.
    assert CausalContext(VersionVector({"a": 3}), [Dot("a", 2), Dot("a", 5)]).cloud == {Dot("a", 5)}


def test_merge_unions_and_compacts():
    left = CausalContext(VersionVector({"a": 2}), [Dot("a", 4)])
    right = CausalContext(VersionVector({"a": 3, "b": 1}), [Dot("b", 3)])
    merged = left.merge(right)
    assert merged == CausalContext(VersionVector({"a": 4, "b": 1}), [Dot("b", 3)])
    assert merged == right.merge(left)
    assert left.merge(left) == left


def test_issubset():
    small = CausalContext(VersionVector({"a": 2}), [Dot("b", 2)])
    assert small.issubset(CausalContext(VersionVector({"a": 3, "b": 2})))
    assert small.issubset(CausalContext(VersionVector({"a": 1}), [Dot("a", 2), Dot("b", 2)]))
    assert not small.issubset(CausalContext(VersionVector({"a": 2})))
    assert not small.issubset(CausalContext(VersionVector({"a": 1, "b": 5})))
    assert CausalContext().issubset(small)
    assert Dot("b", 2) in small


def test_max_counter_looks_in_the_cloud_too():
    ctx = CausalContext(VersionVector({"a": 2}), [Dot("a", 7), Dot("b", 3)])
    assert ctx.max_counter("a") == 7
    assert ctx.max_counter("b") == 3
    assert ctx.max_counter("c") == 0


def test_context_wire_round_trip():
    ctx = CausalContext(VersionVector({"b": 1, "a": 2}), [Dot("b", 5), Dot("a", 9)])
    assert ctx.to_wire() == {"vv": {"a": 2, "b": 1}, "cloud": [["a", 9], ["b", 5]]}
    assert CausalContext.from_wire(ctx.to_wire()) == ctx
    # A peer's uncompacted cloud names the same dots: it is accepted and compacted.
    assert CausalContext.from_wire({"vv": {"a": 1}, "cloud": [["a", 2], ["a", 1]]}) == CausalContext(
        VersionVector({"a": 2})
    )


@pytest.mark.parametrize(
    "obj, words",
    [
        ({"vv": {}}, "missing field 'cloud'"),
        ({"vv": {}, "cloud": [], "x": 1}, "unexpected field"),
        ({"vv": {}, "cloud": {}}, "expected a list"),
        ({"vv": {"a": -2}, "cloud": []}, r"context\.vv: counter for 'a'"),
        ({"vv": {}, "cloud": [["a", 0]]}, r"context\.cloud\[0\]: Dot.counter"),
        ({"vv": {}, "cloud": [["a"]]}, r"context\.cloud\[0\]: expected a list \[node, counter\] of 2"),
    ],
)
def test_context_from_wire_refuses_malformed_input(obj, words):
    with pytest.raises(RemoteProtocolError, match=words):
        CausalContext.from_wire(obj)
