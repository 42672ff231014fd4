"""Where one attempt of a request runs: here, whole on a peer, split, or a degraded answer here (pure).

Theory of operation
-------------------
A request lives through attempts until it has one answer or its deadline
passes. Its states and the only transitions (the driver,
``mesh/inference_service.py``, follows this table; ``TRANSITIONS`` is it)::

    routing --local-->    running here        --ok--> answered
            --remote-->   sent to peer P      --ok--> answered
                                              --fail/stall--> routing (P excluded)
            --split-->    prefix here, suffix on P --ok--> answered
                                              --fail/stall--> routing (P excluded; the prefix is kept)
            --degraded--> degraded here       --ok--> answered (flagged degraded)
            --none-->     refused (a clear error naming why)
    any state --deadline passed--> refused

Invariants: a request is answered at most once (the driver returns the first
answer and drops a late reply to an abandoned attempt); a peer that failed or
stalled is not tried again for this request; "here" is never excluded (the
last resort while the deadline lasts); an attempt on a peer gets at most the
time left, and less when the peer is predicted to answer much sooner, so a
stalled peer is noticed while there is still time to run elsewhere.

Choosing (``route``). With the model runnable here (loaded, and the local
queue under its hard limit), the planner (``inference/planner.py``: local
compute + RTT + bytes / bandwidth + remote queue + remote compute over
all-local, all-remote and the served cuts) picks the earliest predicted
completion among here and the peers that have room. Peers' partitions are
comparable only when their cut signature equals ours; a peer without matching
figures is scaled from ours by its whole-model time, and then offered whole
only. ``offload="off"`` never sends anything; ``"prefer"`` sends whole to the
best peer with room whenever there is one (a battery-powered node, say).
A node whose CPU is saturated (at its budget: cores it may use, capped by a
CPU quota) sends the request to the best peer plan even when running here
predicts sooner, and even to a peer past its advertised room (a peer refuses
past its own hard limit; the request is then routed again): every ms it
computes is a ms it cannot spend passing its
other requests on, so under load its own runs cost the whole mesh throughput
(``bench offload``: the weakest node passing all requests on is what lets the
stronger ones work). With the model not runnable here, the peer with the earliest predicted
completion takes it whole. With no peer and no local run possible — or no peer
and a local run predicted to miss the deadline — a degraded variant (an exit
head's answer) is used when the model has one; otherwise the request is
refused with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from crdt.errors import LocalProtocolError
from inference.messages import PartProfile
from inference.planner import Measurements, ModelProfile, NodeMeasurement, PeerMeasurement, PlanOptions, plan

LOCAL, REMOTE, SPLIT, DEGRADED, REFUSE = "local", "remote", "split", "degraded", "refuse"
TRANSITIONS = {
    "routing": {LOCAL: "running here", REMOTE: "sent to peer", SPLIT: "split", DEGRADED: "degraded here",
                REFUSE: "refused"},
    "running here": {"ok": "answered", "deadline": "refused"},
    "sent to peer": {"ok": "answered", "fail": "routing", "stall": "routing", "deadline": "refused"},
    "split": {"ok": "answered", "fail": "routing", "stall": "routing", "deadline": "refused"},
    "degraded here": {"ok": "answered", "deadline": "refused"},
}
OFFLOAD_MODES = ("auto", "off", "prefer")
STALL_FACTOR = 4.0  # an attempt on a peer may take this many times its prediction ...
STALL_FLOOR_MS = 1500.0  # ... plus this, before the peer counts as stalled
DEFAULT_RTT_MS = 3.0  # py-libp2p's measured round trip with framing, until we have our own figure
DEFAULT_BANDWIDTH = 50e6  # bytes/s: py-libp2p's measured bulk rate on loopback (DEPENDENCY-NOTES.md)


@dataclass(frozen=True, slots=True, kw_only=True)
class Here:
    """This node's side: its profile of the model (None: not runnable here), queue and hard limit."""

    profile: PartProfile | None
    queue: int
    limit: int
    degraded: bool = False  # the model has a degraded variant here (an exit head)
    saturated: bool = False  # this node's CPU is at its budget (mesh/cpu_budget.py)

    def __post_init__(self) -> None:
        if type(self.queue) is not int or type(self.limit) is not int or self.queue < 0 or self.limit < 1:
            raise LocalProtocolError(f"inference: queue must be >= 0 and limit >= 1, got {self.queue}/{self.limit}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """A peer that has the model loaded, as its last unexpired advert and our own calls tell."""

    peer: str
    queue: int  # advertised, plus what we sent it since
    max_queue: int
    profile: PartProfile | None  # its measured figures; None: not measured yet
    whole_ms: float | None = None  # its measured whole-model run time when it has no profile
    rtt_ms: float = DEFAULT_RTT_MS
    bandwidth: float = DEFAULT_BANDWIDTH

    def __post_init__(self) -> None:
        if not isinstance(self.peer, str) or not self.peer:
            raise LocalProtocolError(f"inference: peer must be a non-empty str, got {self.peer!r}")
        if type(self.queue) is not int or type(self.max_queue) is not int or self.queue < 0 or self.max_queue < 0:
            raise LocalProtocolError(f"inference: peer queue figures must be ints >= 0, got {self.queue}/{self.max_queue}")

    @property
    def has_room(self) -> bool:
        """Whether its queue is under its advertised bound."""
        return self.queue < self.max_queue


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One attempt: what to do, where, from which boundary, and how long to give a peer."""

    kind: str  # LOCAL, REMOTE, SPLIT, DEGRADED or REFUSE
    peer: str | None = None
    cut: int = 0  # SPLIT: partitions [0, cut) here, [cut, K) on the peer
    predicted_ms: float = 0.0
    attempt_s: float = 0.0  # REMOTE/SPLIT: how long the peer gets before it counts as stalled
    reason: str = ""


def route(*, here: Here, peers: Sequence[Peer], excluded: Iterable[str] = (), remaining_s: float,
          offload: str = "auto", planner: PlanOptions | None = None) -> Route:
    """The next attempt for a request with ``remaining_s`` left (see the module doc)."""
    if offload not in OFFLOAD_MODES:
        raise LocalProtocolError(f"inference: offload must be one of {OFFLOAD_MODES}, got {offload!r}")
    if not math.isfinite(remaining_s):
        raise LocalProtocolError(f"inference: remaining_s must be finite, got {remaining_s!r}")
    if remaining_s <= 0:
        return Route(kind=REFUSE, reason="the deadline passed")
    skip = set(excluded)
    # A saturated node may also send past a peer's advertised room (the peer refuses past its own hard
    # limit, and the request is routed again): a queue there costs this node no CPU, a run here does.
    usable = [] if offload == "off" else sorted(
        (p for p in peers if p.peer not in skip and (p.has_room or here.saturated)), key=lambda p: p.peer)
    runnable = here.profile is not None and here.queue < here.limit
    budget_ms = remaining_s * 1000.0

    if not runnable:
        if usable:
            best = min(usable, key=lambda p: (_whole_remote_ms(p, here.profile), p.peer))
            return _remote(best, _whole_remote_ms(best, here.profile), budget_ms)
        if here.degraded:
            return Route(kind=DEGRADED, reason="no peer can take it and it cannot run here in full")
        why = "not loaded here" if here.profile is None else f"{here.queue} requests queued here (limit {here.limit})"
        tried = f"; {len(skip)} peer(s) failed or stalled" if skip else ""
        return Route(kind=REFUSE, reason=f"the model is {why} and no peer with the model has room{tried}")

    mine = here.profile
    if offload == "prefer" and usable:
        best = min(usable, key=lambda p: (_whole_remote_ms(p, mine), p.peer))
        return _remote(best, _whole_remote_ms(best, mine), budget_ms)
    measurements = Measurements(
        profile=ModelProfile(model="m", boundary_bytes=mine.boundary_bytes),
        local=NodeMeasurement(node="~here", compute_ms=mine.compute_ms, memory_bytes=mine.memory_bytes,
                              queue=here.queue),
        peers=tuple(_measurement(p, mine) for p in usable),
    )
    options = planner or PlanOptions()
    whole_only = [p.peer for p in usable if p.profile is None or p.profile.cuts != mine.cuts]
    decision = plan(measurements, options)
    best = decision.best
    if best.peer in whole_only and 0 < best.cut < mine.partitions:
        # It cannot run our partitions: choose again among whole plans and splits to matching peers.
        allowed = [p for p in decision.considered
                   if p.peer is None or p.peer not in whole_only or p.cut in (0, mine.partitions)]
        best = min(allowed, key=lambda p: (round(p.predicted_ms, 9), p.parts, p.peer or "", p.cut))
    if best.peer is None and here.saturated and here.queue > 0:
        # A CPU-bound node that computes steals the CPU it needs to pass its other requests on (and
        # a quota's throttling makes its own predicted time optimistic): the best peer plan instead.
        # One run at a time here still goes (queue 0): model runs are low-priority threads, so it
        # takes only the CPU that passing requests on leaves idle.
        remote = [p for p in decision.considered
                  if p.peer is not None and (p.peer not in whole_only or p.cut in (0, mine.partitions))]
        if remote:
            best = min(remote, key=lambda p: (round(p.predicted_ms, 9), p.parts, p.peer or "", p.cut))
    if best.peer is None:
        if best.predicted_ms > budget_ms and here.degraded and not usable:
            return Route(kind=DEGRADED, predicted_ms=best.predicted_ms,
                         reason=f"a full run here is predicted at {best.predicted_ms:.0f} ms, past the deadline")
        return Route(kind=LOCAL, predicted_ms=best.predicted_ms)
    peer = next(p for p in usable if p.peer == best.peer)
    if best.cut == 0:
        return _remote(peer, best.predicted_ms, budget_ms)
    return Route(kind=SPLIT, peer=peer.peer, cut=best.cut, predicted_ms=best.predicted_ms,
                 attempt_s=_attempt_s(best.predicted_ms, budget_ms))


def attempt_seconds(predicted_ms: float, remaining_s: float) -> float:
    """How long a peer gets for an attempt predicted at ``predicted_ms`` with ``remaining_s`` left."""
    return _attempt_s(predicted_ms, remaining_s * 1000.0)


def _attempt_s(predicted_ms: float, budget_ms: float) -> float:
    return min(budget_ms, predicted_ms * STALL_FACTOR + STALL_FLOOR_MS) / 1000.0


def _remote(peer: Peer, predicted_ms: float, budget_ms: float) -> Route:
    return Route(kind=REMOTE, peer=peer.peer, predicted_ms=predicted_ms, attempt_s=_attempt_s(predicted_ms, budget_ms))


def _peer_ms(p: Peer, mine: PartProfile | None) -> tuple[float, ...]:
    """The peer's per-partition compute in our partitioning."""
    if mine is not None and p.profile is not None and p.profile.cuts == mine.cuts:
        return p.profile.compute_ms
    whole = p.profile.whole_ms if p.profile is not None else p.whole_ms
    if mine is None:
        return (whole if whole is not None else 0.0,)
    if whole is None or mine.whole_ms <= 0:
        return mine.compute_ms  # not measured: taken as fast as this node
    scale = whole / mine.whole_ms
    return tuple(x * scale for x in mine.compute_ms)


def _whole_remote_ms(p: Peer, mine: PartProfile | None) -> float:
    """Predicted completion of the whole model on ``p``: its queue, its run, the link both ways."""
    whole = math.fsum(_peer_ms(p, mine))
    sizes = mine.boundary_bytes if mine is not None else (p.profile.boundary_bytes if p.profile else (0, 0))
    return (p.queue + 1) * whole + p.rtt_ms + (sizes[0] + sizes[-1]) / p.bandwidth * 1000.0


def _measurement(p: Peer, mine: PartProfile) -> PeerMeasurement:
    ms = _peer_ms(p, mine)
    memory = p.profile.memory_bytes if p.profile is not None and p.profile.cuts == mine.cuts else mine.memory_bytes
    return PeerMeasurement(node=p.peer, compute_ms=ms, memory_bytes=memory, queue=p.queue, rtt_ms=p.rtt_ms,
                           bandwidth=p.bandwidth)


__all__ = ["DEGRADED", "LOCAL", "OFFLOAD_MODES", "REFUSE", "REMOTE", "SPLIT", "TRANSITIONS", "Here", "Peer",
           "Route", "attempt_seconds", "route"]
