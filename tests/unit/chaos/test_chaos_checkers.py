"""The chaos checkers: each passes a good history and fails the known-bad ones the issue names."""

from __future__ import annotations

import json

import pytest

from mesh.chaos.checkers import (
    Holding,
    Increment,
    InferenceRequest,
    LeaderObservation,
    LeaseGrant,
    Replica,
    SensorWrite,
    Verdict,
    counters_exact,
    crdt_converged,
    crdt_no_lost_writes,
    fencing_monotonic,
    inference_answers,
    leaders_per_term,
    linearizable,
    no_double_holders,
)
from mesh.chaos.history import History, HistoryError, Op


def json_ready(v: Verdict) -> Verdict:
    json.dumps(v.to_dict())  # report.json must be able to hold every verdict
    return v


# --- linearizable --------------------------------------------------------------------


def test_linearizable_wraps_the_register_checker():
    w = Op(process="a", kind="write", key="k", value=1, invoke=0, complete=1, status="ok")
    good = Op(process="b", kind="read", key="k", invoke=2, complete=3, status="ok", result=1)
    stale = Op(process="b", kind="read", key="k", invoke=2, complete=3, status="ok", result=None)
    assert json_ready(linearizable(History((w, good)))).ok
    bad = json_ready(linearizable(History((w, stale))))
    assert not bad.ok and bad.details["outcome"] == "violation" and "not linearizable" in bad.summary


def test_linearizable_budget_exhaustion_is_not_ok():
    ops = [Op(process=f"p{i}", kind="write", key="k", value=i, invoke=0, complete=9, status="ok") for i in range(8)]
    ops.append(Op(process="r", kind="read", key="k", invoke=10, complete=11, status="ok", result=0))
    v = linearizable(ops, max_steps=10)
    assert not v.ok and v.summary.startswith("unknown: search budget exhausted")


# --- leaders_per_term ------------------------------------------------------------------


def test_one_leader_per_term_passes_even_when_terms_change_leaders():
    obs = [LeaderObservation(node=n, term=t, leader=ldr, time=float(i))
           for i, (n, t, ldr) in enumerate([("a", 1, "a"), ("b", 1, "a"), ("c", 1, None), ("c", 2, "c"), ("a", 2, "c")])]
    v = json_ready(leaders_per_term(obs))
    assert v.ok and v.details["terms"] == 2


def test_two_leaders_in_a_term_fail():
    """Raft §5.2 Election Safety: at most one leader can be elected in a given term."""
    obs = [LeaderObservation(node="a", term=3, leader="a", time=1.0),
           LeaderObservation(node="b", term=3, leader="b", time=1.5),
           LeaderObservation(node="c", term=4, leader="c", time=2.0)]
    v = json_ready(leaders_per_term(obs))
    assert not v.ok and "term 3" in v.summary
    assert v.details["examples"][0]["leaders"] == {"a": ["a"], "b": ["b"]}


def test_a_bad_term_is_refused():
    with pytest.raises(HistoryError, match="^chaos: leader observation 'term'"):
        LeaderObservation(node="a", term=-1, leader="a", time=0.0)


# --- fencing_monotonic -----------------------------------------------------------------


def grant(task, holder, token, time):
    return LeaseGrant(task=task, holder=holder, token=token, time=time)


def test_rising_tokens_and_renewals_pass():
    v = json_ready(fencing_monotonic([grant("t", "a", 1, 0), grant("t", "a", 1, 1), grant("t", "b", 2, 2),
                                      grant("u", "c", 1, 0.5)]))
    assert v.ok and v.details["tasks"] == 2


def test_a_token_going_backwards_fails():
    """Fencing tokens never go backwards."""
    v = json_ready(fencing_monotonic([grant("t", "a", 5, 0), grant("t", "b", 4, 1)]))
    assert not v.ok and "went backwards" in v.summary


def test_grants_are_ordered_by_time_not_by_recording_order():
    assert fencing_monotonic([grant("t", "b", 2, 5), grant("t", "a", 1, 0)]).ok


def test_one_token_given_to_two_holders_fails():
    v = fencing_monotonic([grant("t", "a", 3, 0), grant("t", "b", 3, 1)])
    assert not v.ok and "two holders" in v.summary


