"""The chaos ``tasks`` workload: holders take task leases through the mesh and write to a fenced resource.

Theory of operation
-------------------
Each client thread is one holder (``tasks-c<k>``, the same name for the whole
run, so a holder that re-acquires a task it still holds keeps its token, as
``consensus/leases.py`` promises). A cycle:

1. **Acquire** one of ``TASKS`` through some node's API (``POST
   /tasks/acquire``) for ``LEASE_S`` seconds. The holder notes the harness's
   monotonic time *before* it sends (``invoke``): its own safe deadline is
   ``invoke + LEASE_S - DRIFT_MARGIN_S`` (``safe_deadline``), which comes
   before the cluster's ``expires_at`` (stamped by a voter later). It waits at
   most ``REPLY_WAIT_S`` (= the time to that deadline) for the answer: a grant
   that comes back later could not be used anyway, and so every recorded grant
   precedes, in real time, the next holder's grant of that task (whose lease
   starts only after this one expired), which keeps ``fencing_monotonic``'s
   ordering by reply time honest.
2. **Hold.** A few writes to the harness's ``FencedResource`` under the token,
   each only before the safe deadline, sometimes a renew (``POST /tasks/renew``;
   a renew sent at ``t`` moves the deadline to ``safe_deadline(t)``; a renew
   that fails or is not answered ends the holding at once).
3. **Give up.** Usually ``POST /tasks/release`` (the holding ends when the
   release is *sent*); sometimes the lease is left to lapse (the holding ends
   at the safe deadline). Now and then the holder then plays a paused process
   that wakes up late and writes once more under its old token (``late``): the
   fence refuses it if a newer holder has written meanwhile. Those refusals
   are fencing at work, not errors.

Outcomes, as for the register: an acquire answered ``acquired`` is
*granted* (a ``LeaseGrant`` at the reply's time), ``acquired: false`` is
*busy*, a reply without the fields the API promises or a clear refusal is
*fail* (named in ``errors``), and no reply at all is *unknown*: it may have
been granted (a command that timed out can still commit) but the holder
never acts on it, so it is no holding; its token can still show up later, in
a grant to the same holder that re-acquired while that lease was live.

Rules fed to the checkers: every grant (``fencing_monotonic``); every holding
``[reply time, min(safe deadline, when it stopped acting)]``, skipped when the
reply came after the deadline (``no_double_holders``, clock bound 0: the drift
margin already sits inside each holding); and ``fenced_writes`` here: no write
made within its holding is ever refused, and no write under the newest token
granted for its task is ever refused (either would mean two holders at once).

*Clock faults.* A voter whose wall clock jumps or drifts ahead drags the
cluster clock ahead and ends leases early (the module doc of
``consensus/leases.py``): then two holders can both be inside their own
deadlines, and the old one's writes are refused. That is the case fencing
tokens exist for, so holdings that overlap a clock fault's window are judged
by fencing alone (``holder_alive`` False for ``no_double_holders``), and a
refused write within a holding is excused while a clock fault is in force or
up to ``LEASE_S`` after it (windows are the scheduled ones, widened by
``LEASE_S`` for the heal to take effect). A clock set back cannot hurt: the cluster clock
never runs backwards, so leases only last longer.
"""

from __future__ import annotations

import http.client
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from consensus.leases import Fence

from ..client import ClientError
from .checkers import MAX_LISTED, Holding, LeaseGrant, Verdict

TASKS = ("chaos/t0", "chaos/t1")
LEASE_S = 3.0  # seconds each acquire and renew asks for
DRIFT_MARGIN_S = 0.5  # a holder stops this long before its lease could end (clock drift, scheduling)
REPLY_WAIT_S = LEASE_S - DRIFT_MARGIN_S  # an answer after the holder's own deadline is of no use
CLOCK_BOUND_S = 0.0  # overlap no_double_holders allows: the margin is already inside every holding
WRITES = (2, 5)  # writes per holding, at most (fewer if the deadline comes first)
RENEW_P, LAPSE_P, LATE_P = 0.4, 0.2, 0.25  # chance of a renew after a write, of letting the lease lapse, of a late write


def safe_deadline(invoke: float, lease: float = LEASE_S, margin: float = DRIFT_MARGIN_S) -> float:
    """The holder's own deadline for a lease asked for at ``invoke`` (its monotonic clock, before sending)."""
    return invoke + lease - margin


