"""The chaos harness's fault schedule: which fault, on whom, from when to when (pure; no clock, no IO).

Theory of operation
-------------------
A run of ``duration_s`` seconds alternates healthy and faulty windows::

    healthy interval_s | fault fault_s | healthy interval_s | fault fault_s | ... | healthy >= interval_s

Each fault window draws one nemesis from the chosen list and its targets from
the nodes, using only a ``random.Random`` built from the seed, so the same seed,
nodes and options give the same schedule (the issue: "The same seed gives the
same fault schedule"). Invariants, checked by the tests:

- windows never overlap, so two network faults are never in force together;
- every fault ends (is healed) at least ``interval_s`` before ``duration_s``,
  leaving a healthy tail before the quiet period and the checkers;
- a fault on the Raft leader names it symbolically (``LEADER``); the injector
  resolves it when the fault starts (``resolve_leader``), since only then is
  the leader known.

Partitions are data: ``groups`` is a tuple of node groups and two nodes can
talk iff some group holds both (halves: two groups; an isolated node: itself
and the rest; bridge: two halves that both hold the bridge node; majorities
ring: windows of consecutive nodes on a shuffled ring). ``partition-one-way``
is the exception: ``groups == (senders, receivers)`` and only senders ->
receivers is cut. ``blocked_pairs`` turns any of them into the directed pairs
(src, dst) where src cannot send to dst, which is what the packet filter
installs (a blackhole route for dst's address inside src's namespace). A node
in no group is cut off from nobody: that is the spare node, once it joined.

``membership`` is a partition (random halves) during which the membership
changes: the injector brings in the run's spare node the first time (a node
that was never part of the mesh joins while it is cut), and afterwards makes
the drawn target leave gracefully (SIGTERM: it hands over its Raft vote and
says goodbye) and rejoin when the fault is healed. Join or leave is decided
when the fault starts, from whether the spare is still waiting, so the same
seed still gives the same sequence.

Clock faults skew what the targets' ``mesh.clock.wall()`` reads (the wall
time fed to the hybrid logical clock and stamped on task leases), nothing
else: ``clock-jump`` sets a constant offset of ``CLOCK_JUMP_S`` seconds either
way on one node or a minority, ``clock-drift`` makes one node gain or lose
``CLOCK_DRIFT`` seconds per second from the moment the fault starts. Healing
takes the skew away at once, which is itself a jump back (a forward jump healed
is a backward one). Both are drawn from the seed like every other fault; the
amount is ``Fault.params`` (``offset_s`` or ``drift``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import combinations

from crdt.errors import LocalProtocolError

from ..clock import MAX_DRIFT, MAX_OFFSET_S

LEADER = "@leader"
"""Stands for the Raft leader in ``Fault.targets`` until the injector resolves it."""

PAUSE_MIN_S = 2.0
"""A pause must outlast the election timeout (raftMaxTimeout 0.6 s, leaderFallbackTimeout 2 s)."""

NEMESES: dict[str, str] = {
    "partition-halves": "cut the nodes into two random halves",
    "partition-node": "isolate one random node from all the others",
    "partition-leader": "isolate the Raft leader (resolved when the fault starts)",
    "partition-ring": "majorities ring: every node sees a majority, no two nodes the same one (Jepsen)",
    "partition-bridge": "two halves that both still see one bridge node",
    "partition-one-way": "one group cannot send to the other; the other still sends to it",
    "netem": "delay, jitter, loss, duplication and reordering with tc netem on some nodes",
    "kill": "SIGKILL one node, a minority, the leader or all, then restart them",
    "pause": "SIGSTOP a node or the leader for longer than the election timeout, then SIGCONT",
    "restart-all": "stop every node, then start them all again (full-cluster restart)",
    "clock-jump": "one node's or a minority's wall clock jumps 5-120 s forward or back (HLC and leases must cope)",
    "clock-drift": "one node's wall clock gains or loses 0.01-0.2 s per second while the fault lasts",
    "membership": "while the cluster is cut into halves, a new node joins (the first time) or a node leaves "
                  "gracefully and rejoins at the heal",
}
"""Every nemesis by name, with a one-line description (for ``--nemesis`` and the report)."""

PARTITIONS = frozenset(name for name in NEMESES if name.startswith("partition-")) | {"membership"}
"""Nemeses that cut links (blocked pairs)."""

NETWORK = PARTITIONS | {"netem"}
"""Nemeses that act on the network (need the network-namespace backend)."""

CLOCKS = frozenset({"clock-jump", "clock-drift"})
"""Nemeses that skew nodes' wall clocks (need a cluster built with ``chaos_clock=True``)."""

KILL_MODES = ("one", "minority", "leader", "all")
PAUSE_MODES = ("one", "minority", "leader")
NETEM_PARAMS = ("delay_ms", "jitter_ms", "loss_pct", "duplicate_pct", "reorder_pct")

