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

An advert's load (queue, recent latency, measured speed per model) is soft state
with its own expiry, apart from the peer's state: it is stamped on arrival and
used only while younger than ``LOAD_EXPIRES_AFTER`` (``fresh_load``). A peer can
be alive — the failure detector hears it — while its adverts have stopped; routing
then has no figures for it and leaves it out (``loads``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from crdt.errors import RemoteProtocolError
from inference.messages import PartProfile

from .config import TIERS

SUSPECT_AFTER = 4.0
CONFLICT_WINDOW = 10.0  # seconds over which two live instances of one peer id count as a duplicate
GONE_AFTER = 15.0
MAX_STARTED_AT = 2.0**33  # unix seconds (year 2242): a larger start time is nonsense, not a clock
LOAD_EXPIRES_AFTER = 5.0  # seconds: an advert's load and speed older than this are not used (5 advert periods)


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
    started_at: float = 0.0  # unix seconds this process started (longer-lived nodes vote first); 0 = not said

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
            "started_at": self.started_at,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Descriptor:
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

        started_at = obj.get("started_at", 0.0)  # optional: older nodes do not send it
        if type(started_at) not in (int, float) or not (math.isfinite(started_at) and 0 <= started_at <= MAX_STARTED_AT):
            raise RemoteProtocolError(
                f"mesh: descriptor field 'started_at' must be unix seconds in 0..{MAX_STARTED_AT:g}"
            )
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
            started_at=float(started_at),
        )


MAX_ADVERT_MODELS = 256  # models (and speed figures) one advert may list
MAX_MODEL_NAME = 128
MAX_QUEUE = 2**31 - 1
MAX_MS = 86_400_000.0  # a day: any larger latency or run time is nonsense, not a measurement


def _ms(value: Any, what: str) -> float:
    """A peer's millisecond figure: a non-negative, finite number below a day."""
    if type(value) not in (int, float) or not (math.isfinite(value) and 0 <= value <= MAX_MS):
        raise RemoteProtocolError(f"mesh: advert {what} must be a finite number of ms in 0..{MAX_MS:g}")
    return float(value)


def _bytes(value: Any, what: str) -> int | None:
    """A peer's optional byte count: absent, or an int in 0..2**63."""
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < 2**63:
        raise RemoteProtocolError(f"mesh: advert {what} must be a byte count (an int >= 0)")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Load:
    """A peer's advertised load: soft state that expires with the advert.

    Wire shape (the advert's ``load`` map). The figures were added later as
    optional keys, so the shape is unversioned and compatible both ways: an old
    node reads only ``queue``, ``max_queue`` and ``models``; an advert from an old
    node has no figures, which reads as "not measured" (``latency_ms`` 0, no speeds).
    """

    queue: int = 0
    max_queue: int = 0
    models: tuple[str, ...] = ()
    latency_ms: float = 0.0  # recent request latency here (queue wait + run), EWMA; 0 = not measured
    speed_ms: tuple[tuple[str, float], ...] = ()  # (model, EWMA run time) sorted by model; measured here
    profiles: tuple[tuple[str, PartProfile], ...] = ()  # (model, per-partition figures) sorted by model
    memory_free: int | None = None  # bytes the node could still allocate; None: not reported

    def speed(self, model: str) -> float | None:
        """Measured run time of ``model`` in ms, or None when not measured."""
        return dict(self.speed_ms).get(model)

    def profile(self, model: str) -> PartProfile | None:
        """The peer's measured partition figures for ``model``, or None."""
        return dict(self.profiles).get(model)

    def to_wire(self) -> dict:
        """Plain dict for msgpack."""
        return {"queue": self.queue, "max_queue": self.max_queue, "models": list(self.models),
                "latency_ms": self.latency_ms, "speed_ms": dict(self.speed_ms),
                "profiles": {m: p.to_wire() for m, p in self.profiles},
                **({} if self.memory_free is None else {"memory_free": self.memory_free})}

    @classmethod
    def from_wire(cls, obj: Any) -> Load:
        """Validate an advert's load part (bounded sizes, types, finite non-negative figures)."""
        if not isinstance(obj, dict):
            raise RemoteProtocolError("mesh: advert load must be a map")
        queue, max_queue, models = obj.get("queue"), obj.get("max_queue"), obj.get("models", [])
        if not all(type(v) is int and 0 <= v <= MAX_QUEUE for v in (queue, max_queue)):
            raise RemoteProtocolError("mesh: advert load needs non-negative integer queue and max_queue")
        if not (isinstance(models, list) and len(models) <= MAX_ADVERT_MODELS
                and all(isinstance(m, str) and 0 < len(m) <= MAX_MODEL_NAME for m in models)):
            raise RemoteProtocolError(
                f"mesh: advert models must be a list of at most {MAX_ADVERT_MODELS} names of 1..{MAX_MODEL_NAME} chars"
            )
        speed = obj.get("speed_ms", {})
        if not (isinstance(speed, dict) and len(speed) <= MAX_ADVERT_MODELS
                and all(isinstance(m, str) and 0 < len(m) <= MAX_MODEL_NAME for m in speed)):
            raise RemoteProtocolError(
                f"mesh: advert speed_ms must map at most {MAX_ADVERT_MODELS} model names to ms"
            )
        profiles = obj.get("profiles", {})
        if not (isinstance(profiles, dict) and len(profiles) <= MAX_ADVERT_MODELS
                and all(isinstance(m, str) and 0 < len(m) <= MAX_MODEL_NAME for m in profiles)):
            raise RemoteProtocolError(
                f"mesh: advert profiles must map at most {MAX_ADVERT_MODELS} model names to part profiles"
            )
        return cls(
            queue=queue,
            max_queue=max_queue,
            models=tuple(models),
            latency_ms=_ms(obj.get("latency_ms", 0.0), "latency_ms"),
            speed_ms=tuple(sorted((m, _ms(v, f"speed_ms[{m!r}]")) for m, v in speed.items())),
            profiles=tuple(sorted((m, PartProfile.from_wire(v)) for m, v in profiles.items())),
            memory_free=_bytes(obj.get("memory_free"), "memory_free"),
        )


