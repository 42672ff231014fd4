"""Sensor state on disk: one SQLite file in WAL mode, fsynced before a write is acknowledged.

Rows are the CRDT's entries (key, JSON value, HLC timestamp, dot) plus one meta
row each for the causal context and the clock's last timestamp, written in the
same transaction as the entries they cover. ``synchronous=FULL`` makes every
commit durable, so an entry acknowledged to a client survives ``kill -9``.

Damage is detected at open and never served (``StoreCorrupt``):

- the file's structure by SQLite's ``quick_check``;
- the rows' contents by a CRC-32 per row (SQLite has no page checksums, so a
  flipped byte inside a value would otherwise be read back as a wrong value);
- a file that vanished or was truncated to nothing (SQLite would take it for a
  new, empty database) by a ``store`` meta row written when the file is
  created, checked whenever the node's epoch file says a store existed here.

The node then moves the file aside and re-syncs from its peers.

The file is bounded (``check_room``, before a local write changes anything):
a node cut off from its peers keeps taking writes — they wait in this file
until the digest exchange hands them over — but only up to ``max_bytes`` of
rows and while ``min_free`` bytes of disk stay free. Beyond the size limit new
keys are refused and overwrites still pass if they do not grow the value past
``OVERWRITE_ROOM`` bytes (a row replaced in place: a device keeps reporting its
current readings); the disk floor refuses every local write. Entries from
peers are never refused by the limit (that would stop convergence). A real
disk-full error during a save is ``StoreFull`` too (see ``is_disk_full``).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sqlite3
import threading
import zlib
from pathlib import Path

import msgpack

from crdt import CausalContext, Dot, Entry, Timestamp
from crdt.errors import MeshError

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    ts BLOB NOT NULL,
    dot_node TEXT NOT NULL,
    dot_counter INTEGER NOT NULL,
    crc INTEGER
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL, crc INTEGER);
"""
STORE_MARK = b"meshnode sensor store v1"
MB = 1024 * 1024
OVERWRITE_ROOM = 64  # bytes an overwrite may grow a value to when the store is full


class StoreCorrupt(MeshError):
    """The sensor-state file failed its integrity check."""


class StoreFull(MeshError):
    """A local write was refused (store at its size limit, or the disk at its floor); nothing changed."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether a failed save ran out of disk (SQLITE_FULL, or ENOSPC/EDQUOT from the OS)."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _crc(*fields: str | bytes | int) -> int:
    """CRC-32 over a row's fields (each length-prefixed, so moved bytes change it too)."""
    crc = 0
    for f in fields:
        raw = f if isinstance(f, bytes) else str(f).encode()
        crc = zlib.crc32(len(raw).to_bytes(4, "big") + raw, crc)
    return crc


def _entry_row(e: Entry) -> tuple:
    # A tombstone's value is the empty string, which no JSON value encodes to.
    value, ts = ("" if e.deleted else json.dumps(e.value)), msgpack.packb(e.ts.to_wire())
    return e.key, value, ts, e.dot.node, e.dot.counter, _crc(e.key, value, ts, e.dot.node, e.dot.counter)


