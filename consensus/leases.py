"""Task assignments: leases and fencing tokens, applied purely (part of ``consensus.machine``).

Theory of operation
-------------------
A task (any name: "camera-3/transcode", "site-a/leader") is held by at most
one holder at a time. ``TaskAcquire`` grants it for ``lease`` seconds with a
fencing token; the holder keeps it with ``TaskRenew`` before the lease runs
out and gives it back with ``TaskRelease``.

*Time without a clock.* ``apply`` must give the same answer on every replica,
so it reads no clock. Every task command carries ``now``: the Unix time of the
voter that submitted it (the mesh stamps it there, also for commands a
non-voter forwards, so only voters' clocks count). The state keeps the
*cluster clock* ``state.clock``: the largest ``now`` any task write carried. A
command is judged at ``t = max(state.clock, command.now)``, so cluster time
never runs backwards even when a voter's clock does. A lease granted at ``t``
runs until ``expires_at = t + lease``, and it is live at cluster time ``u``
while ``u < expires_at``.

*At most one live holder.* A task is granted only when it has no lease that is
live at ``t``. Commands apply in log order and ``t`` never decreases, so in
cluster time the leases of one task never overlap: whatever the timing, the
log never shows two live holders of one task. A holder keeps its own deadline
on its own monotonic clock, started *before* it submitted the acquire
(``expires_at`` was computed from a stamp taken later, so that deadline comes
first), minus a margin for clock drift, and stops acting for the task there.

The other direction is safe but slow: after a voter whose clock ran ahead is
set right, the cluster clock stays ahead of every voter's clock (it never runs
back) until real time catches up, so a lease granted meanwhile lasts up to
that much longer in real time, and a crashed holder keeps its task for that
long plus its lease (seen with the chaos harness's ``clock-jump``).

*Why fencing tokens are still needed.* The holder's own deadline is only as
good as the clocks: a voter whose clock runs ahead drags the cluster clock
ahead and ends leases early, and a holder can pause (GC, SIGSTOP, a swapped-out
VM) past its deadline without noticing. Then a second holder may act while
the first still believes it holds the task. Every grant therefore takes a new
token from one cluster-wide counter (``state.fence``), so a task's tokens
strictly increase across holders. A resource the holders write to keeps the
highest token it has seen per task and refuses lower ones (``Fence`` below,
Chubby's sequencers, Kleppmann's fencing): once the new holder has touched the
resource, the old holder's writes are refused, even if its lease "still runs"
on its own clock. ``TaskCheck`` asks the log whether a token is the live one.

*Retries.* A command may apply twice (the Raft adapter retries a write whose
outcome it could not learn), so a holder that acquires a task it already holds
under a live lease keeps its token and gets its lease extended; renew and
release name the token, so a late duplicate can never touch a newer holder's
lease. A renew after the lease expired fails even if nobody took the task: the
holder must acquire again and gets a new token. Released and expired leases
leave no trace but the counter.

Failures (held by another, wrong token, expired) are answers, not refusals:
the result says ``acquired`` / ``renewed`` / ``released`` False with the
current lease, the state is unchanged and the revision does not move.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .commands import TaskAcquire, TaskCheck, TaskList, TaskRelease, TaskRenew
from .state import ClusterState, TaskLease

TaskCommand = TaskAcquire | TaskRenew | TaskRelease | TaskCheck | TaskList


def lease_dict(task: str, lease: TaskLease | None) -> dict:
    """``{"task", "holder", "token", "acquired_at", "expires_at"}``; None fields for a free task."""
    if lease is None:
        return {"task": task, "holder": None, "token": None, "acquired_at": None, "expires_at": None}
    return {"task": task, **lease.to_wire()}


def live_lease(state: ClusterState, task: str, now: float) -> TaskLease | None:
    """The lease on ``task`` that is live at cluster time ``max(state.clock, now)``, if any."""
    lease = state.tasks.get(task)
    t = max(state.clock, now)
    return lease if lease is not None and lease.live_at(t) else None


def apply_task(state: ClusterState, command: TaskCommand) -> tuple[ClusterState, Any]:
    """Apply one task command (see the module doc); never refuses a well-formed one."""
    if isinstance(command, TaskList):
        return state, {
            "revision": state.revision, "clock": state.clock, "fence": state.fence,
            "tasks": [lease_dict(t, state.tasks[t]) for t in sorted(state.tasks)],
        }
    t = max(state.clock, command.now)
    current = state.tasks.get(command.task)
    live = current if current is not None and current.live_at(t) else None

    if isinstance(command, TaskCheck):
        valid = live is not None and live.token == command.token
        return state, {**lease_dict(command.task, live), "valid": valid, "checked_token": command.token}

    revision = state.revision + 1
    if isinstance(command, TaskAcquire):
        if live is not None and live.holder != command.holder:
            return state, {**lease_dict(command.task, live), "acquired": False, "revision": state.revision}
        if live is not None:  # the holder again (a retry, or acquire used as renew): same token
            lease = replace(live, expires_at=max(live.expires_at, t + command.lease))
            fence = state.fence
        else:
            fence = state.fence + 1
            lease = TaskLease(command.holder, fence, t, t + command.lease)
        new = replace(state, revision=revision, clock=t, fence=fence, tasks=state.tasks.set(command.task, lease))
        return new, {**lease_dict(command.task, lease), "acquired": True, "revision": revision}

    holds = live is not None and live.holder == command.holder and live.token == command.token
    if isinstance(command, TaskRenew):
        if not holds:
            return state, {**lease_dict(command.task, live), "renewed": False, "revision": state.revision}
        lease = replace(live, expires_at=t + command.lease)
        new = replace(state, revision=revision, clock=t, tasks=state.tasks.set(command.task, lease))
        return new, {**lease_dict(command.task, lease), "renewed": True, "revision": revision}

    # TaskRelease: an expired lease nobody took may still be released by its holder.
    mine = current is not None and current.holder == command.holder and current.token == command.token
    if not mine:
        return state, {**lease_dict(command.task, live), "released": False, "revision": state.revision}
    new = replace(state, revision=revision, clock=t, tasks=state.tasks.delete(command.task))
    return new, {**lease_dict(command.task, None), "released": True, "revision": revision}


class Fence:
    """A resource's guard against stale holders: admits a token only if no higher one was seen for its task.

    Keep one per resource (it is plain memory; persist ``highest`` with the
    resource if it must survive restarts). Equal tokens pass: a holder makes
    many writes under one token.
    """

    __slots__ = ("highest",)

    def __init__(self, highest: dict[str, int] | None = None) -> None:
        self.highest: dict[str, int] = dict(highest or {})

    def admit(self, task: str, token: int) -> bool:
        """Whether a write fenced by ``token`` may go ahead (and remember it as the highest)."""
        if token < self.highest.get(task, 0):
            return False
        self.highest[task] = token
        return True
