"""Where each part of a model runs: here, on a peer, or a local prefix then a remote suffix (pure).

Theory of operation
-------------------
A model is cut at its boundaries ``0..K``: boundary 0 is the model's input,
boundary ``k`` the activation between partition ``k-1`` and ``k``, boundary
``K`` its output. ``ModelProfile.boundary_bytes`` says what each weighs in
fp32. Every node reports, per partition, its measured compute time and session
memory (``NodeMeasurement``); peers add their link (RTT and bandwidth).

A plan is a boundary ``c`` and a node: partitions ``[0, c)`` run here and
``[c, K)`` on the peer. ``c = K`` is all-local, ``c = 0`` all-remote. Its
predicted completion (Neurosurgeon's cost model, Kang et al. ASPLOS 2017, with
queues added) is::

    local wait + local compute[0:c]
      + RTT + (bytes[c] + bytes[K]) / bandwidth          (activation out, result back)
      + remote wait + remote compute[c:K]
      + partition penalty * (parts - 1) + sum over nodes of MB hosted * node's ms per MB

where a node's wait is its queue length times its whole-model time (queued
requests are taken to be whole requests for this model). The waits are added,
not overlapped with the transfer: conservative, and the cost the issue names.
With ``allow_fp16`` the tensors that travel are sent as fp16: half the bytes.
A plan that puts more memory on a node than its limit is not considered.

Candidates. All-local, all-remote on every peer, and per peer a *few* cuts:
the caller's (``PlanOptions.cuts``: the cuts whose partitions are deployed) or
else the "staircase" of boundaries that weigh less than every earlier one
(including the input) — a later boundary that weighs more than an earlier one
only wins when the peer is slower than this node on the partitions between,
when running here is usually better still. At most ``max_cuts`` of them, the
lightest. ``bench/planner.py`` measures what this restriction costs against
brute force over every boundary.

Ties (equal predicted time to 1e-9 ms) go, in order, to fewer partitions, fewer
bytes on the wire, running here, the lower peer id, the earlier cut: the same
answer on every node, and ``Decision.tie_break`` says which rule decided.

Everything here is a function of the measurements passed in: no clock, no
onnxruntime. ``inference/profiler.py`` makes the measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from crdt.errors import LocalProtocolError
from inference.errors import InferenceError

MB = 1_000_000
_TIE_DIGITS = 9  # predicted times equal to a nanosecond of a millisecond are a tie


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelProfile:
    """What travels at each boundary of a model cut into ``len(boundary_bytes) - 1`` partitions (fp32 bytes)."""

    model: str
    boundary_bytes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise LocalProtocolError(f"inference: planner model name must be a non-empty str, got {self.model!r}")
        b = self.boundary_bytes
        if not isinstance(b, tuple) or len(b) < 2 or any(type(x) is not int or x < 0 for x in b):
            raise LocalProtocolError(
                "inference: planner boundary_bytes must be a tuple of >= 2 ints >= 0 (input, each cut, output), "
                f"got {b!r}"
            )

    @property
    def partitions(self) -> int:
        """How many partitions the boundaries delimit."""
        return len(self.boundary_bytes) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeMeasurement:
    """One node's figures for one model: per-partition compute (ms) and session memory (bytes), its queue, its limits."""

    node: str
    compute_ms: tuple[float, ...]
    memory_bytes: tuple[int, ...]
    queue: int = 0
    memory_limit_bytes: int | None = None  # None: no limit
    memory_ms_per_mb: float = 0.0  # soft cost of hosting a MB here (a memory-pressed node charges more)

    def __post_init__(self) -> None:
        if not isinstance(self.node, str) or not self.node:
            raise LocalProtocolError(f"inference: planner node id must be a non-empty str, got {self.node!r}")
        c = self.compute_ms
        if not isinstance(c, tuple) or not c or not all(_finite(x) and x >= 0 for x in c):
            raise LocalProtocolError(
                f"inference: {self.node}: compute_ms must be a non-empty tuple of finite numbers >= 0, got {c!r}"
            )
        m = self.memory_bytes
        if not isinstance(m, tuple) or len(m) != len(c) or any(type(x) is not int or x < 0 for x in m):
            raise LocalProtocolError(
                f"inference: {self.node}: memory_bytes must be a tuple of {len(c)} ints >= 0 (one per partition), got {m!r}"
            )
        if type(self.queue) is not int or self.queue < 0:
            raise LocalProtocolError(f"inference: {self.node}: queue must be an int >= 0, got {self.queue!r}")
        limit = self.memory_limit_bytes
        if limit is not None and (type(limit) is not int or limit < 0):
            raise LocalProtocolError(f"inference: {self.node}: memory_limit_bytes must be None or an int >= 0, got {limit!r}")
        if not _finite(self.memory_ms_per_mb) or self.memory_ms_per_mb < 0:
            raise LocalProtocolError(
                f"inference: {self.node}: memory_ms_per_mb must be a finite number >= 0, got {self.memory_ms_per_mb!r}"
            )

    @property
    def whole_ms(self) -> float:
        """Compute time of the whole model here (the service time of one queued request)."""
        return math.fsum(self.compute_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerMeasurement(NodeMeasurement):
    """A peer's figures plus the link to it: round trip (ms) and bandwidth (bytes/s)."""

    rtt_ms: float
    bandwidth: float  # bytes per second

    def __post_init__(self) -> None:
        NodeMeasurement.__post_init__(self)
        if not _finite(self.rtt_ms) or self.rtt_ms < 0:
            raise LocalProtocolError(f"inference: {self.node}: rtt_ms must be a finite number >= 0, got {self.rtt_ms!r}")
        if not isinstance(self.bandwidth, (int, float)) or isinstance(self.bandwidth, bool) or not self.bandwidth > 0:
            raise LocalProtocolError(
                f"inference: {self.node}: bandwidth must be a number of bytes/s > 0 (inf for a free link), got {self.bandwidth!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanOptions:
    """Planner knobs; every default is the plain cost model."""

    allow_fp16: bool = False  # send travelling tensors as fp16 (half the bytes, some precision lost)
    partition_penalty_ms: float = 0.0  # per partition beyond the first: a session more, a hop more to fail
    max_cuts: int = 4  # cuts considered per peer (besides all-local and all-remote)
    cuts: tuple[int, ...] | None = None  # consider exactly these boundaries (the deployed ones); None: the staircase

    def __post_init__(self) -> None:
        if not _finite(self.partition_penalty_ms) or self.partition_penalty_ms < 0:
            raise LocalProtocolError(
                f"inference: partition_penalty_ms must be a finite number >= 0, got {self.partition_penalty_ms!r}"
            )
        if type(self.max_cuts) is not int or self.max_cuts < 0:
            raise LocalProtocolError(f"inference: max_cuts must be an int >= 0, got {self.max_cuts!r}")
        if self.cuts is not None and (not isinstance(self.cuts, tuple) or any(type(c) is not int for c in self.cuts)):
            raise LocalProtocolError(f"inference: cuts must be None or a tuple of ints, got {self.cuts!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurements:
    """Everything the planner reads: the model's boundaries, this node, the peers that hold the model."""

    profile: ModelProfile
    local: NodeMeasurement
    peers: tuple[PeerMeasurement, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.profile, ModelProfile) or not isinstance(self.local, NodeMeasurement):
            raise LocalProtocolError("inference: Measurements needs a ModelProfile and a NodeMeasurement for this node")
        if not isinstance(self.peers, tuple) or not all(isinstance(p, PeerMeasurement) for p in self.peers):
            raise LocalProtocolError(f"inference: peers must be a tuple of PeerMeasurement, got {self.peers!r}")
        k = self.profile.partitions
        for node in (self.local, *self.peers):
            if len(node.compute_ms) != k:
                raise LocalProtocolError(
                    f"inference: {node.node} measured {len(node.compute_ms)} partitions but model "
                    f"{self.profile.model} has {k} (boundary_bytes has {k + 1} entries); re-profile"
                )
        ids = [self.local.node, *(p.node for p in self.peers)]
        if len(set(ids)) != len(ids):
            raise LocalProtocolError(f"inference: node ids must be unique, got {ids}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Partitions ``[0, cut)`` here, ``[cut, K)`` on ``peer``; the predicted completion and its terms (ms)."""

    peer: str | None  # None: all here
    cut: int
    partitions: int  # of the model: K
    predicted_ms: float
    local_wait_ms: float = 0.0
    local_ms: float = 0.0
    network_ms: float = 0.0  # RTT + bytes / bandwidth
    remote_wait_ms: float = 0.0
    remote_ms: float = 0.0
    penalty_ms: float = 0.0  # partitions and memory
    bytes_sent: int = 0  # both ways
    fp16: bool = False

    @property
    def kind(self) -> str:
        """``local``, ``remote`` or ``split``."""
        if self.peer is None or self.cut == self.partitions:
            return "local"
        return "remote" if self.cut == 0 else "split"

    @property
    def parts(self) -> int:
        """Sessions the plan runs: 1, or 2 for a split."""
        return 2 if self.kind == "split" else 1

    @property
    def key(self) -> tuple[str | None, int, bool]:
        """What identifies the choice (not its price)."""
        return (None, self.partitions, False) if self.kind == "local" else (self.peer, self.cut, self.fp16)

    def describe(self) -> str:
        """``local``, ``remote:peer`` or ``split@cut->peer``, with the prediction."""
        where = {"local": "local", "remote": f"remote:{self.peer}", "split": f"split@{self.cut}->{self.peer}"}[self.kind]
        return f"{where} {self.predicted_ms:.3f} ms"


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The chosen plan, the runner-up, how many plans were priced, which tie rule decided (if any)."""

    best: Plan
    runner_up: Plan | None
    considered: tuple[Plan, ...] = field(repr=False)
    tie_break: str | None
    options: PlanOptions


def candidate_cuts(profile: ModelProfile, options: PlanOptions | None = None) -> tuple[int, ...]:
    """The inner boundaries (1..K-1) the planner tries per peer (see the module doc)."""
    options = options or PlanOptions()
    k = profile.partitions
    if options.cuts is not None:
        bad = [c for c in options.cuts if not 0 <= c <= k]
        if bad:
            raise LocalProtocolError(f"inference: cuts {bad} are outside boundaries 0..{k} of {profile.model}")
        return tuple(sorted({c for c in options.cuts if 0 < c < k}))
    b = profile.boundary_bytes
    stairs, lightest = [], b[0]
    for c in range(1, k):
        if b[c] < lightest:
            stairs.append(c)
            lightest = b[c]
    # The staircase descends, so its last max_cuts are its lightest.
    return tuple(stairs[max(0, len(stairs) - options.max_cuts):]) if options.max_cuts else ()


def price(m: Measurements, peer: PeerMeasurement | None, cut: int, options: PlanOptions | None = None) -> Plan | None:
    """The plan running ``[0, cut)`` here and ``[cut, K)`` on ``peer``, or None if it breaks a memory limit."""
    options = options or PlanOptions()
    k = m.profile.partitions
    if peer is None or cut == k:
        peer, cut = None, k
    elif not 0 <= cut < k:
        raise LocalProtocolError(f"inference: cut {cut} is outside boundaries 0..{k} of {m.profile.model}")
    local = m.local
    here_mem = sum(local.memory_bytes[:cut])
    if local.memory_limit_bytes is not None and here_mem > local.memory_limit_bytes:
        return None
    penalty = here_mem / MB * local.memory_ms_per_mb
    local_ms = math.fsum(local.compute_ms[:cut])
    local_wait = local.queue * local.whole_ms if cut else 0.0  # all-remote skips this node's queue
    if peer is None:
        return Plan(peer=None, cut=k, partitions=k, predicted_ms=local_wait + local_ms + penalty,
                    local_wait_ms=local_wait, local_ms=local_ms, penalty_ms=penalty)
    there_mem = sum(peer.memory_bytes[cut:])
    if peer.memory_limit_bytes is not None and there_mem > peer.memory_limit_bytes:
        return None
    penalty += there_mem / MB * peer.memory_ms_per_mb
    if 0 < cut:
        penalty += options.partition_penalty_ms
    sent = m.profile.boundary_bytes[cut] + m.profile.boundary_bytes[k]
    if options.allow_fp16:
        sent = (m.profile.boundary_bytes[cut] + 1) // 2 + (m.profile.boundary_bytes[k] + 1) // 2
    network = peer.rtt_ms + sent / peer.bandwidth * 1e3
    remote_wait = peer.queue * peer.whole_ms
    remote_ms = math.fsum(peer.compute_ms[cut:])
    total = local_wait + local_ms + network + remote_wait + remote_ms + penalty
    return Plan(peer=peer.node, cut=cut, partitions=k, predicted_ms=total, local_wait_ms=local_wait, local_ms=local_ms,
                network_ms=network, remote_wait_ms=remote_wait, remote_ms=remote_ms, penalty_ms=penalty,
                bytes_sent=sent, fp16=options.allow_fp16)


def plan(m: Measurements, options: PlanOptions | None = None) -> Decision:
    """The plan with the earliest predicted completion among all-local, all-remote and a few cuts per peer."""
    options = PlanOptions() if options is None else options
    if not isinstance(m, Measurements) or not isinstance(options, PlanOptions):
        raise LocalProtocolError("inference: plan() takes Measurements and PlanOptions")
    cuts = candidate_cuts(m.profile, options)
    considered = [price(m, None, m.profile.partitions, options)]
    for peer in m.peers:
        considered.append(price(m, peer, 0, options))
        considered.extend(price(m, peer, c, options) for c in cuts)
    feasible = [p for p in considered if p is not None]
    if not feasible:
        raise InferenceError(
            f"inference: no plan for {m.profile.model} fits the memory limits of this node and its "
            f"{len(m.peers)} peers; raise a limit, add a peer, or cut the model finer"
        )
    ranked = sorted(feasible, key=_rank)
    best = ranked[0]
    runner_up = ranked[1] if len(ranked) > 1 else None
    return Decision(best=best, runner_up=runner_up, considered=tuple(feasible),
                    tie_break=_tie_rule(best, runner_up), options=options)


def replan_needed(old: Decision, new: Measurements, threshold: float) -> bool:
    """Whether ``new`` measurements move the old choice's cost, or beat it, by more than ``threshold`` (a fraction).

    True when the old plan is no longer possible (its peer is gone, a memory
    limit now excludes it), when its predicted time under ``new`` differs from
    what was predicted by more than ``threshold`` of it, or when another plan
    now predicts more than ``threshold`` better than it. A better plan by less
    than that is not worth the churn (hysteresis: no flapping between near-equal plans).
    """
    if not _finite(threshold) or threshold < 0:
        raise LocalProtocolError(f"inference: replan threshold must be a finite fraction >= 0, got {threshold!r}")
    was = old.best
    if was.partitions != new.profile.partitions:
        return True
    peer = None
    if was.kind != "local":
        peer = next((p for p in new.peers if p.node == was.peer), None)
        if peer is None:
            return True
    now = price(new, peer, was.cut, old.options)
    if now is None:
        return True
    scale = max(was.predicted_ms, 1e-9)
    if abs(now.predicted_ms - was.predicted_ms) > threshold * scale:
        return True
    fresh = plan(new, old.options).best
    return fresh.key != was.key and now.predicted_ms - fresh.predicted_ms > threshold * max(now.predicted_ms, 1e-9)


def _rank(p: Plan) -> tuple:
    return (round(p.predicted_ms, _TIE_DIGITS), p.parts, p.bytes_sent, p.kind != "local", p.peer or "", p.cut)


_TIE_RULES = ("fewer partitions", "fewer bytes on the wire", "running here", "the lower peer id", "the earlier cut")


def _tie_rule(best: Plan, runner_up: Plan | None) -> str | None:
    if runner_up is None:
        return None
    a, b = _rank(best), _rank(runner_up)
    if a[0] != b[0]:
        return None
    rule = next((_TIE_RULES[i - 1] for i in range(1, len(a)) if a[i] != b[i]), "identical plans")
    return f"tied with {runner_up.describe()}; chose {best.describe()} by {rule}"


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
