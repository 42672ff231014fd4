"""Measurements beside the safety checks: recovery after each heal, and messages per operation (pure).

Theory of operation
-------------------
*Recovery.* After the nemesis heals a fault, a probe polls the cluster every
``PROBE_INTERVAL_S`` until the next fault starts (or ``RECOVERY_WINDOW_S``
passes) and records two kinds of success with the runner's clock:

* ``leader``: more than half of the nodes answer ``/status``, every answering
  voter names the same leader (``leader_agreed``), and then a config write
  through Raft commits (the probe's own key, outside the register workload's).
* ``converged``: every node answers and holds, for every sensor key, an entry
  at least as new (HLC) as the newest write acknowledged before the heal
  (``caught_up``): what either side of a partition took while it was cut off
  has reached everyone. Writes keep arriving meanwhile, so "all replicas
  equal" is seldom true at one instant; "everyone has the past" is.

``recovery`` turns a heal and its probe's successes into seconds after the
heal (None: not within the window), and ``recovery_verdict`` states the
liveness rule: a leader everyone agrees on, able to commit, within
``LEADER_BOUND_S`` of every heal.

*Messages per operation.* Each node counts the mesh RPC frames it sends
(``/status`` → ``rpc.frames_sent``: requests, replies and one-way notes on
libp2p streams and direct links: gossip, membership, CRDT sync, forwarded
calls). Raft's own messages (pysyncobj's TCP, heartbeats every 30 ms) are not
counted: pysyncobj keeps no counter. ``FrameTally`` sums each node's increase
between readings; a restarted node counts from zero again, so a reading lower
than the last one is all new (frames a node sent between its last reading and
a kill are lost: the figure is a lower bound).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .checkers import MAX_LISTED, Verdict

LEADER_BOUND_S = 10.0  # liveness: after a heal, a leader all agree on and a committed write within this
PROBE_INTERVAL_S = 0.5  # at most this often a probe polls every node
RECOVERY_WINDOW_S = 30.0  # a probe gives up after this long (or when the next fault starts)


def leader_agreed(views: Mapping[str, dict | None], nodes: int) -> str | None:
    """The leader every answering voter names, if more than half of ``nodes`` answered; else None.

    ``views`` maps each node to its ``/status`` ``raft`` section (None: it did not answer).
    """
    answered = [v for v in views.values() if isinstance(v, dict)]
    if 2 * len(answered) <= nodes:
        return None
    leaders = {v.get("leader") for v in answered if v.get("role") != "forwarder"}
    if len(leaders) != 1:
        return None
    leader = leaders.pop()
    return leader if isinstance(leader, str) and leader else None


def acked_before(writes: Iterable[tuple[str, tuple | None, str, float]], at: float) -> dict[str, tuple]:
    """The newest acknowledged HLC stamp per key among ``(key, stamp, status, done_at)`` done by ``at``."""
    newest: dict[str, tuple] = {}
    for key, stamp, status, done in writes:
        if status == "ok" and stamp is not None and done <= at and (key not in newest or stamp > newest[key]):
            newest[key] = stamp
    return newest


def caught_up(rows: list[dict] | None, wanted: Mapping[str, tuple]) -> bool:
    """Whether a replica's ``/state/list`` rows hold every key of ``wanted`` at least as new as its stamp."""
    if not isinstance(rows, list):
        return False
    have = {}
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("hlc"), list):
            have[row.get("key")] = tuple(row["hlc"])
    return all(key in have and have[key] >= stamp for key, stamp in wanted.items())


@dataclass(frozen=True, slots=True, kw_only=True)
class Heal:
    """A fault the nemesis healed at ``healed_at``; its probe ran until ``until``."""

    fault: str
    healed_at: float
    until: float


def recovery(heal: Heal, successes: Iterable[tuple[str, float]]) -> dict[str, Any]:
    """Seconds from the heal to the first ``leader`` and ``converged`` success in its window (None: none)."""
    first: dict[str, float] = {}
    for kind, t in successes:
        if heal.healed_at <= t <= heal.until and t < first.get(kind, float("inf")):
            first[kind] = t
    return {"fault": heal.fault, "healed_at": round(heal.healed_at, 3), "window_s": round(heal.until - heal.healed_at, 3),
            "leader_s": _since(first.get("leader"), heal.healed_at),
            "converged_s": _since(first.get("converged"), heal.healed_at)}


def _since(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 3)


def worst(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The slowest recovery of each kind; None where some heal never recovered (or there were no heals)."""
    out: dict[str, Any] = {}
    for kind in ("leader_s", "converged_s"):
        values = [row[kind] for row in rows]
        out[f"worst_{kind}"] = None if not values or None in values else max(values)
    return out


def recovery_verdict(rows: list[dict[str, Any]], bound_s: float = LEADER_BOUND_S) -> Verdict:
    """Liveness: after every heal a leader all answering nodes agree on committed a write within ``bound_s``."""
    late = [row for row in rows if row["leader_s"] is None or row["leader_s"] > bound_s]
    if late:
        r = late[0]
        when = "never, within its window" if r["leader_s"] is None else f"after {r['leader_s']:g} s"
        return Verdict(name="recovery", ok=False,
                       summary=f"after healing {r['fault']}: a leader and a committed write {when} "
                               f"(bound {bound_s:g} s)",
                       details={"bound_s": bound_s, "late": late[:MAX_LISTED], "heals": len(rows)})
    slowest = max((row["leader_s"] for row in rows), default=None)
    return Verdict(name="recovery", ok=True,
                   summary=f"{len(rows)} heal(s): leader and a committed write within {bound_s:g} s each"
                           + ("" if slowest is None else f" (slowest {slowest:g} s)"),
                   details={"bound_s": bound_s, "heals": len(rows)})


class FrameTally:
    """Frames sent by all nodes since the first reading, summed over restarts (see the module doc)."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.total = 0

    def observe(self, node: str, sent: Any) -> None:
        """Add a counter reading under ``node`` (ignored unless an int >= 0)."""
        if type(sent) is not int or sent < 0:
            return
        prev = self.last.get(node)
        if prev is not None:
            self.total += sent - prev if sent >= prev else sent  # lower: the node restarted from zero
        self.last[node] = sent


def messages_per_op(frames: int, ops: int, background_per_s: float | None, seconds: float) -> dict[str, Any]:
    """``frames / ops``, and the same with the idle background rate (measured before the load) taken off."""
    per_op = None if ops <= 0 else round(frames / ops, 2)
    net = None
    if ops > 0 and background_per_s is not None:
        net = round(max(0.0, frames - background_per_s * seconds) / ops, 2)
    return {"messages_per_op": per_op, "messages_per_op_above_idle": net, "frames_sent": frames, "ops": ops,
            "idle_frames_per_s": None if background_per_s is None else round(background_per_s, 1),
            "seconds": round(seconds, 1),
            "counted": "messages sent by every node: mesh RPC frames (requests, replies, notes: gossip, membership, "
                       "CRDT sync, forwarded calls) and Raft messages (appends, heartbeats, votes: pysyncobj's TCP); "
                       "not the harness's HTTP calls; ops = operations that got an answer (ok or refused), "
                       "all workloads"}


__all__ = ["FrameTally", "Heal", "LEADER_BOUND_S", "acked_before", "caught_up", "leader_agreed", "messages_per_op",
           "recovery", "recovery_verdict", "worst"]
