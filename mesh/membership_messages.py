"""The membership protocol's messages and their versioned codec (sans-IO).

Messages carry piggybacked gossip (``Update`` records); ``encode``/``decode`` map them
to ``{"v": 1, "t": ...}`` dicts and refuse anything malformed with
``RemoteProtocolError("membership: ...")``. The protocol itself is in
``mesh.membership``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from crdt.errors import LocalProtocolError, RemoteProtocolError

MAX_GOSSIP = 64
"""Most updates one message may carry; a peer sending more is refused."""
MAX_SYNC = 10_000
"""Most members one ``Sync`` may list."""
MAX_FORWARDS = 1024
"""Most ``PingReq``s served at once; more are dropped, so a flood cannot grow our memory."""
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


def _check_gossip(gossip: object, limit: int = MAX_GOSSIP) -> None:
    if not isinstance(gossip, tuple) or len(gossip) > limit:
        raise LocalProtocolError(f"membership: gossip must be a tuple of at most {limit} Updates")
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
    """A helper heard nothing from the target of ``seq`` in time (Lifeguard)."""

    seq: int
    gossip: tuple[Update, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("Nack.seq", self.seq)
        _check_gossip(self.gossip)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sync:
    """Push-pull anti-entropy (memberlist's push/pull): the sender's whole member table.

    Gossip only carries news while it is fresh; a node that joins late, or an update whose
    retransmissions all went astray, is caught up by this exchange. ``reply`` asks the
    receiver to answer with its own table.
    """

    gossip: tuple[Update, ...]
    reply: bool

    def __post_init__(self) -> None:
        _check_gossip(self.gossip, MAX_SYNC)
        if type(self.reply) is not bool:
            raise LocalProtocolError(f"membership: Sync.reply must be a bool, got {self.reply!r}")


def _trusted_update(peer: str, state: State, incarnation: int, origin: str) -> Update:
    """Build an ``Update`` from our own already-valid table, skipping validation (hot path)."""
    update = object.__new__(Update)
    object.__setattr__(update, "peer", peer)
    object.__setattr__(update, "state", state)
    object.__setattr__(update, "incarnation", incarnation)
    object.__setattr__(update, "origin", origin)
    return update


Message = Ping | PingReq | Ack | Nack | Sync
"""Any message the membership core sends or receives."""

_TYPE_NAMES = {Ping: "ping", PingReq: "ping-req", Ack: "ack", Nack: "nack", Sync: "sync"}
_TYPES = {name: cls for cls, name in _TYPE_NAMES.items()}
_STATES = {s.value: s for s in State}


def encode(msg: Message) -> dict:
    """The wire form of ``msg``: a plain dict ``{"v": 1, "t": ..., ...}`` ready for msgpack."""
    name = _TYPE_NAMES.get(type(msg))
    if name is None:
        raise LocalProtocolError(f"membership: cannot encode {type(msg).__name__}; expected a membership Message")
    obj: dict = {"v": 1, "t": name}
    if isinstance(msg, Sync):
        obj["reply"] = msg.reply
    else:
        obj["seq"] = msg.seq
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
    extra = {Ping: {"seq", "target"}, PingReq: {"seq", "target"}, Sync: {"reply"}}.get(cls, {"seq"})
    keys = {"v", "t", "g"} | extra
    if set(obj) != keys:
        raise RemoteProtocolError(f"membership: {obj['t']} must have exactly the fields {sorted(keys)}")
    raw = obj["g"]
    limit = MAX_SYNC if cls is Sync else MAX_GOSSIP
    if not isinstance(raw, list) or len(raw) > limit:
        raise RemoteProtocolError(f"membership: gossip must be a list of at most {limit} items")
    try:
        gossip = []
        for item in raw:
            if not isinstance(item, list) or len(item) != 4 or item[1] not in _STATES:
                raise LocalProtocolError(
                    f"membership: gossip item must be [peer, state, incarnation, origin], got {item!r:.80}"
                )
            gossip.append(Update(peer=item[0], state=_STATES[item[1]], incarnation=item[2], origin=item[3]))
        fields = {k: obj[k] for k in extra}
        fields["gossip"] = tuple(gossip)
        return cls(**fields)
    except (LocalProtocolError, TypeError) as exc:
        raise RemoteProtocolError(f"membership: malformed {obj['t']}: {exc}") from None