def read_epoch(path: Path) -> int | None:
    """The writer epoch in ``path`` (0 if absent), or None if the file is unreadable."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def write_epoch(path: Path, epoch: int) -> None:
    """Replace ``path`` with ``epoch``, durably (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(f"{epoch}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _locked(method):
    """Run ``method`` holding the store's lock; a closed store says so instead of touching a closed file."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            if self._db is None:
                raise MeshError(f"crdt-store: {self.path} is closed")
            return method(self, *args, **kwargs)
    return run


class SensorDB:
    """The SQLite file behind one node's sensor state (blocking; call from a worker thread).

    ``expect_store``: a store was created here before (the node's epoch file
    exists), so a missing, empty or unmarked file is damage, not a first start.
    """

    def __init__(self, path: Path, *, expect_store: bool = False,
                 max_bytes: int = 1024 * MB, min_free: int = 64 * MB) -> None:
        self.path = path
        self.max_bytes, self.min_free = max_bytes, min_free
        if expect_store and (not path.exists() or path.stat().st_size == 0):
            state = "is missing" if not path.exists() else "is empty (truncated to 0 bytes)"
            raise StoreCorrupt(f"crdt-store: {path} {state}, but this node kept its sensor state there")
        self._db = None
        # Saves run on worker threads; closing the connection while one runs crashed the process (SQLite
        # is not safe against a close from another thread mid-statement): every use holds this lock.
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            verdict = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise StoreCorrupt(f"crdt-store: {path} failed its integrity check: {verdict}")
            tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            marked = "meta" in tables and self._db.execute(
                "SELECT 1 FROM meta WHERE name='store'").fetchone() is not None
            if expect_store and not marked and "entries" not in tables:
                raise StoreCorrupt(f"crdt-store: {path} holds no sensor store (emptied or replaced), "
                                   "but this node kept its sensor state there")
            self._db.executescript(SCHEMA)
            self._upgrade(tables)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreCorrupt(f"crdt-store: {path} is not a readable SQLite database: {exc}") from exc
        except StoreCorrupt:
            self.close()
            raise

    def _upgrade(self, tables: set[str]) -> None:
        """Add what older files lack: the crc columns (rows trusted once) and the store mark."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for table in ("entries", "meta"):
                if "crc" not in {row[1] for row in cur.execute(f"PRAGMA table_info({table})")}:
                    cur.execute(f"ALTER TABLE {table} ADD COLUMN crc INTEGER")
            for key, value, ts, node, counter in cur.execute(
                    "SELECT key, value, ts, dot_node, dot_counter FROM entries WHERE crc IS NULL").fetchall():
                cur.execute("UPDATE entries SET crc=? WHERE key=?", (_crc(key, value, ts, node, counter), key))
            for name, value in cur.execute("SELECT name, value FROM meta WHERE crc IS NULL").fetchall():
                cur.execute("UPDATE meta SET crc=? WHERE name=?", (_crc(name, value), name))
            cur.execute("INSERT OR IGNORE INTO meta (name, value, crc) VALUES ('store', ?, ?)",
                        (STORE_MARK, _crc("store", STORE_MARK)))
            cur.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL does)
                cur.execute("ROLLBACK")
            raise

    @_locked
    def usage(self) -> dict:
        """Bytes the store holds and bytes free on its disk.

        ``store_bytes`` counts the database's live pages (its logical size, WAL
        included); the WAL file itself is transient, checkpointed at ~4 MB.
        """
        page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free_pages = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        wal = self.path.with_name(self.path.name + "-wal")
        disk = os.statvfs(self.path.parent)
        return {"store_bytes": (pages - free_pages) * page_size,
                "wal_bytes": wal.stat().st_size if wal.exists() else 0,
                "disk_free_bytes": disk.f_bavail * disk.f_frsize,
                "max_store_bytes": self.max_bytes, "min_free_bytes": self.min_free}

    @_locked
    def check_room(self, key: str, size: int) -> None:
        """Refuse (``StoreFull``) a local write of ``size`` value bytes to ``key`` that the bounds do not allow."""
        use = self.usage()
        name = self.path.name
        if use["disk_free_bytes"] - size < self.min_free:
            raise StoreFull(
                f"crdt-store: the disk of {name} is full: {use['disk_free_bytes'] / MB:.1f} MB free, "
                f"sync.min_free_mb is {self.min_free / MB:g}; the write of {key!r} was refused and nothing "
                "changed. Free disk space (or lower sync.min_free_mb in node.yaml); stored writes are kept"
            )
        if use["store_bytes"] + size <= self.max_bytes:
            return
        row = self._db.execute("SELECT length(value) FROM entries WHERE key=?", (key,)).fetchone()
        if row is not None and size <= max(row[0], OVERWRITE_ROOM):
            return  # replaced in place: the store does not grow
        raise StoreFull(
            f"crdt-store: {name} is full: {use['store_bytes'] / MB:.1f} MB of sync.max_store_mb "
            f"{self.max_bytes / MB:g}; the write of {'new key ' if row is None else ''}{key!r} was refused and "
            "nothing changed. Overwrites of existing keys still work; raise sync.max_store_mb in node.yaml "
            "and restart to store more; stored writes are kept and sync when peers are reachable"
        )

    @_locked
    def load(self) -> tuple[list[Entry], CausalContext | None, Timestamp | None]:
        """Every stored entry, the causal context and the clock's last timestamp (each row's CRC checked)."""
        try:
            entries = []
            for key, value, ts, dot_node, dot_counter, crc in self._db.execute(
                "SELECT key, value, ts, dot_node, dot_counter, crc FROM entries"
            ):
                if crc != _crc(key, value, ts, dot_node, dot_counter):
                    raise StoreCorrupt(f"crdt-store: {self.path}: the row of key {key!r} fails its checksum")
                entries.append(Entry(
                    key=key,
                    value=None if value == "" else json.loads(value),
                    ts=Timestamp.from_wire(msgpack.unpackb(ts)),
                    dot=Dot(node=dot_node, counter=dot_counter),
                    deleted=value == "",
                ))
            meta = {}
            for name, value, crc in self._db.execute("SELECT name, value, crc FROM meta"):
                if crc != _crc(name, value):
                    raise StoreCorrupt(f"crdt-store: {self.path}: the meta row {name!r} fails its checksum")
                meta[name] = value
            context = CausalContext.from_wire(msgpack.unpackb(meta["context"])) if "context" in meta else None
            last = Timestamp.from_wire(msgpack.unpackb(meta["clock"])) if "clock" in meta else None
        except StoreCorrupt:
            raise
        except (sqlite3.DatabaseError, ValueError, TypeError, MeshError) as exc:
            raise StoreCorrupt(f"crdt-store: {self.path} holds unreadable rows: {exc}") from exc
        return entries, context, last

    @_locked
    def save(self, entries: list[Entry], context: CausalContext, clock: Timestamp | None) -> None:
        """Write entries and metadata in one durable transaction."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.executemany(
                "INSERT OR REPLACE INTO entries (key, value, ts, dot_node, dot_counter, crc) VALUES (?, ?, ?, ?, ?, ?)",
                [_entry_row(e) for e in entries],
            )
            meta = [("context", msgpack.packb(context.to_wire()))]
            if clock is not None:
                meta.append(("clock", msgpack.packb(clock.to_wire())))
            cur.executemany(
                "INSERT OR REPLACE INTO meta (name, value, crc) VALUES (?, ?, ?)",
                [(name, value, _crc(name, value)) for name, value in meta],
            )
            cur.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL does)
                cur.execute("ROLLBACK")
            raise

    @_locked
    def load_members(self) -> list[str]:
        """The peers this store has synced with (``save_members``); [] if none saved or the row is damaged."""
        row = self._db.execute("SELECT value, crc FROM meta WHERE name='members'").fetchone()
        if row is None or row[1] != _crc("members", row[0]):
            return []
        members = msgpack.unpackb(row[0])
        return [m for m in members if isinstance(m, str)] if isinstance(members, list) else []

    @_locked
    def save_members(self, members: list[str]) -> None:
        """Remember the peers this store has synced with (tombstones wait for all of them)."""
        value = msgpack.packb(members)
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta (name, value, crc) VALUES ('members', ?, ?)",
                             (value, _crc("members", value)))

    @_locked
    def forget(self, tombstones: list[Entry]) -> None:
        """Remove collected tombstones (only rows still holding exactly those writes)."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.executemany(
                "DELETE FROM entries WHERE key=? AND dot_node=? AND dot_counter=? AND value=''",
                [(e.key, e.dot.node, e.dot.counter) for e in tombstones],
            )
            cur.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                cur.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the file (after a save running on another thread has finished)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