class RunTimes:
    """This node's measured speed: an EWMA of run time per model and of request latency.

    Pure: callers pass the measured milliseconds. EWMA (weight ``alpha`` on the newest
    sample) so one slow run moves the figure but does not own it.
    """

    def __init__(self, alpha: float = 0.2, max_models: int = MAX_ADVERT_MODELS) -> None:
        self._alpha = alpha
        self._max_models = max_models
        self._run_ms: dict[str, float] = {}
        self.latency_ms = 0.0

    def record(self, model: str, run_ms: float, latency_ms: float) -> None:
        """One request served here: its run time and its latency including the queue wait."""
        if model in self._run_ms or len(self._run_ms) < self._max_models:
            old = self._run_ms.get(model)
            self._run_ms[model] = run_ms if old is None else old + self._alpha * (run_ms - old)
        old_latency = self.latency_ms
        self.latency_ms = latency_ms if old_latency == 0 else old_latency + self._alpha * (latency_ms - old_latency)

    def forget(self, keep: set[str]) -> None:
        """Drop the figures of models no longer loaded here."""
        self._run_ms = {m: v for m, v in self._run_ms.items() if m in keep}

    def speed_ms(self) -> tuple[tuple[str, float], ...]:
        """(model, EWMA run ms), sorted, for ``Load.speed_ms``."""
        return tuple(sorted((m, round(v, 3)) for m, v in self._run_ms.items()))


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerRecord:
    """One row of the table."""

    descriptor: Descriptor
    connected: bool = False
    last_heard: float = 0.0
    load: Load = field(default_factory=Load)
    load_at: float | None = None  # when the last advert's load arrived (our clock); None: never
    left: bool = False
    verdict: str = ""  # the failure detector's: "", "alive", "suspect" or "dead"

    def load_age(self, now: float) -> float | None:
        """Seconds since the last advert's load arrived, or None if none has."""
        return None if self.load_at is None else now - self.load_at

    def fresh_load(self, now: float) -> Load | None:
        """The advertised load while younger than ``LOAD_EXPIRES_AFTER``, else None (soft state expires)."""
        age = self.load_age(now)
        return self.load if age is not None and 0 <= age <= LOAD_EXPIRES_AFTER else None

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
        """Record a hello or advert; True when the peer is new or back: it had left, lost its
        connection, or been silent longer than ``GONE_AFTER``.

        A failure detector's "dead" alone does not make it back: a dead peer keeps sending
        adverts over a live connection until the detector hears its refutation, and each
        of them is the same peer still there, not another return."""
        if desc.peer_id == self._self:
            return False
        old = self._peers.get(desc.peer_id)
        if old is None:
            self._peers[desc.peer_id] = PeerRecord(descriptor=desc, connected=True, last_heard=now)
            return True
        self._peers[desc.peer_id] = replace(old, descriptor=desc, connected=True, last_heard=now, left=False)
        return old.left or not old.connected or now - old.last_heard > GONE_AFTER

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
        self._peers[peer_id] = replace(old, left=True, connected=False, load=Load(), load_at=None)
        return True

    def set_load(self, peer_id: str, load: Load, now: float) -> None:
        """Record an advert's load for a known peer."""
        old = self._peers.get(peer_id)
        if old is not None and not old.left:
            self._peers[peer_id] = replace(old, load=load, load_at=now, last_heard=now, connected=True)

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

    def loads(self, now: float) -> list[tuple[PeerRecord, Load]]:
        """Alive peers with an unexpired advert, beside its load: the only figures offload may use."""
        return [(r, load) for r in self.alive(now) if (load := r.fresh_load(now)) is not None]

    def by_raft_addr(self, raft_addr: str) -> PeerRecord | None:
        """The peer that owns a Raft address."""
        for rec in self._peers.values():
            if rec.descriptor.raft_addr == raft_addr:
                return rec
        return None
