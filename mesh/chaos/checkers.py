"""Checkers: pure functions from what a chaos run recorded to a ``Verdict``.

Theory of operation. Each checker states one safety rule of the mesh, takes the
observations that rule is about (plain frozen records built by the runner), and
returns ``Verdict(name, ok, summary, details)``: ``ok`` is True only when the
rule held for everything it was given; ``details`` is JSON data naming the
first offending records, for report.json. A checker never raises on a bad
history, only on malformed input (``HistoryError``). Rules, one per checker:

* ``linearizable`` — config register/CAS ops through Raft form a linearizable
  history (``mesh.chaos.linearizability``); an exhausted search is not ok.
* ``leaders_per_term`` — at most one leader per Raft term (Raft §5.2,
  Election Safety).
* ``fencing_monotonic`` — a task's fencing tokens never go backwards, and one
  token is never granted to two holders.
* ``no_double_holders`` — no task is held by two live nodes at once, beyond a
  stated clock bound.
* ``crdt_converged`` — after heal and a quiet period every replica holds the
  same map, and each reached it within ``bound_s`` of the heal.
* ``crdt_no_lost_writes`` — every acknowledged sensor write is in the final
  state unless a write with a later HLC timestamp replaced it.
* ``counters_exact`` — a counter equals its acknowledged increments, give or
  take the ones whose outcome is unknown.
* ``inference_answers`` — each request is answered correctly once, or refused
  with a clear error, within its deadline plus a grace.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .history import STATUSES, History, HistoryError, Op
from .linearizability import DEFAULT_MAX_STEPS, check

MAX_LISTED = 10  # offending records listed in details; the count says how many there were


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """One checker's result: ``ok`` only if its rule held throughout."""

    name: str
    ok: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _need(isinstance(self.name, str) and bool(self.name), f"verdict 'name' must be a non-empty string, got {self.name!r}")
        _need(type(self.ok) is bool, f"verdict 'ok' must be a bool, got {self.ok!r}")

    def to_dict(self) -> dict[str, Any]:
        """The verdict as JSON data for report.json."""
        return {"name": self.name, "ok": self.ok, "summary": self.summary, "details": self.details}


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise HistoryError(f"chaos: {message}")


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