@dataclass(slots=True, kw_only=True)
class Attempt:
    """One acquire and what the holder did with it (harness seconds)."""

    task: str
    holder: str
    node: str
    invoke: float
    outcome: str = "pending"  # granted, busy, fail or unknown
    ok: float | None = None  # when the grant came back
    token: int | None = None
    deadline: float | None = None  # the holder's own safe deadline, moved on by renewals
    stopped: float | None = None  # when it stopped acting (release sent, renew failed); None: let it lapse

    def to_dict(self) -> dict[str, Any]:
        """The attempt as JSON data for report.json."""
        return {"task": self.task, "holder": self.holder, "node": self.node, "invoke": round(self.invoke, 3),
                "outcome": self.outcome, "ok": _r(self.ok), "token": self.token, "deadline": _r(self.deadline),
                "stopped": _r(self.stopped)}


def _r(t: float | None) -> float | None:
    return None if t is None else round(t, 3)


def grants(attempts: list[Attempt]) -> list[LeaseGrant]:
    """A ``LeaseGrant`` for every acquire answered ``acquired``, at the time the answer came back."""
    return [LeaseGrant(task=a.task, holder=a.holder, token=a.token, time=a.ok)
            for a in attempts if a.outcome == "granted"]


def holdings(attempts: list[Attempt], skewed: Sequence[tuple[float, float]] = ()) -> list[Holding]:
    """When each holder acted for its task: from the grant's reply to its safe deadline or when it stopped.

    A grant that came back after the holder's own deadline is no holding: the holder never acted on it.
    A holder is one actor: once it stops acting under a token (a release sent, a renew failed) it has
    stopped for every grant of that token it got before, also those it had meant to let lapse.
    A holding that overlaps a clock fault's window in ``skewed`` (or the ``LEASE_S`` after it, while
    the node rereads its clock) is marked ``holder_alive=False``: fencing alone covers it (module doc).
    """
    stops: dict[tuple[str, str, int], list[float]] = {}
    for a in attempts:
        if a.outcome == "granted" and a.stopped is not None:
            stops.setdefault((a.task, a.holder, a.token), []).append(a.stopped)
    out = []
    for a in attempts:
        if a.outcome != "granted" or a.ok >= a.deadline:
            continue
        later = [s for s in stops.get((a.task, a.holder, a.token), ()) if s >= a.ok]
        end = min([a.deadline, *later])
        trusted = not any(start <= end and a.ok <= until + LEASE_S for start, until in skewed)
        out.append(Holding(task=a.task, holder=a.holder, start=a.ok, end=end, holder_alive=trusted))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FencedWrite:
    """One write the resource was asked for, and whether its fence admitted it."""

    task: str
    holder: str
    token: int
    time: float
    admitted: bool
    late: bool  # made after its holding ended (a holder that was "paused" past its deadline)
    newest_granted: int  # the highest token granted for the task when the write was made

    def to_dict(self) -> dict[str, Any]:
        """The write as JSON data for report.json."""
        return {"task": self.task, "holder": self.holder, "token": self.token, "t": round(self.time, 3),
                "admitted": self.admitted, "late": self.late, "newest_granted": self.newest_granted}


class FencedResource:
    """The harness's fenced resource: a ``consensus.leases.Fence`` and every write it was asked for."""

    def __init__(self) -> None:
        self.fence = Fence()
        self.writes: list[FencedWrite] = []

    def write(self, *, task: str, holder: str, token: int, now: float, late: bool, newest_granted: int) -> bool:
        """Write under ``token``: admitted unless a higher token for ``task`` was written before."""
        admitted = self.fence.admit(task, token)
        self.writes.append(FencedWrite(task=task, holder=holder, token=token, time=now, admitted=admitted,
                                       late=late, newest_granted=newest_granted))
        return admitted


