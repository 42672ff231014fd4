"""Membership and failure detection: a sans-IO SWIM core with Lifeguard's local health.

Theory of operation
-------------------
Every node runs one ``Membership``. It keeps a table of members, each in one of four
states with an *incarnation* number that only its owner may raise:

``alive``
    answering probes, or refuted the last accusation.
``suspect``
    a probe of it failed (directly and through ``k`` helpers); it has until its suspicion
    timer runs out to refute, by gossiping ``alive`` with a higher incarnation.
``dead``
    the suspicion timer ran out (here, or at a peer whose verdict reached us). Dead members
    are not probed. A dead node that comes back (a long pause) hears of its death, refutes
    with a higher incarnation and is ``alive`` again everywhere without a restart.
``left``
    the node said goodbye (``leave``). Like dead, but nobody had to wait for a timer.

Failure detection follows SWIM (Das et al. 2002): once per protocol period a node pings the
next member of a shuffled round-robin list (§4.3); if no ``Ack`` comes back within the probe
timeout it asks ``k`` random members to ping the target for it (``PingReq``, §3.1); if still
nothing by the end of the period the target becomes ``suspect`` (§4.2). Every message
piggybacks a bounded list of membership updates, each retransmitted about ``λ·log(N)`` times
(§4.1), so news spreads like an epidemic in O(log N) periods.

Lifeguard (Dadgar et al. 2017) makes the verdicts robust when *this* node is slow:

* **Local health multiplier** (LHM, "Local Health Aware Probe"): a score in
  ``0..max_local_health`` that rises when we miss acks or nacks, or when we have to refute an
  accusation, and falls with each successful probe. Probe interval and timeout are scaled by
  ``LHM + 1``, so a CPU-starved node slows its own verdicts instead of accusing healthy peers.
* **Nack**: a helper that got no answer from the target by 80 % of the probe timeout
  says so. A requester that does not even hear the nacks learns that the trouble is local.
* **Dynamic suspicion** ("Local Health Aware Suspicion"): a suspicion starts at the
  maximum timeout and shrinks towards the minimum, logarithmically, as independent members
  (distinct ``origin``) confirm it.

Beyond the papers, each for a failure the simulator showed (``tests/sim``):

* a refutation is also pinged straight to the accuser and ``refute_fanout`` random members,
  since their suspicion timers are already running (gossip alone lost the race now and then);
* anyone who hears a stale accusation against us gets our alive again, and anyone we hold as
  suspect or dead is told so whenever we answer it (Lifeguard's "buddy system"), which is how a
  node paused past its death learns of it and comes back;
* ``Sync`` is memberlist's push-pull: the whole table, swapped right after ``join`` and then
  every ``sync_interval``, so a newcomer learns every member at once and lost gossip is repaired;
* dead members are pinged now and then (Serf's reconnect), so a healed partition merges again;
* a message from an unknown sender adds it at incarnation 0, a hint that can never override
  a verdict.

Invariants: a member's incarnation in our table never decreases; only the member itself
creates ``alive`` at a new incarnation; a node never records itself as anything but alive
(it refutes instead), except after it chose to ``leave``. All transitions between states go
through ``_TRANSITIONS`` and ``_apply``; nothing else changes a member's state.

Time is ``now`` (monotonic seconds) and randomness is the ``random.Random`` passed in; the
core never reads a clock, sleeps or touches a socket. A driver delivers ``outgoing()`` and
calls ``tick`` at ``next_deadline()``.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass

from crdt.errors import LocalProtocolError

__all__ = [
    "Ack",
    "Event",
    "MemberAlive",
    "MemberDead",
    "MemberLeft",
    "MemberState",
    "MemberSuspect",
    "MemberUp",
    "Membership",
    "MembershipConfig",
    "Message",
    "Nack",
    "Ping",
    "PingReq",
    "State",
    "Sync",
    "Update",
    "decode",
    "encode",
]

from .membership_messages import (  # noqa: E402  (re-exported: the wire types)
    Ack,
    MAX_FORWARDS,
    MAX_GOSSIP,
    MAX_SYNC,
    Message,
    Nack,
    Ping,
    PingReq,
    State,
    Sync,
    Update,
    _check_id,
    _trusted_update,
    decode,
    encode,
)


# ---------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberUp:
    """A member we did not know, or knew as dead/left, is alive (joined or came back)."""

    peer: str
    incarnation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberAlive:
    """A suspect member refuted the suspicion."""

    peer: str
    incarnation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberSuspect:
    """A member failed a probe; it will be declared dead unless it refutes in time."""

    peer: str
    incarnation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberDead:
    """A member's suspicion ran out (here or at a peer): treat it as gone."""

    peer: str
    incarnation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberLeft:
    """A member left gracefully."""

    peer: str
    incarnation: int


