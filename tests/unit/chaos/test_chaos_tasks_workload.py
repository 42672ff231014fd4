"""The tasks workload's pure parts: grants and holdings from recorded attempts, the fenced resource, answers read.

The rules quoted are consensus/leases.py's: "A holder keeps its own deadline on its own monotonic
clock, started *before* it submitted the acquire ... minus a margin for clock drift, and stops
acting for the task there", and "A resource ... keeps the highest token it has seen per task and
refuses lower ones".
"""

from __future__ import annotations

import random
import threading

import pytest

from mesh.chaos.checkers import fencing_monotonic, no_double_holders
from mesh.chaos.tasks_workload import (
    CLOCK_BOUND_S,
    DRIFT_MARGIN_S,
    LEASE_S,
    REPLY_WAIT_S,
    Attempt,
    FencedResource,
    ReplyError,
    TasksWorkload,
    fenced_writes,
    grants,
    holdings,
    read_answer,
    safe_deadline,
)


def granted(task, holder, invoke, ok, token, *, stopped=None, deadline=None):
    return Attempt(task=task, holder=holder, node="n0", invoke=invoke, outcome="granted", ok=ok, token=token,
                   deadline=safe_deadline(invoke) if deadline is None else deadline, stopped=stopped)


def test_the_safe_deadline_counts_from_before_the_acquire_minus_the_margin():
    assert safe_deadline(10.0) == 10.0 + LEASE_S - DRIFT_MARGIN_S
    # An answer after that deadline is of no use, so the client waits no longer than that.
    assert REPLY_WAIT_S == LEASE_S - DRIFT_MARGIN_S


def test_grants_and_holdings_come_from_granted_attempts_only():
    attempts = [
        granted("t", "a", 0.0, 0.3, 1, stopped=1.0),  # released at 1.0
        Attempt(task="t", holder="b", node="n1", invoke=0.5, outcome="busy"),
        Attempt(task="t", holder="b", node="n1", invoke=0.9, outcome="unknown"),  # may have been granted: no holding
        granted("t", "b", 3.0, 3.2, 2),  # let lapse: held to its own deadline
        granted("t", "c", 6.0, 9.0, 3),  # the answer came after its deadline: never acted on
        Attempt(task="t", holder="c", node="n2", invoke=9.5, outcome="fail"),
    ]
    assert [(g.holder, g.token, g.time) for g in grants(attempts)] == [("a", 1, 0.3), ("b", 2, 3.2), ("c", 3, 9.0)]
    assert [(h.holder, h.start, h.end) for h in holdings(attempts)] == [
        ("a", 0.3, 1.0), ("b", 3.2, safe_deadline(3.0))]
    assert all(h.holder_alive for h in holdings(attempts))


def test_a_release_after_the_deadline_ends_the_holding_at_the_deadline():
    [h] = holdings([granted("t", "a", 0.0, 0.2, 1, stopped=5.0)])
    assert h.end == safe_deadline(0.0)


def test_an_unknown_acquire_s_token_may_come_back_to_the_same_holder():
    # "a holder that acquires a task it already holds under a live lease keeps its token"
    attempts = [Attempt(task="t", holder="a", node="n0", invoke=0.0, outcome="unknown"),
                granted("t", "a", 1.0, 1.1, 7, stopped=2.0), granted("t", "b", 4.5, 4.6, 8)]
    assert fencing_monotonic(grants(attempts)).ok
    assert no_double_holders(holdings(attempts), clock_bound_s=CLOCK_BOUND_S).ok


def test_holdings_that_overlap_are_caught_by_the_checker():
    # Had holder b been granted while a was still inside its own deadline, that is two holders at once.
    attempts = [granted("t", "a", 0.0, 0.1, 1), granted("t", "b", 1.0, 1.2, 2)]
    verdict = no_double_holders(holdings(attempts), clock_bound_s=CLOCK_BOUND_S)
    assert not verdict.ok and verdict.details["examples"][0]["holders"] == ["a", "b"]


