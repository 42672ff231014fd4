"""Sensor state on disk: one SQLite file in WAL mode, fsynced before a write is acknowledged.

Rows are the CRDT's entries (key, JSON value, HLC timestamp, dot) plus one meta
row each for the causal context and the clock's last timestamp, written in the
same transaction as the entries they cover. ``synchronous=FULL`` makes every
commit durable, so an entry acknowledged to a client survives ``kill -9``.

At open the file is integrity-checked; a corrupt or truncated database is
reported (``StoreCorrupt``) and never served. The node then moves it aside and
re-syncs from its peers.
"""

from __future__ import annotations

import json
import sqlite3
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
    dot_counter INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


class StoreCorrupt(MeshError):
    """The sensor-state file failed its integrity check."""


class SensorDB:
    """The SQLite file behind one node's sensor state (blocking; call from a worker thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            verdict = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise StoreCorrupt(f"crdt-store: {path} failed its integrity check: {verdict}")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(f"crdt-store: {path} is not a readable SQLite database: {exc}") from exc

    def load(self) -> tuple[list[Entry], CausalContext | None, Timestamp | None]:
        """Every stored entry, the causal context and the clock's last timestamp."""
        try:
            entries = [
                Entry(
                    key=key,
                    value=json.loads(value),
                    ts=Timestamp.from_wire(msgpack.unpackb(ts)),
                    dot=Dot(node=dot_node, counter=dot_counter),
                )
                for key, value, ts, dot_node, dot_counter in self._db.execute(
                    "SELECT key, value, ts, dot_node, dot_counter FROM entries"
                )
            ]
            meta = dict(self._db.execute("SELECT name, value FROM meta"))
            context = CausalContext.from_wire(msgpack.unpackb(meta["context"])) if "context" in meta else None
            last = Timestamp.from_wire(msgpack.unpackb(meta["clock"])) if "clock" in meta else None
        except (sqlite3.DatabaseError, ValueError, MeshError) as exc:
            raise StoreCorrupt(f"crdt-store: {self.path} holds unreadable rows: {exc}") from exc
        return entries, context, last

    def save(self, entries: list[Entry], context: CausalContext, clock: Timestamp | None) -> None:
        """Write entries and metadata in one durable transaction."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.executemany(
                "INSERT OR REPLACE INTO entries (key, value, ts, dot_node, dot_counter) VALUES (?, ?, ?, ?, ?)",
                [
                    (e.key, json.dumps(e.value), msgpack.packb(e.ts.to_wire()), e.dot.node, e.dot.counter)
                    for e in entries
                ],
            )
            cur.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('context', ?)",
                (msgpack.packb(context.to_wire()),),
            )
            if clock is not None:
                cur.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES ('clock', ?)",
                    (msgpack.packb(clock.to_wire()),),
                )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the file."""
        self._db.close()