Event = MemberUp | MemberAlive | MemberSuspect | MemberDead | MemberLeft
"""What ``events()`` reports."""


# ---------------------------------------------------------------------------------------------
# Config and the member table


@dataclass(frozen=True, slots=True, kw_only=True)
class MembershipConfig:
    """Tuning of the failure detector; every default is explained beside it."""

    probe_interval: float = 0.5
    """Seconds between probes (SWIM's protocol period T'), before local-health scaling."""
    probe_timeout: float = 0.25
    """Seconds to wait for a direct ack before asking helpers; must be below the interval."""
    indirect_probes: int = 3
    """Helpers asked to ping a silent target (SWIM's k)."""
    suspicion_min_multiplier: float = 3.0
    """Lifeguard α: the fully confirmed suspicion lasts ``α · max(1, log10 N) · interval``."""
    suspicion_max_multiplier: float = 4.0
    """Lifeguard β: an unconfirmed suspicion lasts β times that minimum."""
    suspicion_confirmations: int = 3
    """Lifeguard K: independent suspicions that bring the timeout down to the minimum."""
    max_local_health: int = 8
    """Ceiling of the local health multiplier (Lifeguard's S); timings scale by up to 9×."""
    retransmit_multiplier: int = 4
    """SWIM λ: each update is piggybacked ``λ · ceil(log10(N + 1))`` times (memberlist's rule)."""
    max_piggyback: int = 16
    """Most updates piggybacked on one message (at most ``MAX_GOSSIP``)."""
    nack_fraction: float = 0.8
    """A helper sends its nack after this fraction of the probe timeout (Lifeguard)."""
    refute_fanout: int = 8
    """Members told of a refutation directly, besides gossip: a suspect's timers are already
    running everywhere, so waiting for the epidemic alone would let some of them expire."""
    sync_interval: float = 30.0
    """Seconds between push-pull exchanges of the whole member table with one random member
    (memberlist's LAN default). The first happens right after the first ``join``."""
    reconnect_interval: float = 2.0
    """Seconds between attempts to reach a dead member, so a healed partition merges again.
    Each attempt happens with probability dead/alive (as Serf does), so the whole cluster sends
    about one ping per dead member per interval, however large it is."""
    forget_after: float = 600.0
    """Seconds a dead or departed member is remembered (and pinged now and then) before it is
    dropped; long after any rumor about it has stopped circulating. It can always rejoin."""

    def __post_init__(self) -> None:
        if not 0 < self.probe_timeout < self.probe_interval:
            raise LocalProtocolError("membership: need 0 < probe_timeout < probe_interval")
        counts = (self.refute_fanout, self.indirect_probes, self.suspicion_confirmations, self.max_local_health)
        if min(counts) < 0:
            raise LocalProtocolError(
                "membership: refute_fanout, indirect_probes, suspicion_confirmations and max_local_health must be >= 0"
            )
        if self.suspicion_min_multiplier <= 0 or self.suspicion_max_multiplier < 1:
            raise LocalProtocolError("membership: need suspicion_min_multiplier > 0 and suspicion_max_multiplier >= 1")
        if not 1 <= self.max_piggyback <= MAX_GOSSIP:
            raise LocalProtocolError(f"membership: max_piggyback must be in 1..{MAX_GOSSIP}")
        if self.reconnect_interval <= 0 or self.sync_interval <= 0 or self.forget_after <= 0:
            raise LocalProtocolError("membership: reconnect_interval, sync_interval and forget_after must be > 0")
        if not 0 < self.nack_fraction < 1 or self.retransmit_multiplier <= 0:
            raise LocalProtocolError("membership: need 0 < nack_fraction < 1 and retransmit_multiplier > 0")


