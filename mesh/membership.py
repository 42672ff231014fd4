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

* **Local health multiplier** (LHM, §4.3 "Local Health Aware Probe"): a score in
  ``0..max_local_health`` that rises when we miss acks or nacks, or when we have to refute an
  accusation, and falls with each successful probe. Probe interval and timeout are scaled by
  ``LHM + 1``, so a CPU-starved node slows its own verdicts instead of accusing healthy peers.
* **Nack** (§4.3): a helper that got no answer from the target by 80 % of the probe timeout
  says so. A requester that does not even hear the nacks learns that the trouble is local.
* **Dynamic suspicion** (§4.2 "Local Health Aware Suspicion"): a suspicion starts at the
  maximum timeout and shrinks towards the minimum, logarithmically, as independent members
  (distinct ``origin``) confirm it.

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
from dataclasses import dataclass, field
from enum import Enum

from crdt.errors import LocalProtocolError, RemoteProtocolError

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
    "Update",
    "decode",
    "encode",
]

MAX_GOSSIP = 64
"""Most updates one message may carry; a peer sending more is refused."""
MAX_ID_LENGTH = 256
"""Longest peer id accepted (libp2p peer ids are ~52 characters)."""
_MAX_INT = 2**63 - 1


class State(str, Enum):
    """A member's state as this node believes it."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


# ---------------------------------------------------------------------------------------------
# Messages


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise LocalProtocolError(f"membership: {name} must be a non-empty str of at most {MAX_ID_LENGTH} chars")


def _check_uint(name: str, value: object) -> None:
    if type(value) is not int or not 0 <= value <= _MAX_INT:
        raise LocalProtocolError(f"membership: {name} must be an int in 0..2**63-1, got {value!r}")


def _check_gossip(gossip: object) -> None:
    if not isinstance(gossip, tuple) or len(gossip) > MAX_GOSSIP:
        raise LocalProtocolError(f"membership: gossip must be a tuple of at most {MAX_GOSSIP} Updates")
    for update in gossip:
        if not isinstance(update, Update):
            raise LocalProtocolError(f"membership: gossip items must be Updates, got {type(update).__name__}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    """One piece of gossip: ``origin`` says ``peer`` is in ``state`` at ``incarnation``."""

    peer: str
    state: State
    incarnation: int
    origin: str

    def __post_init__(self) -> None:
        _check_id("Update.peer", self.peer)
        _check_id("Update.origin", self.origin)
        if not isinstance(self.state, State):
            raise LocalProtocolError(f"membership: Update.state must be a State, got {self.state!r}")
        _check_uint("Update.incarnation", self.incarnation)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """Direct probe of ``target`` (SWIM §3.1); answered by ``Ack`` with the same ``seq``."""

    seq: int
    target: str
    gossip: tuple[Update, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("Ping.seq", self.seq)
        _check_id("Ping.target", self.target)
        _check_gossip(self.gossip)


@dataclass(frozen=True, slots=True, kw_only=True)
class PingReq:
    """"Please ping ``target`` for me and forward its ack under my ``seq``" (SWIM §3.1)."""

    seq: int
    target: str
    gossip: tuple[Update, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("PingReq.seq", self.seq)
        _check_id("PingReq.target", self.target)
        _check_gossip(self.gossip)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """The probe ``seq`` reached its target (directly or through a helper)."""

    seq: int
    gossip: tuple[Update, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("Ack.seq", self.seq)
        _check_gossip(self.gossip)


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """A helper heard nothing from the target of ``seq`` in time (Lifeguard §4.3)."""

    seq: int
    gossip: tuple[Update, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("Nack.seq", self.seq)
        _check_gossip(self.gossip)


Message = Ping | PingReq | Ack | Nack
"""Any message the membership core sends or receives."""

_TYPE_NAMES = {Ping: "ping", PingReq: "ping-req", Ack: "ack", Nack: "nack"}
_TYPES = {name: cls for cls, name in _TYPE_NAMES.items()}
_STATES = {s.value: s for s in State}


def encode(msg: Message) -> dict:
    """The wire form of ``msg``: a plain dict ``{"v": 1, "t": ..., ...}`` ready for msgpack."""
    name = _TYPE_NAMES.get(type(msg))
    if name is None:
        raise LocalProtocolError(f"membership: cannot encode {type(msg).__name__}; expected a membership Message")
    obj: dict = {"v": 1, "t": name, "seq": msg.seq}
    if isinstance(msg, (Ping, PingReq)):
        obj["target"] = msg.target
    obj["g"] = [[u.peer, u.state.value, u.incarnation, u.origin] for u in msg.gossip]
    return obj


def decode(obj: object) -> Message:
    """Rebuild a message from its wire form; anything malformed raises ``RemoteProtocolError``."""
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"membership: expected a dict, got {type(obj).__name__}")
    if obj.get("v") != 1 or type(obj.get("v")) is not int:
        raise RemoteProtocolError(f"membership: unsupported version {obj.get('v')!r}; this node speaks v1")
    cls = _TYPES.get(obj.get("t")) if isinstance(obj.get("t"), str) else None
    if cls is None:
        raise RemoteProtocolError(f"membership: unknown message type {obj.get('t')!r}")
    keys = {"v", "t", "seq", "g"} | ({"target"} if cls in (Ping, PingReq) else set())
    if set(obj) != keys:
        raise RemoteProtocolError(f"membership: {obj['t']} must have exactly the fields {sorted(keys)}")
    raw = obj["g"]
    if not isinstance(raw, list) or len(raw) > MAX_GOSSIP:
        raise RemoteProtocolError(f"membership: gossip must be a list of at most {MAX_GOSSIP} items")
    try:
        gossip = []
        for item in raw:
            if not isinstance(item, list) or len(item) != 4 or item[1] not in _STATES:
                raise LocalProtocolError(f"membership: gossip item must be [peer, state, incarnation, origin], got {item!r:.80}")
            gossip.append(Update(peer=item[0], state=_STATES[item[1]], incarnation=item[2], origin=item[3]))
        fields = {"seq": obj["seq"], "gossip": tuple(gossip)}
        if "target" in keys:
            fields["target"] = obj["target"]
        return cls(**fields)
    except (LocalProtocolError, TypeError) as exc:
        raise RemoteProtocolError(f"membership: malformed {obj['t']}: {exc}") from None


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
    retransmit_multiplier: float = 4.0
    """SWIM λ: each update is piggybacked ``ceil(λ · log10(N + 1))`` times."""
    max_piggyback: int = 16
    """Most updates piggybacked on one message (at most ``MAX_GOSSIP``)."""
    nack_fraction: float = 0.8
    """A helper sends its nack after this fraction of the probe timeout (Lifeguard §4.3)."""

    def __post_init__(self) -> None:
        if not 0 < self.probe_timeout < self.probe_interval:
            raise LocalProtocolError("membership: need 0 < probe_timeout < probe_interval")
        if self.indirect_probes < 0 or self.suspicion_confirmations < 0 or self.max_local_health < 0:
            raise LocalProtocolError("membership: indirect_probes, suspicion_confirmations and max_local_health must be >= 0")
        if self.suspicion_min_multiplier <= 0 or self.suspicion_max_multiplier < 1:
            raise LocalProtocolError("membership: need suspicion_min_multiplier > 0 and suspicion_max_multiplier >= 1")
        if not 1 <= self.max_piggyback <= MAX_GOSSIP:
            raise LocalProtocolError(f"membership: max_piggyback must be in 1..{MAX_GOSSIP}")
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
    """A running suspicion timer (Lifeguard §4.2)."""

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
        self._probe_order: list[str] = []
        self._probe_index = 0
        self._forwards: dict[int, _Forward] = {}
        self._suspicions: dict[str, _Suspicion] = {}
        self._gossip: dict[str, list] = {}  # peer -> [Update, times sent]
        self._out: list[tuple[str, Message]] = []
        self._events: list[Event] = []
        self._stats = {"probes": 0, "probes_failed": 0, "indirect_probes": 0, "refutations": 0,
                       "pings_received": 0, "messages_sent": 0, "dropped": 0}
        self._queue_self(State.ALIVE)

    # ---- public API ------------------------------------------------------------------------

    def join(self, peer_id: str, now: float) -> None:
        """Add ``peer_id`` (from discovery or config) as an alive member we will probe."""
        _check_id("peer_id", peer_id)
        if peer_id == self.self_id or peer_id in self._members:
            return
        self._set(peer_id, State.ALIVE, 0, now)
        self._events.append(MemberUp(peer=peer_id, incarnation=0))
        if self._next_probe_at is None:
            self._next_probe_at = now

    def leave(self, now: float) -> None:
        """Leave gracefully: tell every member at once, then stop probing and answering."""
        if self._leaving:
            return
        self._leaving = True
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
        for update in msg.gossip:
            self._apply(update, now)
        if isinstance(msg, Ping):
            self._stats["pings_received"] += 1
            if msg.target != self.self_id:  # meant for a previous owner of our address
                self._stats["dropped"] += 1
                return
            self._send(src, Ack(seq=msg.seq, gossip=self._piggyback(src)))
        elif isinstance(msg, PingReq):
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
                if self._next_probe_at is None:
                    self._next_probe_at = now
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
            return  # already refuted
        self._incarnation = update.incarnation + 1
        self._stats["refutations"] += 1
        self._adjust_health(+1)  # Lifeguard: being suspected hints that we are the slow one
        self._queue_self(State.ALIVE)

    def _set(self, peer: str, state: State, incarnation: int, now: float) -> None:
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

    # ---- suspicion (Lifeguard §4.2) ----------------------------------------------------------

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

    # ---- probing (SWIM §3.1, §4.3; Lifeguard §4.3) -------------------------------------------

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
        # confirmation when someone else raised the suspicion (Lifeguard §4.2).
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
        self._queue(Update(peer=self.self_id, state=state, incarnation=self._incarnation, origin=self.self_id))

    def _piggyback(self, dest: str) -> tuple[Update, ...]:
        """Up to ``max_piggyback`` least-sent updates; drops those sent ``λ·log(N)`` times."""
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
        limit = math.ceil(self.config.retransmit_multiplier * math.log10(n + 1))
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
