"""Sensor state in three scopes: shared, zone-only and local-only (rules in ``mesh.privacy``).

``ScopedState`` is what ``node.state`` is. It sends each key to the store of
its scope, never to two:

- shared keys to the ``SensorState`` every member syncs (``crdt.sync``);
- zone-only keys to a second ``SensorState`` in ``zone.sqlite``, synced on its
  own route (``crdt.zone``) only with peers whose descriptor names the same
  non-empty ``location``: checked when a peer comes up, again before every
  send, and on every zone message received (one from another or an unknown
  zone is refused and not applied);
- local-only keys to ``LocalStore`` in ``local.sqlite``: an LWW map with no
  sync core at all, so there is no code path that could put it on the wire.

A peer's location is what its descriptor says: authenticated (Noise, mesh
key) but self-declared. Zone-only keeps honest members from receiving data of
other zones; it is no defence against an admitted member that lies.

It also runs the noisy aggregates (``mesh.privacy.release``), one small loop
each. Anything it does not define (statistics helpers added to
``SensorState`` later) is looked up on the shared store.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from crdt import HybridLogicalClock, LWWMap
from crdt.errors import MeshError

from . import privacy
from .config import Config
from .privacy import LOCAL, SCOPES, SHARED, ZONE, AggregateRule, PrivacySettings
from .sensor_db import MB, SensorDB, StoreCorrupt
from .sensors import SensorState, check_entry, entry_to_json, wall_ms

log = logging.getLogger("meshnode.privacy")

ZONE_METHOD = "crdt.zone"
SHARED_FILE, ZONE_FILE, LOCAL_FILE = "sensors.sqlite", "zone.sqlite", "local.sqlite"

_OWN = frozenset({"settings", "location", "privacy_stats"})  # ScopedState's own public attributes
LocationOf = Callable[[str], "str | None"]
Notify = Callable[[str, str, Any], Awaitable[None]]


class LocalStore:
    """Local-only entries: an LWW map no sync core ever sees, durable in its own SQLite file."""

    def __init__(self, node_id: str, path: Path) -> None:
        self._path = path
        self.corrupt_notice = ""
        try:
            self._db = SensorDB(path)
            entries, context, last = self._db.load()
        except StoreCorrupt as exc:
            # Nobody else holds these entries: keep the bad file for recovery by hand, start empty.
            aside = path.with_name(path.name + f".corrupt-{int(time.time())}")
            log.error("%s; moved it to %s; local-only entries start empty", exc, aside)
            self.corrupt_notice = f"{exc} (moved to {aside.name})"
            for suffix in ("", "-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.rename(aside.with_name(aside.name + suffix))
            self._db = SensorDB(path)
            entries, context, last = [], None, None
        self._map = LWWMap.restore(node_id, entries, context) if context is not None else LWWMap(node_id)
        self._clock = HybridLogicalClock(node_id, last=last) if last is not None else HybridLogicalClock(node_id)
        self._lock = trio.Lock()

    async def put(self, key: str, value: Any) -> dict:
        """Write; returns once it is on disk (``synchronous=FULL``)."""
        size = check_entry(key, value)
        async with self._lock:
            self._db.check_room(key, size)  # the store limits apply here too
            ts = self._clock.now(wall_ms())
            delta = self._map.put(key, value, ts)
            await trio.to_thread.run_sync(self._db.save, list(delta.entries), self._map.context, ts)
        return entry_to_json(self._map.get(key))

    async def delete(self, key: str) -> dict:
        """Delete ``key`` (a tombstone row; nobody else ever needs it, but it keeps the file's context whole)."""
        check_entry(key, None)
        async with self._lock:
            existed = key in self._map
            ts = self._clock.now(wall_ms())
            delta = self._map.delete(key, ts)
            await trio.to_thread.run_sync(self._db.save, list(delta.entries), self._map.context, ts)
        return {"key": key, "deleted": True, "existed": existed, "writer": self._map.node, "hlc": list(ts.to_wire())}

    def limit_store(self, max_store_mb: float, min_free_mb: float) -> None:
        """The same bounds as the shared store (``sync.max_store_mb``, ``sync.min_free_mb``)."""
        self._db.max_bytes, self._db.min_free = int(max_store_mb * MB), int(min_free_mb * MB)

    def get(self, key: str) -> dict | None:
        """The entry for ``key``, or None."""
        entry = self._map.get(key)
        return entry_to_json(entry) if entry is not None else None

    def list(self, prefix: str = "") -> list[dict]:
        """Entries whose key starts with ``prefix``, sorted by key."""
        return [entry_to_json(e) for e in self._map.entries(prefix)]

    def __len__(self) -> int:
        return len(self._map)

    def close(self) -> None:
        """Close the file."""
        self._db.close()


def _scoped(doc: dict | None, scope: str) -> dict | None:
    return None if doc is None else dict(doc, scope=scope)


class ScopedState:
    """``node.state``: put/get/list over the shared, zone-only and local-only stores, plus their sync."""

    def __init__(self, shared: SensorState, local: LocalStore, zone: SensorState | None, *,
                 settings: PrivacySettings, location: str, rng: random.Random | None = None) -> None:
        self._shared, self._local, self._zone = shared, local, zone
        self.settings = settings
        self.location = location
        self._rng = rng if rng is not None else random.SystemRandom()
        self._location_of: LocationOf = lambda peer: None  # until attach(): no peer is in our zone
        self._notify: Notify | None = None
        self._zone_peers: set[str] = set()
        self.privacy_stats = {"zone_refused": 0, "zone_not_sent": 0, "releases": 0, "release_errors": 0}
        self._epsilon_spent = {rule.key: 0.0 for rule in settings.aggregates}

    @classmethod
    def open(cls, node_id: str, data_dir: Path, config: Config) -> ScopedState:
        """Open the node's stores (blocking: integrity checks; call from a worker thread)."""
        interval = config.sync.interval
        shared = SensorState(node_id, data_dir / SHARED_FILE, interval=interval)
        local = LocalStore(node_id, data_dir / LOCAL_FILE)
        # A node without a location has no zone: it keeps no zone store and takes no zone messages.
        zone = SensorState(node_id, data_dir / ZONE_FILE, interval=interval) if config.location else None
        return cls(shared, local, zone, settings=config.privacy, location=config.location)

    def attach(self, location_of: LocationOf, notify: Notify) -> None:
        """Wire to the node: ``location_of(peer)`` from descriptors (None: unknown), ``notify`` the RPC note."""
        self._location_of, self._notify = location_of, notify

    @property
    def admits(self) -> Callable[[str], bool]:
        """Whether a peer is still admitted (tombstones wait only for admitted members)."""
        return self._shared.admits

    @admits.setter
    def admits(self, value: Callable[[str], bool]) -> None:
        for store in (self._shared, self._zone):
            if store is not None:
                store.admits = value

    @property
    def relay_to(self) -> Callable[[str, str], bool]:
        """Whether entries learned from one peer are relayed to another (see ``crdt.SyncCore``)."""
        return self._shared.relay_to

    @relay_to.setter
    def relay_to(self, value: Callable[[str, str], bool]) -> None:
        for store in (self._shared, self._zone):
            if store is not None:
                store.relay_to = value

    def limit_store(self, max_store_mb: float, min_free_mb: float) -> None:
        """Bound every store file the same way (``sync.max_store_mb``, ``sync.min_free_mb``)."""
        for store in (self._shared, self._local, self._zone):
            if store is not None:
                store.limit_store(max_store_mb, min_free_mb)

    @property
    def replicas(self) -> Any:
        """How the shared store reaches other members for majority reads and writes (never the zone store:
        its members would be the whole mesh)."""
        return self._shared.replicas

    @replicas.setter
    def replicas(self, value: Any) -> None:
        self._shared.replicas = value

    def __setattr__(self, name: str, value: Any) -> None:
        # Hooks the node sets on its sensor store (``relay_to``, ...) reach the stores that sync;
        # ``replicas`` (majority reads and writes ask every member) only the shared one.
        if name.startswith("_") or name in _OWN or isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)
            return
        setattr(self._shared, name, value)
        if self._zone is not None:
            setattr(self._zone, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not defined here: counters and helpers of the shared store.
        if name.startswith("__") or name in ("_shared", "_local", "_zone"):
            raise AttributeError(name)
        return getattr(self._shared, name)

    # -- the API ---------------------------------------------------------------

    def scope_of(self, key: str) -> str:
        """``local``, ``zone`` or ``shared`` for ``key`` under this node's config."""
        return self.settings.scope_of(key)

    async def put(self, key: str, value: Any, *, scope: str | None = None, **options: Any) -> dict:
        """Write ``key`` to the store of its scope; ``scope``, if given, must be that scope (a safety check)."""
        actual = self.scope_of(key) if isinstance(key, str) else SHARED
        if scope is not None and scope not in SCOPES:
            raise MeshError(f"privacy: scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if scope is not None and scope != actual:
            raise MeshError(
                f"privacy: key {key!r} is {actual} under this node's privacy config, not {scope}; "
                "scopes come from the privacy section of node.yaml (local_only / zone_only patterns)"
            )
        if actual == SHARED:
            return _scoped(await self._shared.put(key, value, **options), SHARED)
        self._private_options(key, actual, options)
        if actual == LOCAL:
            return _scoped(await self._local.put(key, value), LOCAL)
        return _scoped(await self._zone_store().put(key, value), ZONE)

    async def delete(self, key: str) -> dict:
        """Delete ``key`` in the store of its scope (a zone tombstone syncs within the zone only)."""
        scope = self.scope_of(key) if isinstance(key, str) else SHARED
        store = self._shared if scope == SHARED else self._local if scope == LOCAL else self._zone_store()
        return _scoped(await store.delete(key), scope)

    async def incr(self, key: str, by: int = 1) -> dict:
        """Add ``by`` to counter ``key`` in the store of its scope (shared or zone)."""
        scope = self.scope_of(key) if isinstance(key, str) else SHARED
        if scope == LOCAL:
            raise MeshError(f"privacy: {key!r} is local-only, and counters live in synced stores only; "
                            "keep a local-only count with `state put`")
        store = self._shared if scope == SHARED else self._zone_store()
        return _scoped(await store.incr(key, by), scope)

    def get(self, key: str, **options: Any) -> dict | None:
        """This node's entry for ``key``, from the store of its scope, with a ``scope`` field."""
        scope = self.scope_of(key) if isinstance(key, str) else SHARED
        if scope == SHARED:
            return _scoped(self._shared.get(key, **options), SHARED)
        self._private_options(key, scope, options)
        if scope == LOCAL:
            return _scoped(self._local.get(key), LOCAL)
        return _scoped(self._zone.get(key), ZONE) if self._zone is not None else None

    async def read(self, key: str, **options: Any) -> dict | None:
        """``get`` with the shared store's consistency options (a majority read asks other members)."""
        scope = self.scope_of(key) if isinstance(key, str) else SHARED
        if scope == SHARED:
            return _scoped(await self._shared.read(key, **options), SHARED)
        return self.get(key, **options)

    def list(self, prefix: str = "", **options: Any) -> list[dict]:
        """Entries of every scope whose key starts with ``prefix``, sorted by key, each with its ``scope``."""
        rows = [_scoped(d, SHARED) for d in self._shared.list(prefix, **options)]
        rows += [_scoped(d, LOCAL) for d in self._local.list(prefix)]
        if self._zone is not None:
            rows += [_scoped(d, ZONE) for d in self._zone.list(prefix)]
        return sorted(rows, key=lambda d: (d["key"], SCOPES.index(d["scope"])))

    def __len__(self) -> int:
        return len(self._shared) + len(self._local) + (len(self._zone) if self._zone is not None else 0)

    def _private_options(self, key: str, scope: str, options: dict) -> None:
        # Consistency levels ask other members: never for a key that must not leave this node or zone.
        level = options.get("consistency")
        if level not in (None, "local"):
            raise MeshError(
                f"privacy: key {key!r} is {scope}-only; consistency {level!r} would involve other members, "
                "so it applies to shared keys only (use local)"
            )

    def _zone_store(self) -> SensorState:
        if self._zone is None:
            raise MeshError("privacy: zone-only keys need this node's `location` set in node.yaml")
        return self._zone

    # -- peers -----------------------------------------------------------------

    def _in_zone(self, peer: str) -> bool:
        """A zone peer: same non-empty location as this node; an unknown location is not."""
        return bool(self.location) and self._location_of(peer) == self.location

    def peer_up(self, peer: str) -> None:
        """A peer joined or came back: shared sync always, zone sync only within the zone."""
        self._shared.peer_up(peer)
        if self._zone is None:
            return
        if self._in_zone(peer):
            self._zone_peers.add(peer)
            self._zone.peer_up(peer)
        elif peer in self._zone_peers:  # moved to another zone (restarted with another location)
            self._zone_peers.discard(peer)
            self._zone.peer_down(peer)

    def peer_down(self, peer: str) -> None:
        """A peer left."""
        self._shared.peer_down(peer)
        if self._zone is not None:
            self._zone_peers.discard(peer)
            self._zone.peer_down(peer)

    async def receive(self, peer: str, body: Any) -> None:
        """A shared sync message (``crdt.sync``)."""
        await self._shared.receive(peer, body)

    async def receive_zone(self, peer: str, body: Any) -> None:
        """A zone sync message (``crdt.zone``): applied only when ``peer`` is in this node's zone."""
        if self._zone is None:
            self.privacy_stats["zone_refused"] += 1
            raise MeshError(f"privacy: zone-only sync from {peer} refused: this node has no location, so no zone")
        theirs = self._location_of(peer)
        if theirs != self.location:
            self.privacy_stats["zone_refused"] += 1
            where = "an unknown location" if theirs is None else f"location {theirs!r}"
            raise MeshError(
                f"privacy: zone-only sync from {peer} refused: it has {where}, this node is in {self.location!r}"
            )
        if peer not in self._zone_peers:  # its message overtook our peer_up
            self._zone_peers.add(peer)
            self._zone.peer_up(peer)
        await self._zone.receive(peer, body)

    async def _send_zone(self, peer: str, msg: dict) -> None:
        # Checked again at the last moment: descriptors change, and the core may still list a peer.
        if not self._in_zone(peer) or self._notify is None:
            self.privacy_stats["zone_not_sent"] += 1
            self._zone_peers.discard(peer)
            if self._zone is not None:
                self._zone.peer_down(peer)
            raise MeshError(f"privacy: {peer} is not in zone {self.location!r}; zone-only state not sent")
        with trio.move_on_after(2):
            await self._notify(peer, ZONE_METHOD, msg)

    # -- drivers ---------------------------------------------------------------

    async def run(self, send: Callable[[str, dict], Any], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Drive shared sync (``send``), zone sync and the aggregates until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._shared.run, send)
            if self._zone is not None:
                await nursery.start(self._zone.run, self._send_zone)
            for rule in self.settings.aggregates:
                nursery.start_soon(self._release_loop, rule)
            task_status.started()

    def private_values(self, source: str) -> list[float]:
        """Numeric values of local-only and zone-only entries whose key matches ``source``."""
        docs = self._local.list() + (self._zone.list() if self._zone is not None else [])
        return [v for d in docs if privacy.matches(d["key"], source) and (v := privacy.numeric(d["value"])) is not None]

    async def release_once(self, rule: AggregateRule, last_inputs: tuple | None = None) -> tuple | None:
        """Release ``rule`` if its inputs changed since ``last_inputs``; returns the inputs released from."""
        values = self.private_values(rule.source)
        inputs = tuple(sorted(values))
        if inputs == last_inputs:
            return last_inputs  # no new information: a new release would only spend ε
        doc = privacy.release(rule, values, self._rng)
        if doc is None:
            return last_inputs
        await self._shared.put(rule.key, doc)
        self.privacy_stats["releases"] += 1
        self._epsilon_spent[rule.key] += rule.epsilon
        return inputs

    async def _release_loop(self, rule: AggregateRule) -> None:
        last: tuple | None = None
        while True:
            await trio.sleep(rule.every)
            try:
                last = await self.release_once(rule, last)
            except MeshError as exc:
                self.privacy_stats["release_errors"] += 1
                log.warning("privacy: releasing %s failed: %s", rule.key, exc)

    # -- reporting, closing ------------------------------------------------------

    @property
    def corrupt_notice(self) -> str:
        """Why a store file was moved aside at start, if one was."""
        notes = [self._shared.corrupt_notice, self._local.corrupt_notice,
                 self._zone.corrupt_notice if self._zone is not None else ""]
        return "; ".join(n for n in notes if n)

    def statistics(self) -> dict:
        """The shared store's counters, plus the local and zone stores and the aggregates."""
        return dict(
            self._shared.statistics(),
            local={"keys": len(self._local)},
            zone=None if self._zone is None else dict(self._zone.statistics(), location=self.location,
                                                       peers=sorted(self._zone_peers)),
            privacy=dict(self.privacy_stats, epsilon_spent=dict(self._epsilon_spent)),
        )

    def close(self) -> None:
        """Close every store file."""
        for store in (self._shared, self._local, self._zone):
            if store is not None:
                store.close()
