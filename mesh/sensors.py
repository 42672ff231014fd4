"""Sensor state: the CRDT map, its SQLite file and the anti-entropy driver.

The driver is thin (STYLE §3): it feeds peer messages and local writes to the
sans-IO ``crdt.SyncCore``, sends what the core says is due, and sleeps until
the core's next deadline or until something wakes it. Every change — a local
write or entries learned from a peer — is in SQLite before it is acknowledged
(to the client, or to the peer through the core's acks): ``_lock`` makes
"core.receive + persist" and "core.outgoing" mutually exclusive.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import trio

from crdt import Entry, HybridLogicalClock, LWWMap, SyncCore, Timestamp, decode_message, encode_message
from crdt.errors import MeshError

from .sensor_db import MB, SensorDB, StoreCorrupt, StoreFull, is_disk_full, read_epoch, write_epoch
from .sensor_quorum import (
    DEFAULT_TIMEOUT,
    MAJORITY,
    READ_METHOD,
    WRITE_METHOD,
    ReadQuorum,
    WriteQuorum,
    check_level,
    check_timeout,
    read_answer,
    read_read_answer,
    read_read_request,
    read_request,
    read_write_request,
    write_request,
)
from . import clock
from . import sensor_counters as counters
from .sensor_replicas import Replicas

log = logging.getLogger("meshnode.sensors")

MAX_KEY_LEN = 256
MAX_VALUE_BYTES = 64 * 1024
GC_EVERY = 10.0  # seconds between tombstone collections


def wall_ms() -> int:
    """Wall-clock milliseconds (``mesh.clock``, which the chaos harness can skew), only ever fed into the HLC."""
    return clock.wall_ms()


def check_key(key: Any) -> None:
    """A user key: a non-empty string of at most ``MAX_KEY_LEN`` characters, without NUL."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LEN:
        raise MeshError(f"crdt: key must be a non-empty string of at most {MAX_KEY_LEN} characters")
    if "\x00" in key:
        raise MeshError("crdt: key must not contain NUL (\\x00); it is reserved for counters")


def check_entry(key: Any, value: Any) -> int:
    """Refuse a key or value a write may not carry; returns the value's size in JSON bytes."""
    check_key(key)
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise MeshError(f"crdt: value for {key!r} is not JSON-serialisable: {exc}") from exc
    if size > MAX_VALUE_BYTES:
        raise MeshError(f"crdt: value for {key!r} is {size} bytes; the limit is {MAX_VALUE_BYTES}")
    return size


def entry_to_json(entry: Entry) -> dict:
    """An entry as the API shows it."""
    return {
        "key": entry.key,
        "value": entry.value,
        "writer": entry.dot.node,
        "hlc": list(entry.ts.to_wire()),
        "time_ms": entry.ts.wall_ms,
    }


def counter_to_json(key: str, parts: list[Entry]) -> dict:
    """A counter as the API shows it: its value, how many writers counted, the newest writer entry's time."""
    value, writers = counters.value_of(parts)
    newest = max(parts, key=lambda e: e.ts)
    return {
        "key": key,
        "value": value,
        "type": "counter",
        "writers": writers,
        "writer": newest.dot.node,
        "hlc": list(newest.ts.to_wire()),
        "time_ms": newest.ts.wall_ms,
    }


