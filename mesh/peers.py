"""Who is in the mesh, as this node knows it (sans-IO).

Theory of operation. A peer enters the table from a ``hello`` (its descriptor,
addresses and Raft address) and is refreshed by every advert it sends. Its
state follows from two facts — does libp2p hold a connection (a hint), and how
old is its last advert — evaluated at ``now``:

=========  ===============================================================
alive      connected and heard from within ``suspect_after`` seconds
suspect    the failure detector suspects it, or connected but silent longer
           than ``suspect_after`` (hung, overloaded, paused)
gone       the failure detector declared it dead, or no connection, or silent
           longer than ``gone_after`` seconds
left       said goodbye (a graceful shutdown) and not heard from since

The failure detector (SWIM with Lifeguard, ``mesh.membership``) gives the
verdicts; freshness is the fallback for peers it has not judged yet.
=========  ===============================================================

A later issue replaces the freshness rule with a SWIM/Lifeguard core; the table
keeps its shape. Nothing here reads a clock: ``now`` is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from crdt.errors import RemoteProtocolError

from .config import TIERS

SUSPECT_AFTER = 4.0
CONFLICT_WINDOW = 10.0  # seconds over which two live instances of one peer id count as a duplicate
GONE_AFTER = 15.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    """What a node says about itself."""

    peer_id: str
    name: str
    tier: str
    capabilities: tuple[str, ...] = ()
    location: str = ""
    addrs: tuple[str, ...] = ()
    raft_addr: str = ""
    instance: str = ""  # random per process start: two at once under one peer id = a copied identity

    def to_wire(self) -> dict:
        """Plain dict for msgpack."""
        return {
            "peer_id": self.peer_id,
            "name": self.name,
            "tier": self.tier,
            "capabilities": list(self.capabilities),
            "location": self.location,
            "addrs": list(self.addrs),
            "raft_addr": self.raft_addr,
            "instance": self.instance,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> "Descriptor":
        """Validate a peer's descriptor."""
        if not isinstance(obj, dict):
            raise RemoteProtocolError("mesh: descriptor must be a map")

        def text(key: str, limit: int = 256, required: bool = True) -> str:
            value = obj.get(key, None if required else "")
            if not isinstance(value, str) or len(value) > limit or (required and not value):
                raise RemoteProtocolError(f"mesh: descriptor field {key!r} is missing or invalid")
            return value

        def texts(key: str) -> tuple[str, ...]:
            value = obj.get(key, [])
            if not isinstance(value, list) or len(value) > 64 or not all(
                isinstance(v, str) and len(v) <= 256 for v in value
            ):
                raise RemoteProtocolError(f"mesh: descriptor field {key!r} must be a list of strings")
            return tuple(value)

        tier = text("tier")
        if tier not in TIERS:
            raise RemoteProtocolError(f"mesh: descriptor tier {tier!r} is not one of {', '.join(TIERS)}")
        return cls(
            peer_id=text("peer_id"),
            name=text("name", 64),
            tier=tier,
            capabilities=texts("capabilities"),
            location=text("location", 128, required=False),
            addrs=texts("addrs"),
            raft_addr=text("raft_addr", 128, required=False),
            instance=text("instance", 64, required=False),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Load:
    """A peer's advertised load: soft state that expires with the advert."""

    queue: int = 0
    max_queue: int = 0
    models: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, obj: Any) -> "Load":
        """Validate an advert's load part."""
        if not isinstance(obj, dict):
            raise RemoteProtocolError("mesh: advert load must be a map")
        queue, max_queue, models = obj.get("queue"), obj.get("max_queue"), obj.get("models", [])
        if not (type(queue) is int and type(max_queue) is int and queue >= 0 and max_queue >= 0):
            raise RemoteProtocolError("mesh: advert load needs non-negative queue and max_queue")
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise RemoteProtocolError("mesh: advert models must be a list of names")
        return cls(queue=queue, max_queue=max_queue, models=tuple(models))


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerRecord:
    """One row of the table."""

    descriptor: Descriptor
    connected: bool = False
    last_heard: float = 0.0
    load: Load = field(default_factory=Load)
    left: bool = False
    verdict: str = ""  # the failure detector's: "", "alive", "suspect" or "dead"

    def state(self, now: float) -> str:
        """alive / suspect / gone / left at ``now`` (see the module doc)."""
        if self.left:
            return "left"
        if self.verdict == "dead":
            return "gone"
        if self.verdict == "suspect":
            return "suspect"
        if self.verdict == "alive" and not self.connected:
            return "suspect"  # a lost connection is a hint; only the failure detector says "dead"
        silent = now - self.last_heard
        if not self.connected or silent > GONE_AFTER:
            return "gone"
        if silent > SUSPECT_AFTER:
            return "suspect"
        return "alive"