# --- no_double_holders ---------------------------------------------------------------------


def hold(task, holder, start, end, alive=True):
    return Holding(task=task, holder=holder, start=start, end=end, holder_alive=alive)


def test_handovers_without_overlap_pass():
    assert json_ready(no_double_holders([hold("t", "a", 0, 5), hold("t", "b", 5, None), hold("u", "a", 0, 9)])).ok


def test_two_live_holders_at_once_fail():
    """No task held by two live nodes."""
    v = json_ready(no_double_holders([hold("t", "a", 0, 5), hold("t", "b", 3, 8)]))
    assert not v.ok and v.details["examples"][0]["overlap_s"] == 2


def test_overlap_within_the_clock_bound_passes_and_beyond_it_fails():
    pair = [hold("t", "a", 0, 5), hold("t", "b", 4.5, 8)]
    assert no_double_holders(pair, clock_bound_s=0.5).ok
    assert not no_double_holders(pair, clock_bound_s=0.4).ok


def test_a_dead_holder_does_not_count_and_one_holder_twice_is_fine():
    assert no_double_holders([hold("t", "a", 0, None, alive=False), hold("t", "b", 1, None)]).ok
    assert no_double_holders([hold("t", "a", 0, 5), hold("t", "a", 2, 6)]).ok


def test_open_ended_holdings_overlap_forever():
    v = no_double_holders([hold("t", "a", 0, None), hold("t", "b", 1, None)])
    assert not v.ok and v.details["examples"][0]["overlap_s"] is None


# --- crdt_converged -------------------------------------------------------------------------


def rep(node, state, matched_at=11.0):
    return Replica(node=node, state=state, matched_at=matched_at)


def test_equal_replicas_within_the_bound_pass():
    s = {"k1": 1, "k2": "x"}
    v = json_ready(crdt_converged([rep("a", s), rep("b", dict(s)), rep("c", dict(s), 12.0)], bound_s=5, quiet_time=10))
    assert v.ok and v.details["replicas"] == 3


def test_a_diverged_replica_fails_naming_the_first_key_and_nodes():
    """After heal and the quiet period every replica is equal."""
    v = json_ready(crdt_converged([rep("a", {"k1": 1, "k2": 2}), rep("b", {"k1": 1, "k2": 3})], bound_s=5, quiet_time=10))
    assert not v.ok
    assert v.details["key"] == "k2" and v.details["nodes"] == ["a", "b"] and v.details["values"] == [2, 3]


def test_a_replica_missing_a_key_has_diverged():
    v = json_ready(crdt_converged([rep("a", {"k1": 1}), rep("b", {})], bound_s=5, quiet_time=10))
    assert not v.ok and v.details["values"] == [1, "<missing>"]


def test_a_replica_that_matched_too_late_or_never_fails():
    """Equal within the stated bound: each replica matched by quiet_time + bound_s."""
    late = crdt_converged([rep("a", {}), rep("b", {}, 16.0)], bound_s=5, quiet_time=10)
    never = crdt_converged([rep("a", {}), rep("b", {}, None)], bound_s=5, quiet_time=10)
    assert not late.ok and "b" in late.summary
    assert not never.ok and "never" in never.summary


# --- crdt_no_lost_writes -------------------------------------------------------------------


def sw(node, key, value, wall, status="ok"):
    return SensorWrite(node=node, key=key, value=value, stamp=None if wall is None else (wall, 0, node), status=status)


def test_present_writes_and_later_replacements_pass():
    writes = [sw("a", "k", "v1", 100), sw("b", "k", "v2", 200), sw("a", "j", "v3", 100)]
    v = json_ready(crdt_no_lost_writes(writes, {"k": "v2", "j": "v3"}))
    assert v.ok and v.details["acked"] == 3


def test_a_lost_write_fails():
    """Every acknowledged write is present unless a causally later write replaced it."""
    v = json_ready(crdt_no_lost_writes([sw("a", "k", "v1", 100)], {}))
    assert not v.ok and "missing" in v.summary