def fenced_writes(writes: list[FencedWrite], skewed: Sequence[tuple[float, float]] = ()) -> Verdict:
    """No write within its holding is refused, nor one under the newest token granted for its task.

    A write within its holding refused while a clock fault of ``skewed`` was in force (or up to
    ``LEASE_S`` after) is fencing at work, not a violation (see the module doc).
    """
    def excused(w: FencedWrite) -> bool:
        return not w.late and any(start <= w.time <= until + LEASE_S for start, until in skewed)

    problems = [w.to_dict() | {"rule": "refused within its holding" if not w.late else "refused the newest token"}
                for w in writes if not w.admitted and (not w.late or w.token >= w.newest_granted)
                and not (excused(w) and w.token < w.newest_granted)]
    admitted = sum(w.admitted for w in writes)
    stale = sum(1 for w in writes if not w.admitted and w.late)
    late_in = sum(1 for w in writes if w.admitted and w.late)
    skew = sum(1 for w in writes if not w.admitted and excused(w) and w.token < w.newest_granted)
    details = {"writes": len(writes), "admitted": admitted, "refused_stale": stale, "late_admitted": late_in,
               "refused_under_clock_fault": skew}
    if problems:
        p = problems[0]
        return Verdict(name="fenced_writes", ok=False,
                       summary=f"task {p['task']!r}: a write by {p['holder']} under token {p['token']} was "
                               f"{p['rule']} ({len(problems)} such write(s))",
                       details=details | {"violations": len(problems), "examples": problems[:MAX_LISTED]})
    return Verdict(name="fenced_writes", ok=True,
                   summary=f"{admitted} fenced writes admitted; {stale} late write(s) by stale holders refused "
                           f"(fencing at work), {late_in} late write(s) admitted (no newer holder had written yet)"
                           + (f"; {skew} write(s) refused while a clock fault cut leases short" if skew else ""),
                   details=details)


class ReplyError(ValueError):
    """A node's answer to a task call lacks what the API promises."""


def read_answer(reply: Any, field: str, *, task: str, holder: str, path: str, node: str) -> tuple[bool, int | None]:
    """``(reply[field], token)`` from a /tasks/* answer; ``ReplyError`` naming what is wrong otherwise."""
    expected = f"expected an object with {field!r} (bool), and 'token' (int) and 'holder' {holder!r} when true"
    if not isinstance(reply, dict) or type(reply.get(field)) is not bool:
        raise ReplyError(f"chaos: tasks: {path} on {node} answered {str(reply)[:120]!r}; {expected}")
    if not reply[field] or field == "released":
        return reply[field], None
    token = reply.get("token")
    if type(token) is not int or reply.get("holder") != holder or reply.get("task", task) != task:
        raise ReplyError(f"chaos: tasks: {path} on {node} answered {str(reply)[:120]!r}; {expected}")
    return True, token