class PeerTable:
    """Peers by id; every method takes ``now`` instead of reading a clock."""

    def __init__(self, self_id: str) -> None:
        self._self = self_id
        self._peers: dict[str, PeerRecord] = {}
        self._instances: dict[str, dict[str, list[float]]] = {}  # peer -> instance -> [first, last heard]

    def duplicate(self, desc: Descriptor, now: float) -> tuple[str, str] | None:
        """Two processes speaking as one peer id: (older instance, newer instance), else None.

        A restart also brings a new instance, but the old one never speaks again; a
        copied data dir shows as the older instance still speaking after the newer
        one appeared, within ``CONFLICT_WINDOW`` seconds.
        """
        if not desc.instance:
            return None
        seen = self._instances.setdefault(desc.peer_id, {})
        span = seen.setdefault(desc.instance, [now, now])
        span[1] = now
        for inst in [i for i, (_, last) in seen.items() if now - last > CONFLICT_WINDOW]:
            del seen[inst]
        if len(seen) < 2:
            return None
        (old, (_, old_last)), (new, (new_first, _)) = sorted(seen.items(), key=lambda kv: kv[1][0])[:2]
        return (old, new) if old_last > new_first else None

    def heard(self, desc: Descriptor, now: float) -> bool:
        """Record a hello or advert; True when the peer is new or back from "gone"."""
        if desc.peer_id == self._self:
            return False
        old = self._peers.get(desc.peer_id)
        if old is None:
            self._peers[desc.peer_id] = PeerRecord(descriptor=desc, connected=True, last_heard=now)
            return True
        self._peers[desc.peer_id] = replace(old, descriptor=desc, connected=True, last_heard=now, left=False)
        return old.state(now) in ("gone", "left")

    def judge(self, peer_id: str, verdict: str) -> str:
        """Record the failure detector's verdict; returns the previous one ("" if unknown)."""
        old = self._peers.get(peer_id)
        if old is None:
            return ""
        self._peers[peer_id] = replace(old, verdict=verdict)
        return old.verdict

    def departed(self, peer_id: str) -> bool:
        """The peer said goodbye; True if it was known and not already marked."""
        old = self._peers.get(peer_id)
        if old is None or old.left:
            return False
        self._peers[peer_id] = replace(old, left=True, connected=False, load=Load())
        return True

    def set_load(self, peer_id: str, load: Load, now: float) -> None:
        """Record an advert's load for a known peer."""
        old = self._peers.get(peer_id)
        if old is not None and not old.left:
            self._peers[peer_id] = replace(old, load=load, last_heard=now, connected=True)

    def connection(self, peer_id: str, connected: bool) -> None:
        """libp2p's connection hint. Only a loss counts: a peer is back when it speaks
        (hello or advert), so that coming back is seen as an event by ``heard``."""
        old = self._peers.get(peer_id)
        if old is not None and not connected:
            self._peers[peer_id] = replace(old, connected=False)

    def get(self, peer_id: str) -> PeerRecord | None:
        """The record of ``peer_id``, if known."""
        return self._peers.get(peer_id)

    def records(self) -> list[PeerRecord]:
        """Every known peer, by name."""
        return sorted(self._peers.values(), key=lambda r: (r.descriptor.name, r.descriptor.peer_id))

    def alive(self, now: float) -> list[PeerRecord]:
        """Peers whose state is alive at ``now``."""
        return [r for r in self.records() if r.state(now) == "alive"]

    def by_raft_addr(self, raft_addr: str) -> PeerRecord | None:
        """The peer that owns a Raft address."""
        for rec in self._peers.values():
            if rec.descriptor.raft_addr == raft_addr:
                return rec
        return None
