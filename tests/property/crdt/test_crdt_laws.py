"""Merge laws (STYLE §17): every join is commutative, associative and idempotent; deltas equal states."""

from __future__ import annotations

from crdt_strategies import (
    History,
    check_invariant,
    contexts,
    copy_of,
    dots,
    dots_of,
    histories,
    state,
    version_vectors,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import CausalContext, LWWMap

laws = settings(max_examples=60, deadline=None)


# -- version vectors ---------------------------------------------------------------


@laws
@given(version_vectors, version_vectors, version_vectors)
def test_version_vector_merge_laws(a, b, c):
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    assert a.merge(b).dominates(a) and a.merge(b).dominates(b)


@laws
@given(version_vectors, dots)
def test_version_vector_increment_adds_exactly_the_next_dot(vv, dot):
    bigger, new = vv.increment(dot.node)
    assert not vv.contains(new) and bigger.contains(new)
    assert bigger.dominates(vv) and not vv.dominates(bigger)


# -- causal contexts ---------------------------------------------------------------


@laws
@given(contexts, contexts, contexts)
def test_causal_context_merge_laws(a, b, c):
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a


@laws
@given(contexts, contexts)
def test_causal_context_agrees_with_the_set_of_dots_it_stands_for(a, b):
    assert dots_of(a.merge(b)) == dots_of(a) | dots_of(b)
    assert a.issubset(b) == (dots_of(a) <= dots_of(b))
    assert (a == b) == (dots_of(a) == dots_of(b))  # compaction is canonical
    for node in "abc":
        assert a.max_counter(node) == max((d.counter for d in dots_of(a) if d.node == node), default=0)


@laws
@given(st.lists(dots, max_size=12), st.randoms(use_true_random=False))
def test_causal_context_is_compact_whatever_the_order_dots_arrive_in(found, rng):
    shuffled = list(found)
    rng.shuffle(shuffled)
    ctx = CausalContext()
    for dot in shuffled:
        ctx = ctx.add(dot)
    assert ctx == CausalContext.from_dots(found)
    assert dots_of(ctx) == set(found)
    for dot in ctx.cloud:  # nothing the vector could absorb is left in the cloud
        assert dot.counter > ctx.vv.get(dot.node) + 1


# -- the LWW map ----------------------------------------------------------------------


@st.composite
def replicas(draw, history: History, *, addressed: bool = True) -> LWWMap:
    """A replica that received some of the history's deltas, in any order, some twice.

    With ``addressed``, only deltas any replica may receive (the writes); without, also answers
    meant for another replica — still a join, so the laws hold, but ``delta_since`` then cannot
    tell what such a replica lacks.
    """
    pool = history.write_deltas if addressed else history.deltas
    replica = LWWMap("r")
    for delta in draw(st.lists(st.sampled_from(pool), max_size=8)) if pool else ():
        replica.apply_delta(delta)
    return replica


@laws
@given(st.data())
def test_lww_map_merge_laws(data):
    history = data.draw(histories())
    a, b, c = (data.draw(replicas(history, addressed=False)) for _ in range(3))

    ab, ba = copy_of(a), copy_of(b)
    ab.merge(b)
    ba.merge(a)
    assert state(ab) == state(ba)  # commutative

    left, right, bc = copy_of(ab), copy_of(a), copy_of(b)
    left.merge(c)
    bc.merge(c)
    right.merge(bc)
    assert state(left) == state(right)  # associative

    aa = copy_of(a)
    assert aa.merge(a) == []
    assert state(aa) == state(a)  # idempotent


@laws
@given(histories())
def test_applying_every_delta_equals_merging_the_full_states(history):
    by_deltas = LWWMap("r")
    for delta in history.deltas:
        by_deltas.apply_delta(delta)
    assert state(by_deltas) == state(history.join())
    check_invariant(by_deltas, history.writes)


@laws
@given(st.data())
def test_delta_since_a_peers_context_equals_merging_the_whole_replica(data):
    history = data.draw(histories())
    source, sink = data.draw(replicas(history)), data.draw(replicas(history))
    by_delta, by_merge = copy_of(sink), copy_of(sink)
    by_delta.apply_delta(source.delta_since(sink.context))
    by_merge.merge(source)
    assert state(by_delta) == state(by_merge)
    assert source.delta_since(by_delta.context).entries == ()


@laws
@given(st.data())
def test_replicas_converge_under_any_order_duplication_and_loss_then_a_full_sync(data):
    history = data.draw(histories(max_ops=16))
    # Lossy, duplicated, reordered — even misdelivered — deltas, then a full sync from every writer.
    fleet = [data.draw(replicas(history, addressed=False)) for _ in range(3)]
    for replica in fleet:
        for writer in history.writers.values():
            replica.apply_delta(writer.delta_since(CausalContext()))
    expected = state(history.join())
    assert all(state(replica) == expected for replica in fleet)


@laws
@given(st.data())
def test_delta_anti_entropy_between_replicas_converges(data):
    history = data.draw(histories(max_ops=16))
    fleet = [data.draw(replicas(history)) for _ in range(3)]
    for replica in fleet:
        check_invariant(replica, history.writes)
    fleet[0].merge(history.join())  # one replica has everything; the others pull from each other
    for _ in range(2):
        for src in fleet:
            for dst in fleet:
                dst.apply_delta(src.delta_since(dst.context))
                check_invariant(dst, history.writes)
    assert all(state(replica) == state(fleet[0]) for replica in fleet)