def test_the_fence_refuses_a_lower_token_and_admits_equal_and_higher_ones():
    # "keeps the highest token it has seen per task and refuses lower ones"
    res = FencedResource()
    assert res.write(task="t", holder="a", token=1, now=0.1, late=False, newest_granted=1)
    assert res.write(task="t", holder="a", token=1, now=0.2, late=False, newest_granted=1)  # many writes, one token
    assert res.write(task="t", holder="b", token=2, now=3.0, late=False, newest_granted=2)
    assert not res.write(task="t", holder="a", token=1, now=3.5, late=True, newest_granted=2)  # woke up late
    assert res.write(task="u", holder="a", token=1, now=3.6, late=False, newest_granted=1)  # per task
    verdict = fenced_writes(res.writes)
    assert verdict.ok and verdict.details == {"writes": 5, "admitted": 4, "refused_stale": 1, "late_admitted": 0,
                                         "refused_under_clock_fault": 0}
    assert "1 late write(s) by stale holders refused" in verdict.summary


def test_a_refused_write_within_its_holding_or_under_the_newest_token_fails():
    res = FencedResource()
    res.write(task="t", holder="b", token=5, now=1.0, late=False, newest_granted=5)
    res.write(task="t", holder="a", token=4, now=1.1, late=False, newest_granted=5)  # on time, yet refused
    verdict = fenced_writes(res.writes)
    assert not verdict.ok and "refused within its holding" in verdict.summary
    odd = FencedResource()
    odd.write(task="t", holder="b", token=5, now=1.0, late=False, newest_granted=5)
    odd.write(task="t", holder="a", token=4, now=2.0, late=True, newest_granted=4)  # the newest grant refused
    assert "refused the newest token" in fenced_writes(odd.writes).summary


@pytest.mark.parametrize("reply", [
    None, [], "ok", {"acquired": "yes"}, {"acquired": True}, {"acquired": True, "token": "3", "holder": "h"},
    {"acquired": True, "token": 3, "holder": "someone-else"}, {"acquired": True, "token": True, "holder": "h"},
])
def test_a_malformed_answer_is_named_not_crashed_on(reply):
    with pytest.raises(ReplyError, match=r"^chaos: tasks: /tasks/acquire on n1 answered .*expected"):
        read_answer(reply, "acquired", task="t", holder="h", path="/tasks/acquire", node="n1")


def test_well_formed_answers_are_read():
    ok = {"task": "t", "holder": "h", "token": 3, "acquired": True, "lease_left_s": 2.9}
    assert read_answer(ok, "acquired", task="t", holder="h", path="/tasks/acquire", node="n1") == (True, 3)
    busy = {"task": "t", "holder": "x", "token": 2, "acquired": False}
    assert read_answer(busy, "acquired", task="t", holder="h", path="/tasks/acquire", node="n1") == (False, None)
    assert read_answer({"released": True, "holder": None, "token": None}, "released", task="t", holder="h",
                       path="/tasks/release", node="n1") == (True, None)


class ScriptedNode:
    """A node's API as the workload sees it: per path, an answer (or an error to raise)."""

    def __init__(self, answers):
        self.answers = answers
        self.sent = []
        self.timeout = None

    def post(self, path, body):
        self.sent.append((path, body))
        answer = self.answers[path]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 0.01
        return self.t


def test_a_malformed_acquire_answer_is_a_failed_op_with_its_message_and_no_holding():
    work = TasksWorkload(Clock(), threading.Lock())
    node = ScriptedNode({"/tasks/acquire": {"acquired": True, "token": None}})
    work.cycle(random.Random(1), "tasks-c0", "n1", node, threading.Event())
    [a] = work.attempts
    assert a.outcome == "fail" and work.errors and work.errors[0].startswith("chaos: tasks: /tasks/acquire on n1")
    assert holdings(work.attempts) == [] and work.resource.writes == []
    assert node.timeout == REPLY_WAIT_S