class TasksWorkload:
    """The attempts, fenced writes and failures of the ``tasks`` workload; one ``cycle`` per client loop."""

    def __init__(self, now: Callable[[], float], lock: threading.Lock) -> None:
        self.now = now
        self.lock = lock  # the run's lock: recorded data is read by the runner
        self.attempts: list[Attempt] = []
        self.resource = FencedResource()
        self.errors: list[str] = []  # malformed answers, named
        self.answered = 0  # task calls that came back (any answer): operations done
        self._newest: dict[str, int] = {}

    def cycle(self, rng: random.Random, holder: str, node: str, client: Any, stop: threading.Event) -> None:
        """One acquire, hold, release-or-lapse round (see the module doc)."""
        client.timeout = REPLY_WAIT_S
        task = rng.choice(TASKS)
        with self.lock:
            a = Attempt(task=task, holder=holder, node=node, invoke=self.now())
            a.deadline = safe_deadline(a.invoke)
            self.attempts.append(a)
        status, got = self._call(client, "/tasks/acquire", {"task": task, "lease": LEASE_S, "holder": holder},
                                 "acquired", a, node)
        with self.lock:
            if status == "ok" and got[0]:
                a.outcome, a.ok, a.token = "granted", self.now(), got[1]
                self._newest[task] = max(self._newest.get(task, 0), a.token)
            else:
                a.outcome = "busy" if status == "ok" else status
        if a.outcome != "granted":
            stop.wait(rng.uniform(0.1, 0.3))
            return
        if a.ok >= a.deadline:  # granted too late to act on
            return
        for _ in range(rng.randint(*WRITES)):
            if stop.is_set() or not self._write(a, late=False):
                break
            stop.wait(rng.uniform(0.1, 0.4))
            if rng.random() < RENEW_P and not self._renew(a, client, node):
                break
        if a.stopped is None and rng.random() >= LAPSE_P:  # else: act no more and let the lease run out
            with self.lock:
                a.stopped = min(self.now(), a.deadline)
            self._call(client, "/tasks/release", {"task": task, "token": a.token, "holder": holder},
                       "released", a, node)
        if rng.random() < LATE_P:  # a holder paused past its deadline wakes up and writes once more
            stop.wait(max(0.0, a.deadline - self.now()) + rng.uniform(0.2, 1.5))
            self._write(a, late=True)

    def _write(self, a: Attempt, *, late: bool) -> bool:
        """One fenced write under the attempt's token; False (nothing written) once the deadline has passed."""
        with self.lock:
            t = self.now()
            if not late and t >= a.deadline:
                return False
            self.resource.write(task=a.task, holder=a.holder, token=a.token, now=t, late=late,
                                newest_granted=self._newest[a.task])
            return True

    def _renew(self, a: Attempt, client: Any, node: str) -> bool:
        """Renew the lease; True if renewed (the deadline moves on), else the holder stops acting now."""
        with self.lock:
            sent = self.now()
        status, got = self._call(client, "/tasks/renew", {"task": a.task, "token": a.token, "lease": LEASE_S,
                                                          "holder": a.holder}, "renewed", a, node)
        with self.lock:
            if status == "ok" and got[0]:
                a.deadline = max(a.deadline, safe_deadline(sent))
                return True
            a.stopped = min(self.now(), a.deadline)
            return False

    def _call(self, client: Any, path: str, body: dict, field: str, a: Attempt, node: str) -> tuple[str, Any]:
        """``("ok", (flag, token))``; ``("fail", None)`` for a clear refusal or a malformed answer (recorded);
        ``("unknown", None)`` when no answer came back."""
        try:
            reply = client.post(path, body)
            got = read_answer(reply, field, task=a.task, holder=a.holder, path=path, node=node)
        except ClientError as exc:
            if str(exc).startswith("client: "):  # no answer (connection refused, timed out)
                return "unknown", None
            with self.lock:  # a clear refusal by the node ("consensus: no leader ...")
                self.answered += 1
            return "fail", None
        except ValueError as exc:  # a ReplyError, or a body that is not JSON at all
            message = str(exc) if isinstance(exc, ReplyError) else f"chaos: tasks: {path} on {node} answered " \
                f"something that is not JSON ({exc}); expected a JSON object"
            with self.lock:
                self.answered += 1
                self.errors.append(message)
            return "fail", None
        except (OSError, http.client.HTTPException):  # a socket timeout, a connection cut mid-answer
            return "unknown", None
        with self.lock:
            self.answered += 1
        return "ok", got

    def verdicts(self, skewed: Sequence[tuple[float, float]] = ()) -> list[dict]:
        """The three task checkers' verdicts, as JSON data (``skewed``: clock fault windows, see the module doc)."""
        from .checkers import fencing_monotonic, no_double_holders

        with self.lock:
            attempts, writes, errors = list(self.attempts), list(self.resource.writes), list(self.errors)
        out = [fencing_monotonic(grants(attempts)).to_dict(),
               no_double_holders(holdings(attempts, skewed), clock_bound_s=CLOCK_BOUND_S).to_dict(),
               fenced_writes(writes, skewed).to_dict()]
        if errors:
            out[-1]["details"]["malformed_answers"] = errors[:MAX_LISTED]
        return out

    def summary(self) -> dict[str, Any]:
        """Counts for report.json: attempts by outcome, holdings, fenced writes, malformed answers."""
        with self.lock:
            attempts, writes = list(self.attempts), list(self.resource.writes)
            errors = list(self.errors)
        outcomes: dict[str, int] = {}
        for a in attempts:
            outcomes[a.outcome] = outcomes.get(a.outcome, 0) + 1
        return {"tasks": list(TASKS), "lease_s": LEASE_S, "drift_margin_s": DRIFT_MARGIN_S,
                "acquires": outcomes, "holdings": len(holdings(attempts)),
                "fenced_writes": len(writes), "fenced_admitted": sum(w.admitted for w in writes),
                "fenced_refused_stale": sum(1 for w in writes if not w.admitted and w.late),
                "malformed_answers": len(errors), "malformed_examples": errors[:MAX_LISTED],
                "attempts": [a.to_dict() for a in attempts], "writes": [w.to_dict() for w in writes]}


__all__ = ["TASKS", "Attempt", "FencedResource", "FencedWrite", "TasksWorkload", "fenced_writes", "grants",
           "holdings", "read_answer", "safe_deadline"]