# --- records -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderObservation:
    """At ``time``, ``node`` believed ``leader`` (None: no leader known) led ``term``."""

    node: str
    term: int
    leader: str | None
    time: float

    def __post_init__(self) -> None:
        _need(type(self.term) is int and self.term >= 0, f"leader observation 'term' must be an int >= 0, got {self.term!r}")
        _need(_finite(self.time), f"leader observation 'time' must be a finite number, got {self.time!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseGrant:
    """At ``time`` the lease on ``task`` was granted to ``holder`` with fencing ``token``."""

    task: str
    holder: str
    token: int
    time: float

    def __post_init__(self) -> None:
        _need(type(self.token) is int, f"lease grant 'token' must be an int, got {self.token!r}")
        _need(_finite(self.time), f"lease grant 'time' must be a finite number, got {self.time!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Holding:
    """``holder`` ran ``task`` from ``start`` to ``end`` (None: still at the end of the run)."""

    task: str
    holder: str
    start: float
    end: float | None
    holder_alive: bool

    def __post_init__(self) -> None:
        _need(_finite(self.start), f"holding 'start' must be a finite number, got {self.start!r}")
        _need(self.end is None or (_finite(self.end) and self.end >= self.start),
              f"holding 'end' must be None or a number >= start, got {self.end!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Replica:
    """A node's final key->value map, and when it first held the common final map (None: never)."""

    node: str
    state: Mapping[str, Any]
    matched_at: float | None

    def __post_init__(self) -> None:
        _need(isinstance(self.state, Mapping), f"replica 'state' must be a mapping, got {type(self.state).__name__}")
        _need(self.matched_at is None or _finite(self.matched_at),
              f"replica 'matched_at' must be None or a finite number, got {self.matched_at!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorWrite:
    """A sensor write of a run-unique ``value``; ``stamp`` is its HLC timestamp (None: not learned)."""

    node: str
    key: str
    value: Any
    stamp: tuple | None
    status: str = "ok"

    def __post_init__(self) -> None:
        _need(self.status in STATUSES, f"sensor write 'status' must be one of {', '.join(STATUSES)}, got {self.status!r}")
        _need(self.stamp is None or isinstance(self.stamp, tuple),
              f"sensor write 'stamp' must be an HLC timestamp (wall_ms, counter, node) or None, got {self.stamp!r}")
        _need(self.status != "ok" or self.stamp is not None, "an acknowledged sensor write needs its 'stamp'")


@dataclass(frozen=True, slots=True, kw_only=True)
class Increment:
    """A counter increment by ``by`` with its outcome (ok / fail / unknown)."""

    counter: str
    by: int
    status: str

    def __post_init__(self) -> None:
        _need(type(self.by) is int, f"increment 'by' must be an int, got {self.by!r}")
        _need(self.status in STATUSES, f"increment 'status' must be one of {', '.join(STATUSES)}, got {self.status!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceRequest:
    """One inference request: what it should give, what came back, how often and how fast."""

    id: str
    expected: str
    answer: str | None
    error: str | None
    answered: int
    deadline: float
    elapsed: float | None

    def __post_init__(self) -> None:
        _need(type(self.answered) is int and self.answered >= 0,
              f"inference request 'answered' must be an int >= 0, got {self.answered!r}")
        _need(_finite(self.deadline) and self.deadline > 0,
              f"inference request 'deadline' must be a positive number of seconds, got {self.deadline!r}")
        _need(self.elapsed is None or (_finite(self.elapsed) and self.elapsed >= 0),
              f"inference request 'elapsed' must be None or a number >= 0, got {self.elapsed!r}")


# --- checkers ------------------------------------------------------------------


def linearizable(history: History | Iterable[Op], *, max_steps: int = DEFAULT_MAX_STEPS) -> Verdict:
    """Config register/CAS ops form a linearizable history; budget exhaustion is a failure, never a pass."""
    result = check(history, max_steps=max_steps)
    return Verdict(name="linearizable", ok=result.linearizable, summary=result.summary(), details={
        "outcome": result.outcome,
        "ignored_ops": result.ignored,
        "keys": {k.key: {"outcome": k.outcome, "ops": k.ops, "steps": k.steps} for k in result.keys},
        "counterexample": result.counterexample(),
    })


def leaders_per_term(observations: Iterable[LeaderObservation]) -> Verdict:
    """At most one leader per term (Raft §5.2 Election Safety): two different leaders named for one term fail."""
    leaders: dict[int, dict[str, list[str]]] = {}
    for obs in observations:
        if obs.leader is not None:
            leaders.setdefault(obs.term, {}).setdefault(obs.leader, []).append(obs.node)
    bad = {t: by for t, by in sorted(leaders.items()) if len(by) > 1}
    if not bad:
        return Verdict(name="leaders_per_term", ok=True,
                       summary=f"at most one leader in each of {len(leaders)} term(s)", details={"terms": len(leaders)})
    term, by = next(iter(bad.items()))
    return Verdict(name="leaders_per_term", ok=False,
                   summary=f"term {term} had {len(by)} leaders: {', '.join(sorted(by))}",
                   details={"terms_with_two_leaders": len(bad),
                            "examples": [{"term": t, "leaders": {ldr: sorted(set(ns)) for ldr, ns in sorted(b.items())}}
                                         for t, b in list(bad.items())[:MAX_LISTED]]})


def fencing_monotonic(grants: Iterable[LeaseGrant]) -> Verdict:
    """A task's fencing tokens, in grant-time order, never decrease; one token never goes to two holders."""
    by_task: dict[str, list[tuple[int, LeaseGrant]]] = {}
    for n, g in enumerate(grants):
        by_task.setdefault(g.task, []).append((n, g))
    problems: list[dict[str, Any]] = []
    for task, seq in sorted(by_task.items()):
        seq.sort(key=lambda ng: (ng[1].time, ng[0]))  # ties keep recording order
        highest: LeaseGrant | None = None
        holder_of: dict[int, str] = {}
        for _, g in seq:
            if highest is not None and g.token < highest.token:
                problems.append({"task": task, "rule": "token went backwards", "token": g.token, "holder": g.holder,
                                 "time": g.time, "after_token": highest.token, "after_holder": highest.holder})
            other = holder_of.setdefault(g.token, g.holder)
            if other != g.holder:
                problems.append({"task": task, "rule": "one token, two holders", "token": g.token,
                                 "holders": sorted({other, g.holder}), "time": g.time})
            if highest is None or g.token >= highest.token:
                highest = g
    if not problems:
        return Verdict(name="fencing_monotonic", ok=True,
                       summary=f"fencing tokens monotonic for {len(by_task)} task(s)", details={"tasks": len(by_task)})
    p = problems[0]
    return Verdict(name="fencing_monotonic", ok=False,
                   summary=f"task {p['task']!r}: {p['rule']} (token {p['token']})",
                   details={"violations": len(problems), "examples": problems[:MAX_LISTED]})


def no_double_holders(holdings: Iterable[Holding], *, clock_bound_s: float = 0.0) -> Verdict:
    """No task is held by two live holders at once: two live holdings of one task by different holders fail
    if they overlap by more than ``clock_bound_s`` (the runner's bound on how late a holder notices a lost lease).
    A holding by a node that was not alive (killed or cut off) does not count: fencing tokens cover it."""
    _need(_finite(clock_bound_s) and clock_bound_s >= 0, f"clock_bound_s must be a number >= 0, got {clock_bound_s!r}")
    by_task: dict[str, list[Holding]] = {}
    for h in holdings:
        if h.holder_alive:
            by_task.setdefault(h.task, []).append(h)
    problems: list[dict[str, Any]] = []
    for task, hs in sorted(by_task.items()):
        hs.sort(key=lambda h: h.start)
        for i, a in enumerate(hs):
            a_end = math.inf if a.end is None else a.end
            for b in hs[i + 1:]:
                if b.start >= a_end:
                    break
                b_end = math.inf if b.end is None else b.end
                overlap = min(a_end, b_end) - b.start
                if a.holder != b.holder and overlap > clock_bound_s:
                    problems.append({"task": task, "holders": [a.holder, b.holder], "from": b.start,
                                     "overlap_s": None if math.isinf(overlap) else overlap})
    if not problems:
        return Verdict(name="no_double_holders", ok=True,
                       summary=f"no task held twice beyond {clock_bound_s:g}s ({len(by_task)} task(s))",
                       details={"tasks": len(by_task), "clock_bound_s": clock_bound_s})
    p = problems[0]
    return Verdict(name="no_double_holders", ok=False,
                   summary=f"task {p['task']!r} held by live {p['holders'][0]} and {p['holders'][1]} at once from t={p['from']:g}",
                   details={"violations": len(problems), "clock_bound_s": clock_bound_s, "examples": problems[:MAX_LISTED]})


_MISSING = object()


def _show(value: Any) -> Any:
    """A map value for a report, ``"<missing>"`` for an absent key."""
    return "<missing>" if value is _MISSING else value


def crdt_converged(replicas: Iterable[Replica], bound_s: float, quiet_time: float) -> Verdict:
    """After heal every replica holds the same map, each having first matched it by ``quiet_time + bound_s``.

    ``quiet_time`` is the runner time at which the last fault was healed; ``bound_s`` is the stated
    convergence bound. A replica that never matched (``matched_at`` None) or matched later fails."""
    _need(_finite(bound_s) and bound_s >= 0, f"bound_s must be a number >= 0, got {bound_s!r}")
    _need(_finite(quiet_time), f"quiet_time must be a finite number, got {quiet_time!r}")
    reps = sorted(replicas, key=lambda r: r.node)
    if not reps:
        return Verdict(name="crdt_converged", ok=True, summary="no replicas to compare", details={"replicas": 0})
    base = reps[0]
    for other in reps[1:]:
        for key in sorted(set(base.state) | set(other.state)):
            a, b = base.state.get(key, _MISSING), other.state.get(key, _MISSING)
            if a != b:
                return Verdict(name="crdt_converged", ok=False,
                               summary=f"replicas diverged at key {key!r}: {base.node} has {_show(a)!r}, "
                                       f"{other.node} has {_show(b)!r}",
                               details={"key": key, "nodes": [base.node, other.node],
                                        "values": [_show(a), _show(b)], "replicas": len(reps)})
    deadline = quiet_time + bound_s
    late = [r for r in reps if r.matched_at is None or r.matched_at > deadline]
    if late:
        r = late[0]
        when = "never" if r.matched_at is None else f"{r.matched_at - quiet_time:g}s after heal"
        return Verdict(name="crdt_converged", ok=False,
                       summary=f"replica {r.node} matched the others {when}, past the {bound_s:g}s bound",
                       details={"late": [{"node": x.node, "matched_at": x.matched_at} for x in late[:MAX_LISTED]],
                                "bound_s": bound_s, "quiet_time": quiet_time})
    return Verdict(name="crdt_converged", ok=True,
                   summary=f"{len(reps)} replicas equal ({len(base.state)} keys) within {bound_s:g}s of heal",
                   details={"replicas": len(reps), "keys": len(base.state), "bound_s": bound_s})


def crdt_no_lost_writes(writes: Iterable[SensorWrite], final_state: Mapping[str, Any]) -> Verdict:
    """Every acknowledged write is in ``final_state`` unless it was replaced by a write to the same key with
    a later HLC timestamp (last-writer-wins on HLC order, which extends happens-before).

    Values are unique per run, so the final value names the write that won. If that write's stamp is
    unknown (its outcome was unknown) the replacement cannot be ordered and is accepted, counted under
    ``unverifiable``; a final value no one wrote, an older write winning, or a missing key is a loss."""
    all_writes = list(writes)
    by_value: dict[tuple[str, Any], SensorWrite] = {}
    for w in all_writes:
        if w.status != "fail":
            by_value[(w.key, _hashable(w.value))] = w
    lost: list[dict[str, Any]] = []
    unverifiable = 0
    acked = [w for w in all_writes if w.status == "ok"]
    for w in acked:
        if w.key not in final_state:
            lost.append({"key": w.key, "value": w.value, "node": w.node, "why": "key missing from the final state"})
            continue
        final = final_state[w.key]
        if final == w.value:
            continue
        winner = by_value.get((w.key, _hashable(final)))
        if winner is None:
            lost.append({"key": w.key, "value": w.value, "node": w.node, "final": final,
                         "why": "the final value was never written"})
        elif winner.stamp is None:
            unverifiable += 1
        elif not winner.stamp > w.stamp:  # type: ignore[operator]
            lost.append({"key": w.key, "value": w.value, "node": w.node, "final": final,
                         "why": f"replaced by an older write (stamp {list(winner.stamp)} <= {list(w.stamp)})"})  # type: ignore[arg-type]
    if lost:
        x = lost[0]
        return Verdict(name="crdt_no_lost_writes", ok=False,
                       summary=f"acknowledged write {x['value']!r} to {x['key']!r} by {x['node']} was lost: {x['why']}",
                       details={"lost": len(lost), "acked": len(acked), "examples": lost[:MAX_LISTED]})
    return Verdict(name="crdt_no_lost_writes", ok=True,
                   summary=f"all {len(acked)} acknowledged writes present or replaced by later ones",
                   details={"acked": len(acked), "unverifiable": unverifiable})


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def counters_exact(increments: Iterable[Increment], final_counters: Mapping[str, int]) -> Verdict:
    """Each final counter lies in [sum of ok increments + negative unknowns, ... + positive unknowns]:
    ok increments count exactly, failed ones never, unknown ones may or may not. A missing counter is 0."""
    sums: dict[str, list[int]] = {}
    for inc in increments:
        lo_hi = sums.setdefault(inc.counter, [0, 0])
        if inc.status == "ok":
            lo_hi[0] += inc.by
            lo_hi[1] += inc.by
        elif inc.status == "unknown":
            lo_hi[0 if inc.by < 0 else 1] += inc.by
    bad = []
    for counter in sorted(set(sums) | set(final_counters)):
        lo, hi = sums.get(counter, (0, 0))
        value = final_counters.get(counter, 0)
        if not lo <= value <= hi:
            bad.append({"counter": counter, "value": value, "expected_min": lo, "expected_max": hi})
    if bad:
        b = bad[0]
        span = f"{b['expected_min']}" if b["expected_min"] == b["expected_max"] else f"[{b['expected_min']}, {b['expected_max']}]"
        return Verdict(name="counters_exact", ok=False,
                       summary=f"counter {b['counter']!r} is {b['value']}, expected {span} from the acknowledged increments",
                       details={"wrong": len(bad), "examples": bad[:MAX_LISTED]})
    return Verdict(name="counters_exact", ok=True, summary=f"{len(sums)} counter(s) match their increments",
                   details={"counters": len(sums)})


CLEAR_ERROR = re.compile(r"^[a-z][a-z0-9_-]*: \S")  # the project's "subsystem: what happened" form


def inference_answers(requests: Iterable[InferenceRequest], *, grace_s: float = 0.5) -> Verdict:
    """Each request gets the expected answer exactly once, or a clear refusal ("subsystem: reason"), within
    ``deadline + grace_s`` seconds; a wrong answer, a second answer, silence or lateness fails."""
    _need(_finite(grace_s) and grace_s >= 0, f"grace_s must be a number >= 0, got {grace_s!r}")
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    answered = refused = 0
    for r in requests:
        why = None
        if r.id in seen:
            why = "request id recorded twice"
        elif r.answered > 1:
            why = f"answered {r.answered} times"
        elif r.answer is not None and r.error is not None:
            why = "both answered and refused"
        elif r.answer is not None and r.answer != r.expected:
            why = f"wrong answer {r.answer!r}, expected {r.expected!r}"
        elif r.answer is not None and r.answered == 0:
            why = "an answer recorded with an answered count of 0"
        elif r.answer is None and r.error is None:
            why = "neither answered nor refused"
        elif r.error is not None and not CLEAR_ERROR.match(r.error):
            why = f"refused without a clear error: {r.error!r}"
        elif r.elapsed is None or r.elapsed > r.deadline + grace_s:
            why = f"{'answered' if r.answer is not None else 'refused'} after {r.elapsed}s, past its {r.deadline:g}s deadline"
        seen.add(r.id)
        if why:
            problems.append({"id": r.id, "why": why})
        elif r.answer is not None:
            answered += 1
        else:
            refused += 1
    if problems:
        p = problems[0]
        return Verdict(name="inference_answers", ok=False, summary=f"request {p['id']!r}: {p['why']}",
                       details={"bad": len(problems), "answered": answered, "refused": refused,
                                "grace_s": grace_s, "examples": problems[:MAX_LISTED]})
    return Verdict(name="inference_answers", ok=True,
                   summary=f"{answered} answered correctly, {refused} refused clearly, all in time",
                   details={"answered": answered, "refused": refused, "grace_s": grace_s})