class SensorState:
    """The node's sensor-state map: ``put``/``get``/``list`` plus peer sync."""

    def __init__(self, node_id: str, path: Path, *, interval: float) -> None:
        self._path = path
        self.corrupt_notice = ""
        epoch_file = path.with_name(path.name + ".epoch")
        had_store = epoch_file.exists()  # written with the store: a vanished or emptied file is damage
        epoch = read_epoch(epoch_file)
        self._db = None
        try:
            if epoch is None:  # which writer ids we used is unknown: a fresh one (time-based) reuses no dot
                epoch = int(time.time())
                raise StoreCorrupt(f"crdt-store: {epoch_file} is unreadable, so the writer ids {path.name} "
                                   f"used are unknown; starting afresh as writer epoch {epoch + 1}")
            self._db = SensorDB(path, expect_store=had_store)
            entries, context, last = self._db.load()
        except StoreCorrupt as exc:
            # Never serve garbage: keep the bad file for inspection, start empty, re-sync from peers.
            if self._db is not None:
                self._db.close()
            aside = path.with_name(path.name + f".corrupt-{int(time.time())}")
            kept = f"moved it to {aside}" if path.exists() else "nothing to keep"
            log.error("%s; %s; re-syncing from peers", exc, kept)
            self.corrupt_notice = f"{exc} ({kept})"
            if path.exists():
                path.rename(aside)
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.rename(aside.with_name(aside.name + suffix))
            # The lost file held our write counters; writing under the old id would reuse
            # dots that peers have already seen (and skip). A new epoch is a new writer id.
            epoch += 1
            write_epoch(epoch_file, epoch)
            self._db = SensorDB(path)
            entries, context, last = [], None, None
        if not had_store:
            write_epoch(epoch_file, epoch)
        self.writer = node_id if epoch == 0 else f"{node_id}~{epoch}"
        if last is not None and last.node != self.writer:
            # A store restored from a backup moves to a new writer epoch (mesh/backup.py): the clock goes
            # on from the last time the store holds, under the new writer id.
            last = Timestamp(last.wall_ms, last.counter, self.writer)
        self._map = LWWMap.restore(self.writer, entries, context) if context is not None else LWWMap(self.writer)
        self._clock = HybridLogicalClock(self.writer, last=last) if last is not None else HybridLogicalClock(self.writer)
        # Whether entries learned from one peer are relayed to another; the node answers from
        # adverts (no relay to a peer that syncs with the origin directly). See SyncCore.
        self.relay_to: Callable[[str, str], bool] = lambda origin, peer: True
        self._core = SyncCore(self._map, interval=interval, relay_to=self._relay_to)
        self._lock = trio.Lock()
        self._wake = trio.Event()
        self.stats = {"sent": 0, "received": 0, "send_errors": 0, "bad_messages": 0}
        self._peers: dict[str, list] = {}  # peer -> sync figures (see _peer)
        self.broken = ""  # set when a write to disk failed: no more writes or sync until restart
        self._node_id = node_id
        self.replicas = Replicas.alone()  # the node attaches the mesh (consistency levels)
        # Who must hold a tombstone before it is forgotten: every peer this store ever synced
        # with (persisted), even one that is away or said goodbye — it may come back — unless
        # revoked (the node sets ``admits``).
        self._members: set[str] = set(self._db.load_members())
        self._members_saved = set(self._members)
        self.admits: Callable[[str], bool] = lambda peer: True

    # -- the API ---------------------------------------------------------------

    async def put(self, key: str, value: Any, *, consistency: str = "local",
                  timeout: float = DEFAULT_TIMEOUT) -> dict:
        """Write a reading; returns once it is durable on this node (``local``) or on a majority.

        A ``majority`` write that times out raises ``QuorumNotReached``; the
        write is kept here and still syncs (see ``mesh.sensor_quorum``).
        """
        level, timeout = check_level(consistency), check_timeout(timeout)
        size = check_entry(key, value)
        async with self._lock:
            self._check_usable()
            self._db.check_room(key, size)  # before anything changes: a refused write leaves no trace
            ts = self._clock.now(wall_ms())
            delta = self._map.put(key, value, ts)
            await self._save(list(delta.entries), ts)
            self._core.local_write(delta, trio.current_time())
        self._wake.set()
        doc = entry_to_json(self._map.get(key))
        if level == MAJORITY:
            quorum = WriteQuorum(self._node_id, self.replicas.members())
            acked = await self.replicas.gather(
                quorum, WRITE_METHOD, write_request(delta), lambda peer, _: quorum.ack(peer), timeout)
            if not acked:
                raise quorum.error(key, timeout)
            doc.update(consistency=MAJORITY, acks=len(quorum.answered), members=quorum.members)
        return doc

    async def delete(self, key: str) -> dict:
        """Delete ``key``: a tombstone that syncs like a write and beats every older write of it.

        Returns once the tombstone is durable here. Peers forget it (``SyncCore.collect_garbage``)
        once every member holds it.
        """
        check_key(key)
        async with self._lock:
            self._check_usable()
            parts = self._map.entries(counters.counter_prefix(key))  # a counter: every writer's entry
            existed = key in self._map or bool(parts)
            deltas = []
            for entry_key in [key] if not parts else [e.key for e in parts]:
                ts = self._clock.now(wall_ms())
                deltas.append(self._map.delete(entry_key, ts))
            await self._save([e for d in deltas for e in d.entries], ts)
            for delta in deltas:
                self._core.local_write(delta, trio.current_time())
        self._wake.set()
        return {"key": key, "deleted": True, "existed": existed, "writer": self.writer, "hlc": list(ts.to_wire())}

    async def incr(self, key: str, by: int = 1) -> dict:
        """Add ``by`` (negative: subtract) to counter ``key``; returns the counter as this node sees it.

        A PN-counter over per-writer entries (``mesh/sensor_counters.py``):
        increments on many nodes at once all count, offline too.
        """
        check_key(key)
        sub = counters.counter_key(key, self.writer)
        async with self._lock:
            self._check_usable()
            if key in self._map:
                raise MeshError(f"crdt: {key!r} holds a value, not a counter; delete it first or count under another key")
            mine = self._map.get(sub)
            value = counters.step(mine.value if mine is not None else None, by)
            self._db.check_room(sub, len(json.dumps(value)))
            ts = self._clock.now(wall_ms())
            delta = self._map.put(sub, value, ts)
            await self._save(list(delta.entries), ts)
            self._core.local_write(delta, trio.current_time())
        self._wake.set()
        return self._counter(key)

    def _counter(self, key: str) -> dict | None:
        """Counter ``key`` as the API shows it, or None if no writer has counted under it."""
        parts = self._map.entries(counters.counter_prefix(key))
        return counter_to_json(key, parts) if parts else None

    def _relay_to(self, origin: str, peer: str) -> bool:
        return self.relay_to(origin, peer)

    def gc_members(self) -> list[str]:
        """The peers that must hold a tombstone before it is forgotten."""
        return sorted(peer for peer in self._members if self.admits(peer))

    async def collect_garbage(self) -> int:
        """Forget the tombstones every member holds (from the map and the file); returns how many."""
        members = self.gc_members()
        async with self._lock:
            if self.broken:
                return 0
            if self._members != self._members_saved:
                saved = set(self._members)
                await trio.to_thread.run_sync(self._db.save_members, sorted(saved))
                self._members_saved = saved
            gone = self._core.collect_garbage(members)
            if gone:
                try:
                    await trio.to_thread.run_sync(self._db.forget, gone)
                except Exception as exc:  # the rows stay on disk: harmless, they are collected next start
                    log.warning("crdt-store: could not remove %d collected tombstones from %s: %s",
                                len(gone), self._path.name, exc)
        return len(gone)

    def get(self, key: str, consistency: str = "local") -> dict | None:
        """The current entry for ``key`` on this node, or None (a majority read is ``read``)."""
        if check_level(consistency) == MAJORITY:
            raise MeshError("crdt: a majority read waits for peers; use `await state.read(key, "
                            "consistency='majority')`")
        entry = self._map.get(key)
        if entry is None:
            return self._counter(key) if isinstance(key, str) and key else None
        return entry_to_json(entry)

    async def read(self, key: str, *, consistency: str = "local", timeout: float = DEFAULT_TIMEOUT) -> dict | None:
        """The entry for ``key``: this node's (``local``), or the newest among a majority (``majority``).

        A majority read applies the winner here (read repair, persisted) before
        returning it, and raises ``QuorumNotReached`` if too few members answer.
        """
        level, timeout = check_level(consistency), check_timeout(timeout)
        if level != MAJORITY:
            return self.get(key)
        quorum = ReadQuorum(self._node_id, self.replicas.members(), self._map.get(key))
        answered = await self.replicas.gather(
            quorum, READ_METHOD, read_request(key),
            lambda peer, body: quorum.answer(peer, read_read_answer(body, key)), timeout)
        if not answered:
            raise quorum.error(key, timeout)
        repair = quorum.repair
        if repair is not None:
            await self._apply(quorum.source, repair)
        doc = self.get(key)
        if doc is not None:
            doc.update(consistency=MAJORITY, answers=len(quorum.answered), members=quorum.members)
        return doc

    def list(self, prefix: str = "") -> list[dict]:
        """Entries whose key starts with ``prefix``, counters among them, sorted by key."""
        rows = [entry_to_json(e) for e in self._map.entries(prefix) if not e.key.startswith(counters.PREFIX)]
        grouped = counters.group(self._map.entries(counters.PREFIX + prefix))
        rows += [counter_to_json(key, parts) for key, parts in grouped.items() if key.startswith(prefix)]
        return sorted(rows, key=lambda row: row["key"])

    def __len__(self) -> int:
        return len(self._map)

    # -- peers -----------------------------------------------------------------

    def peer_up(self, peer: str) -> None:
        """A peer joined or came back: schedule a digest exchange with it."""
        self._core.add_peer(peer, trio.current_time())
        self._members.add(peer)
        self._wake.set()

    def peer_down(self, peer: str) -> None:
        """A peer left."""
        self._core.remove_peer(peer)
        self._peers.pop(peer, None)

    async def receive(self, peer: str, body: Any) -> None:
        """A sync message from a peer (validated by the core's codec)."""
        try:
            msg = decode_message(body)
        except MeshError:
            self.stats["bad_messages"] += 1
            raise
        figures = self._peer(peer)
        figures[2] += 1
        figures[3] = time.monotonic()
        await self._apply(peer, msg)

    async def _apply(self, peer: str, msg) -> None:
        """Feed a decoded message to the core and persist what changed (sync, majority writes, read repair)."""
        async with self._lock:
            self._check_usable()
            changed = self._core.receive(peer, msg, trio.current_time())
            self.stats["received"] += 1
            if changed:
                now_wall = wall_ms()
                for entry in changed:
                    self._clock.observe(entry.ts, now_wall)
                await self._save(list(changed), self._clock.last)
        self._wake.set()

    async def on_write(self, peer: str, body: Any) -> dict:
        """``crdt.write``: a peer's majority write; answered only once it is persisted here."""
        try:
            msg = read_write_request(body)
        except MeshError:
            self.stats["bad_messages"] += 1
            raise
        await self._apply(peer, msg)
        return {"ok": True}

    async def on_read(self, peer: str, body: Any) -> dict:
        """``crdt.read``: our entry for a key, for a peer's majority read."""
        try:
            key = read_read_request(body)
        except MeshError:
            self.stats["bad_messages"] += 1
            raise
        return read_answer(self._map.get(key))

    def _check_usable(self) -> None:
        if self.broken:
            raise MeshError(f"crdt-store: {self.broken}; restart the node to recover from its file")

    async def _save(self, entries: list[Entry], clock) -> None:
        """Persist, or stop: memory ahead of disk would later save a context claiming entries it lost."""
        try:
            await trio.to_thread.run_sync(self._db.save, entries, self._map.context, clock)
        except Exception as exc:
            if is_disk_full(exc) and await self._reload():
                message = (f"crdt-store: the disk of {self._path.name} is full ({exc}); the change was not "
                           "stored and nothing changed. Free disk space; stored writes are kept")
                log.error("%s", message)
                raise StoreFull(message) from exc
            self.broken = f"writing {self._path.name} failed ({exc}); the store is read-only"
            log.error("crdt-store: %s", self.broken)
            raise MeshError(f"crdt-store: {self.broken}") from exc

    async def _reload(self) -> bool:
        """Go back to what the file holds (a save found no disk space); False if even that fails.

        Safe because nothing left since memory changed (``outgoing`` waits for
        ``_lock``): no acknowledged write is dropped and no dot anyone saw is reused.
        """
        try:
            entries, context, _ = await trio.to_thread.run_sync(self._db.load)
        except Exception:
            return False
        peers = self._core.peers()
        self._map = LWWMap.restore(self.writer, entries, context) if context is not None else LWWMap(self.writer)
        self._core = SyncCore(self._map, interval=self._core.interval, relay_to=self._relay_to)
        for peer in peers:
            self._core.add_peer(peer, trio.current_time())
        return True

    def limit_store(self, max_store_mb: float, min_free_mb: float) -> None:
        """Bound local writes: at most ``max_store_mb`` stored, at least ``min_free_mb`` left on the disk."""
        self._db.max_bytes, self._db.min_free = int(max_store_mb * MB), int(min_free_mb * MB)

    async def run(self, send: Callable[[str, dict], Any], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Drive the sync core until cancelled; ``send(peer, msg)`` delivers a message."""
        task_status.started()
        collect_at = trio.current_time() + GC_EVERY
        while True:
            if trio.current_time() >= collect_at:
                collect_at = trio.current_time() + GC_EVERY
                await self.collect_garbage()
            self._wake = trio.Event()  # before outgoing(): a write during the sends wakes the next round
            due: dict[str, list] = {}
            if not self.broken:
                async with self._lock:
                    for peer, msg in self._core.outgoing(trio.current_time()):
                        due.setdefault(peer, []).append(encode_message(msg))
            # One task per peer: a hung peer must not delay everybody else's sync.
            async with trio.open_nursery() as nursery:
                for peer, msgs in due.items():
                    nursery.start_soon(self._send_all, send, peer, msgs)
            deadline = self._core.next_deadline()
            timeout = 1.0 if deadline is None else max(0.01, deadline - trio.current_time())
            with trio.move_on_after(min(timeout, 1.0)):
                await self._wake.wait()

    def _peer(self, peer: str) -> list:
        """[bytes sent, messages sent, messages received, monotonic time last heard or None] for ``peer``."""
        return self._peers.setdefault(peer, [0, 0, 0, None])

    async def _send_all(self, send, peer: str, msgs: list[dict]) -> None:
        for msg in msgs:
            try:
                sent = await send(peer, msg)
                self.stats["sent"] += 1
                figures = self._peer(peer)
                figures[0] += sent if isinstance(sent, int) else 0
                figures[1] += 1
            except MeshError as exc:
                self.stats["send_errors"] += 1
                log.debug("sync to %s failed: %s", peer, exc)
                return

    def statistics(self) -> dict:
        """Counters for status and metrics."""
        now = time.monotonic()
        peers = {peer: {"bytes_sent": f[0], "messages_sent": f[1], "messages_received": f[2],
                        "last_heard_s": None if f[3] is None else round(now - f[3], 3)}
                 for peer, f in sorted(self._peers.items())}
        return dict(self.stats, keys=len(self._map), tombstones=self._map.tombstone_count,
                    writer=self.writer, broken=self.broken, store=self._db.usage(),
                    core=self._core.statistics(), peers=peers)

    def close(self) -> None:
        """Close the SQLite file."""
        self._db.close()
