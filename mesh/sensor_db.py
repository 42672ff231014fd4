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
"""

from __future__ import annotations

import json
import os
import sqlite3
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


class StoreCorrupt(MeshError):
    """The sensor-state file failed its integrity check."""


def _crc(*fields: str | bytes | int) -> int:
    """CRC-32 over a row's fields (each length-prefixed, so moved bytes change it too)."""
    crc = 0
    for f in fields:
        raw = f if isinstance(f, bytes) else str(f).encode()
        crc = zlib.crc32(len(raw).to_bytes(4, "big") + raw, crc)
    return crc


def _entry_row(e: Entry) -> tuple:
    value, ts = json.dumps(e.value), msgpack.packb(e.ts.to_wire())
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


class SensorDB:
    """The SQLite file behind one node's sensor state (blocking; call from a worker thread).

    ``expect_store``: a store was created here before (the node's epoch file
    exists), so a missing, empty or unmarked file is damage, not a first start.
    """

    def __init__(self, path: Path, *, expect_store: bool = False) -> None:
        self.path = path
        if expect_store and (not path.exists() or path.stat().st_size == 0):
            state = "is missing" if not path.exists() else "is empty (truncated to 0 bytes)"
            raise StoreCorrupt(f"crdt-store: {path} {state}, but this node kept its sensor state there")
        self._db = None
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
                    value=json.loads(value),
                    ts=Timestamp.from_wire(msgpack.unpackb(ts)),
                    dot=Dot(node=dot_node, counter=dot_counter),
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

    def close(self) -> None:
        """Close the file."""
        if self._db is not None:
            self._db.close()
            self._db = None