def test_a_granted_cycle_writes_under_its_token_and_gives_the_lease_back():
    from mesh.client import ClientError

    clock = Clock()
    work = TasksWorkload(clock, threading.Lock())
    lease = {"task": "chaos/t0", "holder": "tasks-c0", "token": 4}
    answers = {"/tasks/acquire": dict(lease, acquired=True), "/tasks/renew": dict(lease, renewed=True),
               "/tasks/release": {"released": True, "holder": None, "token": None}}
    stop = threading.Event()
    stop.wait = lambda timeout=None: False  # no real sleeping: the scripted clock moves instead
    rng = random.Random(3)
    node = ScriptedNode(answers)
    work.cycle(rng, "tasks-c0", "n1", node, stop)
    [a] = work.attempts
    assert not work.errors and node.sent[0] == ("/tasks/acquire", {"task": "chaos/t0", "lease": LEASE_S,
                                                                   "holder": "tasks-c0"})
    assert a.outcome == "granted" and a.token == 4
    on_time = [w for w in work.resource.writes if not w.late]
    assert on_time and all(w.token == 4 and w.admitted and a.ok <= w.time < a.deadline for w in on_time)
    # No answer at all (the node timed out): unknown, not a holding.
    work.cycle(rng, "tasks-c0", "n2", ScriptedNode({"/tasks/acquire": ClientError("client: no node answers in x")}), stop)
    assert work.attempts[-1].outcome == "unknown" and len(holdings(work.attempts)) == 1


def test_a_release_ends_every_earlier_holding_of_its_token_by_that_holder():
    # Seen in a real run: c1 let a grant lapse, re-acquired (same token, lease extended), then released;
    # the release frees the task at once, so the lapsed grant's holding must end there too.
    attempts = [granted("t", "c1", 27.697, 27.715, 23),  # meant to lapse at 30.197
                granted("t", "c1", 28.631, 28.638, 23, stopped=29.815),
                granted("t", "c2", 30.006, 30.018, 27)]
    assert [(h.holder, h.end) for h in holdings(attempts)][:2] == [("c1", 29.815), ("c1", 29.815)]
    assert no_double_holders(holdings(attempts), clock_bound_s=CLOCK_BOUND_S).ok
    # A stop before a grant of the same token (a renew that failed, then acquired again) does not end it.
    again = [granted("t", "c1", 0.0, 0.1, 5, stopped=1.0), granted("t", "c1", 1.5, 1.6, 5)]
    assert [h.end for h in holdings(again)] == [1.0, safe_deadline(1.5)]


def test_under_a_clock_fault_two_holders_are_left_to_fencing():
    # consensus/leases.py: "a voter whose clock runs ahead drags the cluster clock ahead and ends leases
    # early ... Then a second holder may act while the first still believes it holds the task."
    attempts = [granted("t", "a", 10.0, 10.1, 1), granted("t", "b", 11.0, 11.1, 2)]
    res = FencedResource()
    res.write(task="t", holder="b", token=2, now=11.2, late=False, newest_granted=2)
    res.write(task="t", holder="a", token=1, now=11.5, late=False, newest_granted=2)  # a still inside its deadline
    assert not no_double_holders(holdings(attempts), clock_bound_s=CLOCK_BOUND_S).ok
    assert not fenced_writes(res.writes).ok
    skewed = [(9.0, 10.5)]  # a clock-jump window while a held the task
    # Both overlap the window widened by a lease (the heal takes a moment to reach the node's clock).
    assert [h.holder_alive for h in holdings(attempts, skewed)] == [False, False]
    assert no_double_holders(holdings(attempts, skewed), clock_bound_s=CLOCK_BOUND_S).ok
    verdict = fenced_writes(res.writes, skewed)
    assert verdict.ok and verdict.details["refused_under_clock_fault"] == 1
    # Far from any clock fault the same refusal is still a violation.
    assert not fenced_writes(res.writes, [(30.0, 40.0)]).ok
    assert all(h.holder_alive for h in holdings(attempts, [(30.0, 40.0)]))