CLOCK_JUMP_S = (5.0, 120.0)
"""A clock jump's size in seconds (drawn in this range, then given a random sign)."""

CLOCK_DRIFT = (0.01, 0.2)
"""A clock drift's rate in seconds gained per second (drawn in this range, then given a random sign)."""

CLOCK_BOUNDS = {"offset_s": MAX_OFFSET_S, "drift": MAX_DRIFT}
"""What a clock fault may ask for at most, either sign (what ``mesh.clock`` accepts)."""

_CLOCK_PARAM = {"clock-jump": "offset_s", "clock-drift": "drift"}  # the one parameter each clock fault carries


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One scheduled fault: a nemesis, its window [start_s, end_s) and whom it hits."""

    kind: str
    start_s: float
    end_s: float
    targets: tuple[str, ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()
    mode: str = ""
    params: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in NEMESES:
            raise LocalProtocolError(f"chaos: unknown nemesis {self.kind!r}; choose from {', '.join(NEMESES)}")
        if not 0 <= self.start_s < self.end_s:
            raise LocalProtocolError(f"chaos: a fault needs 0 <= start_s < end_s, got {self.start_s}..{self.end_s}")
        if self.kind == "kill" and self.mode not in KILL_MODES:
            raise LocalProtocolError(f"chaos: kill mode must be one of {KILL_MODES}, got {self.mode!r}")
        if self.kind == "pause" and self.mode not in PAUSE_MODES:
            raise LocalProtocolError(f"chaos: pause mode must be one of {PAUSE_MODES}, got {self.mode!r}")
        if self.kind == "membership" and (self.mode not in ("", "join", "leave") or len(self.targets) != 1):
            raise LocalProtocolError(f"chaos: membership needs one target and mode '', join or leave, "
                                     f"got {self.targets} / {self.mode!r}")
        if self.kind == "partition-one-way" and len(self.groups) != 2:
            raise LocalProtocolError("chaos: a one-way partition needs groups == (senders, receivers)")
        if self.kind in CLOCKS:
            self._check_clock()
            return
        for name, value in self.params:
            if name not in NETEM_PARAMS or value < 0 or (name.endswith("_pct") and value > 100):
                raise LocalProtocolError(f"chaos: bad netem parameter {name}={value}; "
                                         f"expected one of {NETEM_PARAMS}, >= 0, percentages <= 100")

    def _check_clock(self) -> None:
        want = _CLOCK_PARAM[self.kind]
        names = [name for name, _ in self.params]
        if names != [want]:
            raise LocalProtocolError(f"chaos: {self.kind} needs exactly one parameter, {want}; got {names}")
        value = self.params[0][1]
        bound = CLOCK_BOUNDS[want]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= bound:
            raise LocalProtocolError(f"chaos: bad {self.kind} parameter {want}={value!r}; "
                                     f"expected a number within ±{bound:g}")
        if not self.targets or LEADER in self.targets:
            raise LocalProtocolError(f"chaos: {self.kind} needs the names of the nodes whose clock it skews")

    @property
    def network(self) -> bool:
        """Whether this fault acts on the network rather than on processes."""
        return self.kind in NETWORK

    @property
    def clock(self) -> bool:
        """Whether this fault skews wall clocks."""
        return self.kind in CLOCKS

    def skew(self) -> tuple[float, float]:
        """``(offset_s, drift)`` of a clock fault (raises for any other kind)."""
        if not self.clock:
            raise LocalProtocolError(f"chaos: {self.kind} is not a clock fault")
        values = dict(self.params)
        return float(values.get("offset_s", 0.0)), float(values.get("drift", 0.0))

    @property
    def needs_leader(self) -> bool:
        """Whether the targets still name the leader symbolically."""
        return LEADER in self.targets

    def netem(self) -> dict[str, float]:
        """The netem parameters as keyword arguments (``delay_ms=...``)."""
        return dict(self.params)

    def describe(self) -> str:
        """One line for logs and the report."""
        parts = [f"{self.start_s:g}-{self.end_s:g}s {self.kind}"]
        if self.kind == "membership":  # who joins or leaves, then the cut it happens in
            parts.append(f"{self.mode or 'join-or-leave'} {self.targets[0]} during")
        elif self.mode:
            parts.append(self.mode)
        if self.groups:
            parts.append(" | ".join(",".join(g) for g in self.groups))
        elif self.targets:
            parts.append(",".join(self.targets))
        if self.params:
            signed = "+" if self.clock else ""  # a clock fault's direction is the point: always show the sign
            parts.append(" ".join(f"{k}={v:{signed}g}" for k, v in self.params))
        return " ".join(parts)


def parse_nemeses(text: str) -> list[str]:
    """``"kill,pause"`` or ``"all"`` -> nemesis names; raises on an unknown name."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names == ["all"]:
        return list(NEMESES)
    for name in names:
        if name not in NEMESES:
            raise LocalProtocolError(f"chaos: unknown nemesis {name!r}; choose from all, {', '.join(NEMESES)}")
    if not names:
        raise LocalProtocolError(f"chaos: no nemesis given; choose from all, {', '.join(NEMESES)}")
    return names


def majority(n: int) -> int:
    """The smallest majority of ``n`` nodes."""
    return n // 2 + 1


def ring_groups(ring: list[str]) -> tuple[tuple[str, ...], ...]:
    """Majorities-ring groups: windows of k+1 consecutive nodes, so i and j talk iff their ring distance <= k.

    k is the smallest reach giving each node a majority (itself and k on each
    side: 2k+1 >= majority). Node i then sees exactly ring[i-k .. i+k], a
    different set for every node as long as that is not everyone, i.e. n >= 4.
    """
    n = len(ring)
    if n < 4:
        raise LocalProtocolError(f"chaos: partition-ring needs at least 4 nodes (each sees a different "
                                 f"majority), got {n}; use partition-bridge for 3")
    k = -(-(majority(n) - 1) // 2)
    return tuple(tuple(ring[(i + j) % n] for j in range(k + 1)) for i in range(n))


def blocked_pairs(fault: Fault, nodes: list[str]) -> set[tuple[str, str]]:
    """Directed pairs (src, dst) where src cannot send to dst while ``fault`` is in force."""
    if fault.kind not in PARTITIONS:
        return set()
    if fault.needs_leader or not fault.groups:
        raise LocalProtocolError(f"chaos: {fault.kind} still names the leader symbolically; "
                                 "resolve it with resolve(fault, leader) first")
    if fault.kind == "partition-one-way":
        senders, receivers = fault.groups
        return {(s, d) for s in senders for d in receivers if s != d}
    # A node in no group (one that joined after the schedule was drawn) is not cut off from anyone.
    grouped = [n for n in nodes if any(n in group for group in fault.groups)]
    return {(a, b) for a in grouped for b in grouped
            if a != b and not any(a in group and b in group for group in fault.groups)}


def resolve(fault: Fault, leader: str, nodes: list[str]) -> Fault:
    """``fault`` with ``LEADER`` replaced by ``leader`` (an isolated leader becomes its two groups)."""
    if not fault.needs_leader:
        return fault
    if leader not in nodes:
        raise LocalProtocolError(f"chaos: leader {leader!r} is not one of the nodes {nodes}")
    targets = tuple(leader if t == LEADER else t for t in fault.targets)
    groups = fault.groups
    if fault.kind == "partition-leader":
        groups = ((leader,), tuple(n for n in nodes if n != leader))
    return Fault(kind=fault.kind, start_s=fault.start_s, end_s=fault.end_s, targets=targets,
                 groups=groups, mode=fault.mode, params=fault.params)


def reachable(pairs: set[tuple[str, str]], nodes: list[str], node: str) -> set[str]:
    """Nodes ``node`` can exchange messages with both ways (itself included)."""
    return {other for other in nodes if other == node
            or ((node, other) not in pairs and (other, node) not in pairs)}


def _halves(rng: random.Random, nodes: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    shuffled = rng.sample(nodes, len(nodes))
    cut = len(nodes) // 2
    return tuple(shuffled[:cut]), tuple(shuffled[cut:])


def _minority(rng: random.Random, nodes: list[str]) -> tuple[str, ...]:
    size = rng.randint(1, max(1, (len(nodes) - 1) // 2))
    return tuple(rng.sample(nodes, size))


def draw(rng: random.Random, kind: str, nodes: list[str], start_s: float, end_s: float) -> Fault:
    """One fault of nemesis ``kind`` with targets drawn from ``rng``."""
    window = {"kind": kind, "start_s": start_s, "end_s": end_s}
    if kind == "partition-halves":
        return Fault(**window, groups=_halves(rng, nodes))
    if kind == "partition-node":
        lone = rng.choice(nodes)
        return Fault(**window, targets=(lone,), groups=((lone,), tuple(n for n in nodes if n != lone)))
    if kind == "partition-leader":
        return Fault(**window, targets=(LEADER,))
    if kind == "partition-ring":
        return Fault(**window, groups=ring_groups(rng.sample(nodes, len(nodes))))
    if kind == "partition-bridge":
        shuffled = rng.sample(nodes, len(nodes))
        bridge, rest = shuffled[0], shuffled[1:]
        cut = len(rest) // 2
        return Fault(**window, targets=(bridge,),
                     groups=(tuple(rest[:cut]) + (bridge,), tuple(rest[cut:]) + (bridge,)))
    if kind == "partition-one-way":
        return Fault(**window, groups=_halves(rng, nodes))
    if kind == "netem":
        targets = tuple(nodes) if rng.random() < 0.5 else _minority(rng, nodes)
        delay = float(rng.choice((20, 50, 100, 200)))
        params = (("delay_ms", delay), ("jitter_ms", delay / 2), ("loss_pct", float(rng.choice((0, 1, 5, 20)))),
                  ("duplicate_pct", float(rng.choice((0, 1, 5)))), ("reorder_pct", float(rng.choice((0, 10, 25)))))
        return Fault(**window, targets=targets, params=params)
    if kind in ("kill", "pause"):
        modes = KILL_MODES if kind == "kill" else PAUSE_MODES
        mode = rng.choice(modes)
        targets = {"one": lambda: (rng.choice(nodes),), "minority": lambda: _minority(rng, nodes),
                   "leader": lambda: (LEADER,), "all": lambda: tuple(nodes)}[mode]()
        return Fault(**window, mode=mode, targets=targets)
    if kind == "restart-all":
        return Fault(**window, targets=tuple(nodes))
    if kind == "clock-jump":
        targets = (rng.choice(nodes),) if rng.random() < 0.5 else _minority(rng, nodes)
        offset = round(rng.uniform(*CLOCK_JUMP_S), 1) * rng.choice((1, -1))
        return Fault(**window, targets=targets, params=(("offset_s", offset),))
    if kind == "membership":
        # The injector decides join or leave (the first membership fault brings the spare node in); the
        # target is who leaves otherwise.
        return Fault(**window, groups=_halves(rng, nodes), targets=(rng.choice(nodes),))
    if kind == "clock-drift":
        rate = round(rng.uniform(*CLOCK_DRIFT), 3) * rng.choice((1, -1))
        return Fault(**window, targets=(rng.choice(nodes),), params=(("drift", rate),))
    raise LocalProtocolError(f"chaos: unknown nemesis {kind!r}; choose from {', '.join(NEMESES)}")


_MIN_NODES = {"partition-halves": 2, "partition-node": 2, "partition-leader": 2, "partition-ring": 4,
              "partition-bridge": 3, "partition-one-way": 2, "membership": 2}


def schedule(seed: int, nodes: list[str], duration_s: float, nemeses: list[str], *,
             interval_s: float = 10.0, fault_s: float = 10.0) -> list[Fault]:
    """The seeded fault schedule: healthy and fault windows alternating, every fault over by ``duration_s``."""
    if not nodes or len(set(nodes)) != len(nodes):
        raise LocalProtocolError(f"chaos: nodes must be distinct names, got {nodes}")
    if not nemeses:
        raise LocalProtocolError(f"chaos: no nemesis given; choose from {', '.join(NEMESES)}")
    for name in nemeses:
        if name not in NEMESES:
            raise LocalProtocolError(f"chaos: unknown nemesis {name!r}; choose from {', '.join(NEMESES)}")
        if len(nodes) < _MIN_NODES.get(name, 1):
            raise LocalProtocolError(f"chaos: {name} needs at least {_MIN_NODES[name]} nodes, got {len(nodes)}")
    if duration_s <= 0 or interval_s <= 0 or fault_s <= 0:
        raise LocalProtocolError("chaos: duration_s, interval_s and fault_s must be > 0")
    if "pause" in nemeses and fault_s <= PAUSE_MIN_S:
        raise LocalProtocolError(f"chaos: pause needs fault_s > {PAUSE_MIN_S} s (longer than the election "
                                 f"timeout), got {fault_s}")
    rng = random.Random(seed)
    faults: list[Fault] = []
    start = interval_s
    # Bounded: each round moves start on by interval_s + fault_s > 0.
    while start + fault_s + interval_s <= duration_s:
        faults.append(draw(rng, rng.choice(nemeses), list(nodes), start, start + fault_s))
        start += fault_s + interval_s
    return faults


def distinct_views(fault: Fault, nodes: list[str]) -> bool:
    """Whether no two nodes see the same set of nodes (the majorities ring's defining property)."""
    pairs = blocked_pairs(fault, nodes)
    views = [frozenset(reachable(pairs, nodes, node)) for node in nodes]
    return all(a != b for a, b in combinations(views, 2))


__all__ = [
    "CLOCKS",
    "CLOCK_BOUNDS",
    "CLOCK_DRIFT",
    "CLOCK_JUMP_S",
    "KILL_MODES",
    "LEADER",
    "NEMESES",
    "NETEM_PARAMS",
    "NETWORK",
    "PARTITIONS",
    "PAUSE_MIN_S",
    "PAUSE_MODES",
    "Fault",
    "blocked_pairs",
    "distinct_views",
    "draw",
    "majority",
    "parse_nemeses",
    "reachable",
    "resolve",
    "ring_groups",
    "schedule",
]
