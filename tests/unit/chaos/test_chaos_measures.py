"""Recovery times after each heal, and messages per operation, from synthetic timelines."""

from __future__ import annotations

from mesh.chaos.measures import (
    LEADER_BOUND_S,
    FrameTally,
    Heal,
    acked_before,
    caught_up,
    leader_agreed,
    messages_per_op,
    recovery,
    recovery_verdict,
    worst,
)


def test_a_leader_counts_only_when_a_majority_answers_and_all_voters_agree():
    v = {"role": "follower", "leader": "P"}
    assert leader_agreed({"a": v, "b": {"role": "leader", "leader": "P"}, "c": None}, 3) == "P"
    assert leader_agreed({"a": v, "b": None, "c": None}, 3) is None  # one of three is no majority
    assert leader_agreed({"a": v, "b": {"role": "follower", "leader": "Q"}, "c": v}, 3) is None  # split views
    assert leader_agreed({"a": {"role": "candidate", "leader": None}, "b": v, "c": v}, 3) is None
    # A forwarder's hint does not vote.
    assert leader_agreed({"a": v, "b": v, "f": {"role": "forwarder", "leader": "old"}}, 3) == "P"


def test_replicas_have_caught_up_when_each_holds_everything_acknowledged_before_the_heal():
    writes = [("k1", (10, 0, "a"), "ok", 1.0), ("k1", (12, 0, "b"), "ok", 2.0), ("k2", (11, 0, "a"), "ok", 2.5),
              ("k2", (20, 0, "a"), "ok", 9.0),  # after the heal: not required
              ("k3", None, "unknown", 1.0), ("k4", (5, 0, "a"), "fail", 1.0)]
    wanted = acked_before(writes, 5.0)
    assert wanted == {"k1": (12, 0, "b"), "k2": (11, 0, "a")}
    newer = [{"key": "k1", "hlc": [13, 0, "c"]}, {"key": "k2", "hlc": [11, 0, "a"]}]
    assert caught_up(newer, wanted)
    assert not caught_up([{"key": "k1", "hlc": [12, 0, "b"]}], wanted)  # k2 missing
    assert not caught_up([{"key": "k1", "hlc": [10, 0, "a"]}, {"key": "k2", "hlc": [11, 0, "a"]}], wanted)
    assert not caught_up(None, wanted) and not caught_up({"odd": 1}, wanted)


def test_recovery_is_the_first_success_of_each_kind_inside_the_heal_s_window():
    heal = Heal(fault="10-20s partition-halves", healed_at=20.0, until=30.0)
    successes = [("leader", 19.0),  # before the heal: from the previous window
                 ("converged", 24.5), ("leader", 21.25), ("leader", 22.0), ("converged", 31.0)]
    row = recovery(heal, successes)
    assert row == {"fault": "10-20s partition-halves", "healed_at": 20.0, "window_s": 10.0,
                   "leader_s": 1.25, "converged_s": 4.5}
    never = recovery(Heal(fault="kill", healed_at=40.0, until=50.0), [("converged", 41.0)])
    assert never["leader_s"] is None and never["converged_s"] == 1.0
    assert worst([row, never]) == {"worst_leader_s": None, "worst_converged_s": 4.5}
    assert worst([]) == {"worst_leader_s": None, "worst_converged_s": None}


def test_liveness_fails_when_a_heal_got_no_leader_within_the_bound():
    fine = {"fault": "a", "healed_at": 20.0, "window_s": 10.0, "leader_s": 0.8, "converged_s": 2.0}
    assert recovery_verdict([fine]).ok and "slowest 0.8 s" in recovery_verdict([fine]).summary
    slow = dict(fine, fault="b", leader_s=LEADER_BOUND_S + 0.5)
    none = dict(fine, fault="c", leader_s=None)
    verdict = recovery_verdict([fine, slow, none])
    assert not verdict.ok and "after healing b" in verdict.summary and len(verdict.details["late"]) == 2
    assert not recovery_verdict([none]).ok and "never" in recovery_verdict([none]).summary


def test_frames_are_summed_per_node_across_restarts():
    tally = FrameTally()
    tally.observe("a", 100)  # the first reading is the baseline
    tally.observe("b", 50)
    tally.observe("a", 130)
    tally.observe("b", 20)  # b restarted: its counter began again at zero
    tally.observe("b", 45)
    tally.observe("a", None)  # a did not answer: nothing learned
    tally.observe("a", 140)
    assert tally.total == 30 + 20 + 25 + 10


def test_messages_per_op_says_what_it_counts():
    doc = messages_per_op(1000, 200, 10.0, 30.0)
    assert doc["messages_per_op"] == 5.0 and doc["messages_per_op_above_idle"] == 3.5
    assert "Raft messages" in doc["counted"]
    assert messages_per_op(10, 0, None, 1.0)["messages_per_op"] is None
