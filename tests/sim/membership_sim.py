"""A deterministic in-memory network that runs many real ``Membership`` cores (STYLE §18).

Everything happens on simulated time, driven by one heap of events: message deliveries, node
wake-ups at their ``next_deadline()``, and scheduled faults. Nothing sleeps; a node is only
touched when a message reaches it or its deadline comes, so 1,000 nodes run in seconds.

Faults, all drawn from one seeded ``random.Random`` so a seed replays a run exactly:

* **latency**: each message takes ``uniform(min_latency, max_latency)``;
* **loss**: each message is dropped with probability ``loss``;
* **partitions**: groups of nodes that cannot reach each other (checked at send and delivery);
* **crash**: the node stops sending, receiving and ticking for good;
* **slowness**: a CPU-starved node; every message to or from it waits up to ``slowness`` more;
* **pause**: the node stops ticking and processing (like ``SIGSTOP``); messages to it queue up,
  as in a socket buffer, and are handled in order when it resumes.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mesh.membership import (
    Event,
    MemberDead,
    Membership,
    MembershipConfig,
    Message,
    State,
    decode,
    encode,
)

_DELIVER, _WAKE, _CALL = 0, 1, 2


@dataclass
class SimNode:
    """One simulated process: its core plus what the network knows about it."""

    core: Membership
    crashed: bool = False
    paused_until: float | None = None
    inbox: list[tuple[str, Message]] = field(default_factory=list)
    wake_at: float | None = None
    slowness: float = 0.0


@dataclass(frozen=True)
class Observation:
    """``observer`` reported ``event`` at simulated time ``at``."""

    at: float
    observer: str
    event: Event


class Simulation:
    """N membership cores on a seeded, lossy, partitionable network."""

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        loss: float = 0.0,
        min_latency: float = 0.001,
        max_latency: float = 0.005,
        config: MembershipConfig | None = None,
        full_view: bool = True,
        seeds: int = 1,
        codec: bool = False,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.loss = loss
        self.min_latency, self.max_latency = min_latency, max_latency
        self.codec = codec
        self.now = 0.0
        self.config = config or MembershipConfig()
        self.ids = [f"n{i:04d}" for i in range(n)]
        self.nodes: dict[str, SimNode] = {}
        for i, node_id in enumerate(self.ids):
            core = Membership(node_id, rng=random.Random(f"{seed}/{node_id}"), config=self.config)
            self.nodes[node_id] = SimNode(core)
        # Either everyone starts knowing everyone (the converged state), or each node knows only
        # a few earlier nodes and must learn the rest from gossip.
        for i, node_id in enumerate(self.ids):
            core = self.nodes[node_id].core
            peers = self.ids if full_view else self.rng.sample(self.ids[:i], min(seeds, i))
            for peer in peers:
                core.join(peer, 0.0)
            if full_view:
                core.events()  # the bootstrap's MemberUps are not news
        self._heap: list = []
        self._counter = 0
        self.log: list[Observation] = []
        self.partition_of: dict[str, int] = {}
        self.delivered = self.dropped = 0
        for node_id in self.ids:
            self._flush(node_id)

    def spawn(self, seeds: Iterable[str]) -> str:
        """Start a new node now that knows only ``seeds``; returns its id."""
        node_id = f"n{len(self.ids):04d}"
        self.ids.append(node_id)
        core = Membership(node_id, rng=random.Random(f"{self.seed}/{node_id}"), config=self.config)
        self.nodes[node_id] = SimNode(core)
        for peer in seeds:
            core.join(peer, self.now)
        self._flush(node_id)
        return node_id

    # ---- faults -----------------------------------------------------------------------------

    def crash(self, node_id: str) -> None:
        """Stop ``node_id`` for good: no sending, receiving or ticking."""
        node = self.nodes[node_id]
        node.crashed = True
        node.inbox.clear()

    def pause(self, node_id: str, duration: float) -> None:
        """Freeze ``node_id`` for ``duration`` simulated seconds, then let it catch up."""
        node = self.nodes[node_id]
        node.paused_until = self.now + duration
        self.at(self.now + duration, lambda: self._resume(node_id))

    def slow(self, node_id: str, slowness: float) -> None:
        """Starve ``node_id``: each message in or out of it is delayed by up to ``slowness`` s."""
        self.nodes[node_id].slowness = slowness

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network: nodes in different groups (and unlisted ones) cannot talk."""
        self.partition_of = {}
        for g, group in enumerate(groups, start=1):
            for node_id in group:
                self.partition_of[node_id] = g

    def heal(self) -> None:
        """Remove every partition."""
        self.partition_of = {}

    def leave(self, node_id: str) -> None:
        """``node_id`` leaves gracefully."""
        self.nodes[node_id].core.leave(self.now)
        self._flush(node_id)

    # ---- running ----------------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at simulated time ``when``."""
        self._push(when, _CALL, action)

    def run_until(self, until: float, stop: Callable[[], bool] | None = None, check_every: float = 0.05) -> bool:
        """Process events up to ``until``; with ``stop``, return True as soon as it holds.

        ``stop`` is checked every ``check_every`` simulated seconds (so results are quantised
        to that step), which keeps expensive whole-cluster checks off the hot path.
        """
        if stop is None:
            self._run(until)
            return False
        while True:
            if stop():
                return True
            if self.now >= until:
                return False
            self._run(min(until, self.now + check_every))

    def _run(self, until: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= until:
            when, _, kind, payload = heapq.heappop(heap)
            self.now = when
            if kind == _DELIVER:
                self._deliver(*payload)
            elif kind == _WAKE:
                node_id, wake_at = payload
                node = self.nodes[node_id]
                if node.wake_at != wake_at or node.crashed or node.paused_until is not None:
                    continue  # superseded, or the node cannot run now
                node.wake_at = None
                node.core.tick(when)
                self._flush(node_id)
            else:
                payload()
        self.now = max(self.now, until)

    def live_ids(self) -> list[str]:
        """Nodes neither crashed nor gone."""
        return [i for i in self.ids if not self.nodes[i].crashed]

    def view(self, observer: str, peer: str) -> State | None:
        """What ``observer`` believes about ``peer``."""
        member = self.nodes[observer].core._members.get(peer)
        return None if member is None else member.state

    def all_see(self, peer: str, states: set[State], observers: Iterable[str] | None = None) -> bool:
        """Whether every observer (default: every other live node) holds ``peer`` in ``states``."""
        observers = self.live_ids() if observers is None else observers
        return all(self.view(o, peer) in states for o in observers if o != peer)

    def dead_reports(self, peer: str) -> list[Observation]:
        """Every time some node declared ``peer`` dead."""
        return [o for o in self.log if isinstance(o.event, MemberDead) and o.event.peer == peer]

    # ---- internals --------------------------------------------------------------------------

    def _push(self, when: float, kind: int, payload) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (when, self._counter, kind, payload))

    def _reachable(self, a: str, b: str) -> bool:
        return not self.partition_of or self.partition_of.get(a, 0) == self.partition_of.get(b, 0)

    def _flush(self, node_id: str) -> None:
        """Send what the node wants to send, record its events, and schedule its next wake-up."""
        node = self.nodes[node_id]
        core = node.core
        rng = self.rng
        for dest, msg in core.outgoing():
            if self.codec:
                msg = decode(encode(msg))
            if not self._reachable(node_id, dest) or (self.loss and rng.random() < self.loss):
                self.dropped += 1
                continue
            latency = rng.uniform(self.min_latency, self.max_latency)
            for end in (node, self.nodes.get(dest)):
                if end is not None and end.slowness:
                    latency += rng.uniform(0.0, end.slowness)
            self._push(self.now + latency, _DELIVER, (node_id, dest, msg))
        for event in core.events():
            self.log.append(Observation(self.now, node_id, event))
        deadline = core.next_deadline()
        if deadline != float("inf") and (node.wake_at is None or deadline < node.wake_at):
            node.wake_at = deadline
            self._push(max(deadline, self.now), _WAKE, (node_id, deadline))

    def _deliver(self, src: str, dest: str, msg: Message) -> None:
        node = self.nodes.get(dest)
        if node is None or node.crashed or not self._reachable(src, dest):
            self.dropped += 1
            return
        if node.paused_until is not None:
            node.inbox.append((src, msg))
            return
        self.delivered += 1
        node.core.receive(src, msg, self.now)
        self._flush(dest)

    def _resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.crashed:
            return
        node.paused_until = None
        inbox, node.inbox = node.inbox, []
        for src, msg in inbox:
            node.core.receive(src, msg, self.now)
        node.core.tick(self.now)
        node.wake_at = None
        self._flush(node_id)