@dataclass(slots=True, kw_only=True)
class MemberState:
    """What this node believes about one member (a copy is handed out by ``members()``)."""

    peer: str
    state: State
    incarnation: int
    since: float
    """``now`` when the member entered this state here."""


@dataclass(slots=True)
class _Suspicion:
    """A running suspicion timer (Lifeguard)."""

    start: float
    n: int
    confirmers: set[str]
    deadline: float = 0.0


@dataclass(slots=True)
class _Probe:
    """The probe of this protocol period."""

    seq: int
    target: str
    indirect_at: float
    fail_at: float
    helpers: int = 0
    nacks: int = 0
    indirect_sent: bool = False


@dataclass(slots=True)
class _Forward:
    """A ping we send for someone else's ``PingReq``."""

    requester: str
    requester_seq: int
    nack_at: float
    expire_at: float
    nacked: bool = False


# The transition table: (state we hold, state we hear) -> the incarnation rule under which the
# heard update replaces ours. ">" means strictly newer, ">=" newer or equal; missing pairs are
# ignored. From SWIM §4.2 and memberlist: an accusation (suspect/dead/left) at the *same*
# incarnation beats alive, since only the member can answer it, by raising its incarnation;
# alive needs a strictly higher one. A second suspicion at the same incarnation is not a
# transition but a Lifeguard confirmation (handled in ``_apply``). Dead and left members are
# only brought back by their own ``alive`` at a higher incarnation (a refutation after a pause,
# or a rejoin); nothing else moves them.
_TRANSITIONS: dict[tuple[State, State], str] = {
    (State.ALIVE, State.ALIVE): ">",
    (State.ALIVE, State.SUSPECT): ">=",
    (State.ALIVE, State.DEAD): ">=",
    (State.ALIVE, State.LEFT): ">=",
    (State.SUSPECT, State.ALIVE): ">",
    (State.SUSPECT, State.SUSPECT): ">",
    (State.SUSPECT, State.DEAD): ">=",
    (State.SUSPECT, State.LEFT): ">=",
    (State.DEAD, State.ALIVE): ">",
    (State.DEAD, State.LEFT): ">=",
    (State.LEFT, State.ALIVE): ">",
}

_EVENT_FOR = {
    State.SUSPECT: MemberSuspect,
    State.DEAD: MemberDead,
    State.LEFT: MemberLeft,
}


