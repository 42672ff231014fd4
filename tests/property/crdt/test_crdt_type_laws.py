"""Merge laws for every delta-state type (STYLE §17), each law written once and run per type.

The rules (Almeida et al., "Delta State Replicated Data Types", 2018, §2–§3):
a join is commutative, associative and idempotent; joining the deltas a
history produced gives the join of the full states; and replicas that lost,
repeated or reordered deltas still converge once they exchange full states.
"""

from __future__ import annotations

import pytest
from crdt_type_specs import SPECS, caught_up, histories, scrambled
from hypothesis import given, settings
from hypothesis import strategies as st

laws = settings(max_examples=40, deadline=None)
TYPES = sorted(SPECS)


@pytest.mark.parametrize("name", TYPES)
@laws
@given(data=st.data())
def test_merge_is_commutative_associative_and_idempotent(name, data):
    """Rule: a ⊔ b = b ⊔ a; (a ⊔ b) ⊔ c = a ⊔ (b ⊔ c); a ⊔ a = a — for any states, however they were reached."""
    history = data.draw(histories(SPECS[name]))
    a, b, c = (data.draw(scrambled(history)) for _ in range(3))
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a


@pytest.mark.parametrize("name", TYPES)
@laws
@given(data=st.data())
def test_applying_every_delta_in_any_order_equals_merging_the_full_states(name, data):
    """Rule: the join of every delta a history produced, in any order, is the join of the writers' states."""
    history = data.draw(histories(SPECS[name]))
    order = data.draw(st.permutations(history.deltas))
    state = SPECS[name].empty()
    for delta in order:
        state = state.apply_delta(delta)
    assert state == history.join()


@pytest.mark.parametrize("name", TYPES)
@laws
@given(data=st.data())
def test_replicas_converge_under_any_order_duplication_and_loss_then_a_full_sync(name, data):
    """Rule: whatever subset of the deltas arrived, in whatever order and multiplicity, a full sync converges."""
    history = data.draw(histories(SPECS[name], max_ops=16))
    fleet = [data.draw(scrambled(history)) for _ in range(3)]
    empty_version = SPECS[name].version(SPECS[name].empty())
    for i, replica in enumerate(fleet):
        for writer in history.writers.values():
            replica = replica.apply_delta(writer.delta_since(empty_version))  # a full sync is a delta from nothing
        fleet[i] = replica
    assert all(replica == history.join() for replica in fleet)


@pytest.mark.parametrize("name", TYPES)
@laws
@given(data=st.data())
def test_delta_since_a_peers_version_equals_merging_the_whole_replica(name, data):
    """Rule: sink ⊔ source.delta_since(version(sink)) = sink ⊔ source, and then nothing is left to send."""
    spec = SPECS[name]
    history = data.draw(histories(spec))
    source, sink = data.draw(caught_up(history)), data.draw(caught_up(history))
    by_delta = sink.apply_delta(source.delta_since(spec.version(sink)))
    assert by_delta == sink.merge(source)
    assert not source.delta_since(spec.version(by_delta))


@pytest.mark.parametrize("name", TYPES)
@laws
@given(data=st.data())
def test_delta_anti_entropy_between_replicas_converges(name, data):
    """Rule: replicas that pull ``delta_since`` from each other reach the join of everything any of them had."""
    spec = SPECS[name]
    history = data.draw(histories(spec, max_ops=16))
    fleet = [data.draw(caught_up(history)) for _ in range(3)]
    fleet[0] = fleet[0].merge(history.join())
    for _ in range(2):
        for src in range(3):
            for dst in range(3):
                fleet[dst] = fleet[dst].apply_delta(fleet[src].delta_since(spec.version(fleet[dst])))
    assert all(replica == fleet[0] for replica in fleet)