def test_an_older_write_winning_is_a_lost_write():
    v = crdt_no_lost_writes([sw("a", "k", "v1", 100), sw("b", "k", "v2", 200)], {"k": "v1"})
    assert not v.ok and "'v2'" in v.summary and "older" in v.summary


def test_a_final_value_nobody_wrote_is_a_lost_write():
    assert not crdt_no_lost_writes([sw("a", "k", "v1", 100)], {"k": "zzz"}).ok


def test_replacement_by_a_write_of_unknown_outcome_is_accepted_but_counted():
    v = crdt_no_lost_writes([sw("a", "k", "v1", 100), sw("b", "k", "v2", None, status="unknown")], {"k": "v2"})
    assert v.ok and v.details["unverifiable"] == 1


def test_a_failed_write_cannot_replace_anything():
    assert not crdt_no_lost_writes([sw("a", "k", "v1", 100), sw("b", "k", "v2", 200, status="fail")], {"k": "v2"}).ok


def test_an_acknowledged_write_needs_its_stamp():
    with pytest.raises(HistoryError, match="^chaos: an acknowledged sensor write needs its 'stamp'"):
        sw("a", "k", "v", None)


# --- counters_exact --------------------------------------------------------------------------


def inc(by, status="ok", counter="c"):
    return Increment(counter=counter, by=by, status=status)


def test_a_counter_equal_to_its_acknowledged_increments_passes():
    """Counters equal the acknowledged increments."""
    assert json_ready(counters_exact([inc(2), inc(3), inc(5, "fail"), inc(1, counter="d")], {"c": 5, "d": 1})).ok


def test_a_counter_that_lost_an_increment_fails():
    v = json_ready(counters_exact([inc(2), inc(3)], {"c": 2}))
    assert not v.ok and "expected 5" in v.summary


def test_unknown_increments_may_or_may_not_count():
    """The final value must lie in [sum of ok, sum of ok + sum of unknown]."""
    incs = [inc(2), inc(3, "unknown"), inc(-1, "unknown")]
    assert all(counters_exact(incs, {"c": v}).ok for v in (1, 2, 4, 5))
    assert not counters_exact(incs, {"c": 6}).ok
    assert not counters_exact(incs, {"c": 0}).ok


def test_a_counter_nobody_incremented_must_be_zero():
    assert not counters_exact([], {"ghost": 1}).ok
    assert counters_exact([inc(1, "fail")], {}).ok


# --- inference_answers -------------------------------------------------------------------------


def req(id="r1", expected="d1", answer="d1", error=None, answered=1, deadline=2.0, elapsed=0.5):
    return InferenceRequest(id=id, expected=expected, answer=answer, error=error, answered=answered,
                            deadline=deadline, elapsed=elapsed)


def test_correct_answers_and_clear_refusals_in_time_pass():
    """Each is answered correctly or refused with a clear error within its deadline."""
    v = json_ready(inference_answers([req(), req(id="r2", answer=None, error="inference: no node holds model m",
                                                 answered=0, elapsed=1.9)]))
    assert v.ok and v.details == {"answered": 1, "refused": 1, "grace_s": 0.5}


@pytest.mark.parametrize("bad, why", [
    (req(answer="d2"), "wrong answer"),
    (req(answered=2), "answered 2 times"),
    (req(elapsed=2.6), "past its 2s deadline"),
    (req(answer=None, error="inference: overloaded", answered=0, elapsed=9.0), "past its 2s deadline"),
    (req(answer=None, error="boom", answered=0), "without a clear error"),
    (req(answer=None, error=None, answered=0), "neither answered nor refused"),
    (req(error="inference: late"), "both answered and refused"),
    (req(elapsed=None), "past its"),
])
def test_bad_inference_outcomes_fail(bad, why):
    """None answered twice or wrong; none past its deadline plus the grace."""
    v = json_ready(inference_answers([bad]))
    assert not v.ok and why in v.summary


def test_the_grace_is_honoured_and_a_repeated_id_fails():
    assert inference_answers([req(elapsed=2.4)]).ok
    assert not inference_answers([req(elapsed=2.4)], grace_s=0.0).ok
    assert not inference_answers([req(), req()]).ok