class Membership:
    """The SWIM + Lifeguard state machine of one node (see the module docstring)."""

    def __init__(self, self_id: str, *, rng: random.Random, config: MembershipConfig | None = None) -> None:
        _check_id("self_id", self_id)
        if not isinstance(rng, random.Random):
            raise LocalProtocolError("membership: rng must be a random.Random (the core has no randomness of its own)")
        self.self_id = self_id
        self.config = config or MembershipConfig()
        self._rng = rng
        self._incarnation = 0
        self._leaving = False
        self._members: dict[str, MemberState] = {}
        self._counts = {s: 0 for s in State}
        self._local_health = 0
        self._seq = 0
        self._probe: _Probe | None = None
        self._next_probe_at: float | None = None
        self._next_reconnect_at: float | None = None
        self._next_sync_at: float | None = None
        self._synced = False  # has any push-pull been answered yet?
        self._table_cache: tuple[Update, ...] | None = None
        self._probe_order: list[str] = []
        self._probe_index = 0
        self._forwards: dict[int, _Forward] = {}
        self._suspicions: dict[str, _Suspicion] = {}
        self._gossip: dict[str, list] = {}  # peer -> [Update, times sent]
        self._nudged: dict[str, float] = {}  # suspect or dead member -> when ``join`` last pinged it
        self._out: list[tuple[str, Message]] = []
        self._events: list[Event] = []
        self._stats = {"probes": 0, "probes_failed": 0, "indirect_probes": 0, "refutations": 0,
                       "pings_received": 0, "messages_sent": 0, "dropped": 0, "syncs": 0}
        self._queue_self(State.ALIVE)

    # ---- public API ------------------------------------------------------------------------

    def join(self, peer_id: str, now: float) -> None:
        """Add ``peer_id`` (from discovery or config) as an alive member we will probe.

        A member we hold suspect or dead but hear from again outside SWIM (its hello or advert
        after a healed partition) is pinged at once, at most once a probe interval, with its
        accusation piggybacked: it refutes, and the refutation comes back with its ack.
        ``_reconnect`` does the same for a random dead member every ``reconnect_interval``;
        this does not wait for it (memberlist's join, where the push-pull makes a node
        that was declared dead refute at once)."""
        _check_id("peer_id", peer_id)
        if peer_id == self.self_id:
            return
        member = self._members.get(peer_id)
        if member is not None:
            last = self._nudged.get(peer_id)
            due = last is None or now - last >= self.config.probe_interval
            if member.state in (State.SUSPECT, State.DEAD) and due and not self._leaving:
                self._nudged[peer_id] = now
                self._send(peer_id, Ping(seq=self._next_seq(), target=peer_id, gossip=self._piggyback(peer_id)))
            return
        self._set(peer_id, State.ALIVE, 0, now)
        self._events.append(MemberUp(peer=peer_id, incarnation=0))
        self._wake_probing(now)

    def leave(self, now: float) -> None:
        """Leave gracefully: tell every member at once, then stop probing and answering."""
        if self._leaving:
            return
        self._leaving = True
        self._table_cache = None
        goodbye = Update(peer=self.self_id, state=State.LEFT, incarnation=self._incarnation, origin=self.self_id)
        self._gossip[self.self_id] = [goodbye, 0]
        # Sent to everyone rather than gossiped, so the node is "gone everywhere at once";
        # the receivers still gossip it on for anyone this message misses.
        for peer, member in self._members.items():
            if member.state in (State.ALIVE, State.SUSPECT):
                self._send(peer, Ping(seq=self._next_seq(), target=peer, gossip=(goodbye,)))
        self._probe = None
        self._forwards.clear()

    def receive(self, src: str, msg: Message, now: float) -> None:
        """Take in a message ``src`` sent us."""
        if self._leaving:
            return
        if src not in self._members and src != self.self_id:
            # A message proves its sender exists; incarnation 0 loses to anything it has said
            # since, so this hint never overrides a verdict (a dead member stays dead).
            self._apply(Update(peer=src, state=State.ALIVE, incarnation=0, origin=src), now)
        for update in msg.gossip:
            self._apply(update, now)
        if isinstance(msg, Ping):
            self._stats["pings_received"] += 1
            if msg.target != self.self_id:  # meant for a previous owner of our address
                self._stats["dropped"] += 1
                return
            self._send(src, Ack(seq=msg.seq, gossip=self._piggyback(src)))
        elif isinstance(msg, PingReq):
            if len(self._forwards) >= MAX_FORWARDS:
                self._stats["dropped"] += 1
                return
            seq = self._next_seq()
            timeout = self._probe_timeout()
            self._forwards[seq] = _Forward(src, msg.seq, now + timeout * self.config.nack_fraction,
                                           now + 2 * timeout)
            self._send(msg.target, Ping(seq=seq, target=msg.target, gossip=self._piggyback(msg.target)))
        elif isinstance(msg, Ack):
            probe = self._probe
            if probe is not None and probe.seq == msg.seq:
                self._probe = None
                self._adjust_health(-1)
            elif msg.seq in self._forwards:
                fwd = self._forwards.pop(msg.seq)
                self._send(fwd.requester, Ack(seq=fwd.requester_seq, gossip=self._piggyback(fwd.requester)))
        elif isinstance(msg, Nack):
            if self._probe is not None and self._probe.seq == msg.seq:
                self._probe.nacks += 1
        elif isinstance(msg, Sync):
            if msg.reply:
                self._send(src, Sync(gossip=self._table(), reply=False))
            else:
                self._synced = True

    def tick(self, now: float) -> None:
        """Act on every deadline that has passed: probe steps, nacks, suspicion timers."""
        if self._leaving:
            return
        self._tick_forwards(now)
        self._tick_suspicions(now)
        probe = self._probe
        if probe is not None and not probe.indirect_sent and now >= probe.indirect_at:
            self._probe_indirectly(probe, now)
        if probe is not None and probe.indirect_sent and now >= probe.fail_at:
            self._probe_failed(probe, now)
        if self._next_probe_at is not None and now >= self._next_probe_at:
            self._start_probe(now)
        if self._next_reconnect_at is not None and now >= self._next_reconnect_at:
            self._reconnect(now)
        if self._next_sync_at is not None and now >= self._next_sync_at:
            self._sync(now)

    def outgoing(self) -> list[tuple[str, Message]]:
        """Drain the messages to send, as ``(destination, message)``."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        """Drain what happened to members since the last call."""
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float:
        """When ``tick`` next has something to do (``inf`` if never)."""
        candidates = [s.deadline for s in self._suspicions.values()]
        candidates += [f.expire_at if f.nacked else f.nack_at for f in self._forwards.values()]
        if self._probe is not None:
            candidates.append(self._probe.fail_at if self._probe.indirect_sent else self._probe.indirect_at)
        if self._next_probe_at is not None:
            candidates.append(self._next_probe_at)
        if self._next_reconnect_at is not None:
            candidates.append(self._next_reconnect_at)
        if self._next_sync_at is not None:
            candidates.append(self._next_sync_at)
        return min(candidates) if candidates and not self._leaving else math.inf

    def members(self) -> dict[str, MemberState]:
        """A copy of the member table, this node included (always alive unless it left)."""
        table = {p: MemberState(peer=m.peer, state=m.state, incarnation=m.incarnation, since=m.since)
                 for p, m in self._members.items()}
        own = State.LEFT if self._leaving else State.ALIVE
        table[self.self_id] = MemberState(peer=self.self_id, state=own, incarnation=self._incarnation, since=0.0)
        return table

    @property
    def incarnation(self) -> int:
        """This node's own incarnation number."""
        return self._incarnation

    @property
    def local_health(self) -> int:
        """Lifeguard's local health multiplier: 0 is healthy, ``max_local_health`` is worst."""
        return self._local_health

    def statistics(self) -> dict:
        """Counters and gauges for ``/metrics``."""
        return {
            **self._stats,
            **{s.value: n for s, n in self._counts.items()},
            "incarnation": self._incarnation,
            "local_health": self._local_health,
            "gossip_queued": len(self._gossip),
            "suspicions": len(self._suspicions),
        }

    # ---- the state machine -----------------------------------------------------------------

    def _apply(self, update: Update, now: float) -> None:
        """The one place where a member's state changes (rules in ``_TRANSITIONS``)."""
        peer, heard, inc = update.peer, update.state, update.incarnation
        if peer == self.self_id:
            self._about_self(update)
            return
        member = self._members.get(peer)
        if member is None:
            # Only the member's own word introduces it; rumours of strangers' deaths are dropped.
            if heard is State.ALIVE:
                self._set(peer, State.ALIVE, inc, now)
                self._events.append(MemberUp(peer=peer, incarnation=inc))
                self._queue(update)
                self._wake_probing(now)
            return
        held = member.state
        if held is State.SUSPECT and heard is State.SUSPECT and inc == member.incarnation:
            self._confirm(peer, update, now)
            return
        rule = _TRANSITIONS.get((held, heard))
        if rule is None or inc < member.incarnation or (rule == ">" and inc == member.incarnation):
            return
        self._set(peer, heard, inc, now)
        self._queue(update)
        if heard is State.ALIVE:
            if held is not State.ALIVE:  # alive -> alive at a higher incarnation is no news to users
                cls = MemberAlive if held is State.SUSPECT else MemberUp
                self._events.append(cls(peer=peer, incarnation=inc))
        else:
            self._events.append(_EVENT_FOR[heard](peer=peer, incarnation=inc))
        if heard is State.SUSPECT:
            self._start_suspicion(peer, update.origin, now)

    def _about_self(self, update: Update) -> None:
        """Refute accusations against us (SWIM §4.2): outbid them with a higher incarnation."""
        if self._leaving:
            return
        if update.state is State.ALIVE:
            if update.incarnation > self._incarnation:  # an echo of an earlier life of ours
                self._incarnation = update.incarnation + 1
                self._queue_self(State.ALIVE)
            return
        if update.incarnation < self._incarnation:
            # Already refuted, but this sender has not heard: gossip our alive afresh so the
            # reply it is about to get carries it (Lifeguard's buddy system, completed).
            self._queue_self(State.ALIVE)
            return
        self._incarnation = update.incarnation + 1
        self._stats["refutations"] += 1
        self._adjust_health(+1)  # Lifeguard: being suspected hints that we are the slow one
        self._queue_self(State.ALIVE)
        alive = [p for p, m in self._members.items() if m.state is State.ALIVE and p != update.origin]
        targets = self._rng.sample(alive, min(self.config.refute_fanout, len(alive)))
        if update.origin in self._members:
            targets.append(update.origin)
        refutation = (Update(peer=self.self_id, state=State.ALIVE, incarnation=self._incarnation, origin=self.self_id),)
        for peer in targets:  # a ping, so the reply brings back whatever else we missed
            self._send(peer, Ping(seq=self._next_seq(), target=peer, gossip=refutation))

    def _set(self, peer: str, state: State, incarnation: int, now: float) -> None:
        self._table_cache = None
        member = self._members.get(peer)
        if member is None:
            self._members[peer] = MemberState(peer=peer, state=state, incarnation=incarnation, since=now)
            # New members go to a random place in the rest of this round (memberlist does this too),
            # so they are probed within one round without disturbing its order.
            self._probe_order.insert(self._rng.randint(self._probe_index, len(self._probe_order)), peer)
        else:
            self._counts[member.state] -= 1
            member.state, member.incarnation, member.since = state, incarnation, now
        self._counts[state] += 1
        if state is not State.SUSPECT:
            self._suspicions.pop(peer, None)
        if state is State.ALIVE:
            self._nudged.pop(peer, None)

    # ---- suspicion (Lifeguard) ----------------------------------------------------------

    def _start_suspicion(self, peer: str, origin: str, now: float) -> None:
        n = self._counts[State.ALIVE] + self._counts[State.SUSPECT] + 1
        s = _Suspicion(start=now, n=n, confirmers={origin})
        self._suspicions[peer] = s
        self._reschedule(s)

    def _confirm(self, peer: str, update: Update, now: float) -> None:
        s = self._suspicions.get(peer)
        if s is None or update.origin in s.confirmers:
            return
        if len(s.confirmers) - 1 >= self._expected_confirmations(s.n):
            return  # already at the minimum; no need to spread more confirmations
        s.confirmers.add(update.origin)
        self._reschedule(s)
        self._queue(update)  # pass independent suspicions on so others' timers shrink too

    def _expected_confirmations(self, n: int) -> int:
        k = self.config.suspicion_confirmations
        return 0 if n - 2 < k else k  # too few members to ever confirm: go straight to the minimum

    def _reschedule(self, s: _Suspicion) -> None:
        """timeout = max(min, max − (max − min)·log(C + 1)/log(K + 1)), Lifeguard eq. (1)."""
        cfg = self.config
        lo = cfg.suspicion_min_multiplier * max(1.0, math.log10(max(1, s.n))) * cfg.probe_interval
        hi = cfg.suspicion_max_multiplier * lo
        k = self._expected_confirmations(s.n)
        c = len(s.confirmers) - 1
        timeout = lo if k < 1 else max(lo, hi - (hi - lo) * math.log(c + 1) / math.log(k + 1))
        s.deadline = s.start + timeout

    def _tick_suspicions(self, now: float) -> None:
        expired = [p for p, s in self._suspicions.items() if now >= s.deadline]
        for peer in expired:
            member = self._members[peer]
            self._apply(Update(peer=peer, state=State.DEAD, incarnation=member.incarnation, origin=self.self_id), now)

    # ---- probing (SWIM §3.1, §4.3; Lifeguard's nacks and local health) -------------------------------------------

    def _probe_interval(self) -> float:
        return self.config.probe_interval * (self._local_health + 1)

    def _probe_timeout(self) -> float:
        return self.config.probe_timeout * (self._local_health + 1)

    def _adjust_health(self, delta: int) -> None:
        self._local_health = min(self.config.max_local_health, max(0, self._local_health + delta))

    def _next_target(self) -> str | None:
        for _ in range(2):
            while self._probe_index < len(self._probe_order):
                peer = self._probe_order[self._probe_index]
                self._probe_index += 1
                member = self._members.get(peer)
                if member is not None and member.state in (State.ALIVE, State.SUSPECT):
                    return peer
            # End of a round: a fresh random permutation (SWIM §4.3 bounds detection time).
            self._probe_order = [p for p, m in self._members.items() if m.state in (State.ALIVE, State.SUSPECT)]
            self._rng.shuffle(self._probe_order)
            self._probe_index = 0
        return None

    def _start_probe(self, now: float) -> None:
        if self._probe is not None:  # a period can outlast its slot only after a time jump
            self._probe_failed(self._probe, now)
        target = self._next_target()
        if target is None:
            self._next_probe_at = None  # nobody to probe; join() restarts the cycle
            return
        interval, timeout = self._probe_interval(), self._probe_timeout()
        self._next_probe_at = now + interval
        seq = self._next_seq()
        self._probe = _Probe(seq=seq, target=target, indirect_at=now + timeout, fail_at=now + interval)
        self._stats["probes"] += 1
        self._send(target, Ping(seq=seq, target=target, gossip=self._piggyback(target)))

    def _wake_probing(self, now: float) -> None:
        if self._next_probe_at is None:
            self._next_probe_at = now
        if self._next_reconnect_at is None:
            self._next_reconnect_at = now + self.config.reconnect_interval
        if self._next_sync_at is None:
            self._next_sync_at = now

    def _sync(self, now: float) -> None:
        """Push-pull with one random alive member."""
        # Until a first exchange succeeds (a joiner's), retry every two periods, not every 30 s.
        self._next_sync_at = now + (self.config.sync_interval if self._synced else 2 * self.config.probe_interval)
        alive = [p for p, m in self._members.items() if m.state is State.ALIVE]
        if alive:
            self._stats["syncs"] += 1
            self._send(self._rng.choice(alive), Sync(gossip=self._table(), reply=True))

    def _table(self) -> tuple[Update, ...]:
        """Our whole view as updates (ourselves first), for ``Sync``; cached until it changes."""
        if self._table_cache is None:
            me = self.self_id
            own = _trusted_update(me, State.LEFT if self._leaving else State.ALIVE, self._incarnation, me)
            rest = [_trusted_update(p, m.state, m.incarnation, me) for p, m in self._members.items()]
            self._table_cache = (own, *rest[: MAX_SYNC - 1])
        return self._table_cache

    def _reconnect(self, now: float) -> None:
        """Ping one dead member now and then: if it is alive after all (a healed partition, a
        long pause), our ping tells it it was declared dead, it refutes, and its ack brings
        the refutation back. Not a probe: silence changes nothing."""
        self._next_reconnect_at = now + self.config.reconnect_interval
        self._forget_departed(now)
        dead = self._counts[State.DEAD]
        if not dead or self._rng.random() >= dead / max(1, self._counts[State.ALIVE]):
            return
        peer = self._rng.choice([p for p, m in self._members.items() if m.state is State.DEAD])
        self._send(peer, Ping(seq=self._next_seq(), target=peer, gossip=self._piggyback(peer)))

    def _forget_departed(self, now: float) -> None:
        """Drop members dead or departed for longer than ``forget_after`` (bounded table)."""
        cutoff = now - self.config.forget_after
        stale = [p for p, m in self._members.items() if m.state in (State.DEAD, State.LEFT) and m.since < cutoff]
        for peer in stale:
            member = self._members.pop(peer)
            self._counts[member.state] -= 1
            self._suspicions.pop(peer, None)
            self._nudged.pop(peer, None)
        if stale:
            self._table_cache = None
            self._stats["forgotten"] = self._stats.get("forgotten", 0) + len(stale)

    def _probe_indirectly(self, probe: _Probe, now: float) -> None:
        probe.indirect_sent = True
        # After a time jump (a pause of this node) the period may be over already; give the
        # helpers a real timeout rather than failing the probe for our own sleep.
        probe.fail_at = max(probe.fail_at, now + self._probe_timeout())
        candidates = [p for p, m in self._members.items() if m.state is State.ALIVE and p != probe.target]
        helpers = self._rng.sample(candidates, min(self.config.indirect_probes, len(candidates)))
        probe.helpers = len(helpers)
        self._stats["indirect_probes"] += len(helpers)
        for helper in helpers:
            self._send(helper, PingReq(seq=probe.seq, target=probe.target, gossip=self._piggyback(helper)))

    def _probe_failed(self, probe: _Probe, now: float) -> None:
        self._probe = None
        self._stats["probes_failed"] += 1
        # Lifeguard: every missed nack is evidence that *we* are slow; no helpers at all counts 1.
        self._adjust_health(probe.helpers - probe.nacks if probe.helpers else 1)
        member = self._members.get(probe.target)
        # Suspecting an already-suspect member at the same incarnation is an independent
        # confirmation when someone else raised the suspicion (Lifeguard).
        if member is not None and member.state in (State.ALIVE, State.SUSPECT):
            self._apply(Update(peer=probe.target, state=State.SUSPECT, incarnation=member.incarnation,
                               origin=self.self_id), now)

    def _tick_forwards(self, now: float) -> None:
        for seq, fwd in list(self._forwards.items()):
            if now >= fwd.expire_at:
                del self._forwards[seq]
            elif not fwd.nacked and now >= fwd.nack_at:
                fwd.nacked = True
                self._send(fwd.requester, Nack(seq=fwd.requester_seq, gossip=self._piggyback(fwd.requester)))

    # ---- gossip (SWIM §4.1) ----------------------------------------------------------------

    def _queue(self, update: Update) -> None:
        self._gossip[update.peer] = [update, 0]

    def _queue_self(self, state: State) -> None:
        self._table_cache = None  # our incarnation or state changed
        self._queue(Update(peer=self.self_id, state=state, incarnation=self._incarnation, origin=self.self_id))

    def _piggyback(self, dest: str) -> tuple[Update, ...]:
        """Up to ``max_piggyback`` least-sent updates; drops those sent ``λ·⌈log10(N+1)⌉`` times."""
        chosen: list[Update] = []
        member = self._members.get(dest)
        if member is not None and member.state is not State.ALIVE:
            # Tell an accused member what we believe, so it can refute even after its own
            # accusation has stopped being gossiped (how a long-paused node learns it is dead).
            chosen.append(Update(peer=dest, state=member.state, incarnation=member.incarnation,
                                 origin=self.self_id))
        if not self._gossip:
            return tuple(chosen)
        n = sum(self._counts.values()) + 1
        limit = self.config.retransmit_multiplier * math.ceil(math.log10(n + 1))  # as memberlist
        room = self.config.max_piggyback - len(chosen)
        entries = self._gossip.values()
        if len(entries) > room:
            entries = heapq.nsmallest(room, entries, key=lambda e: e[1])
        for entry in list(entries):
            entry[1] += 1
            chosen.append(entry[0])
            if entry[1] >= limit:
                del self._gossip[entry[0].peer]
        return tuple(chosen)

    def _send(self, dest: str, msg: Message) -> None:
        self._stats["messages_sent"] += 1
        self._out.append((dest, msg))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq
