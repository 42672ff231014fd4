"""A damaged sensor-state file is detected, reported and never served (issue 5).

Rule: "a corrupt or truncated database is detected and reported, and the node
re-syncs from peers instead of serving garbage." SQLite's quick_check finds
structural damage; the per-row CRC finds a changed value (SQLite has no page
checksums); the store mark plus the epoch file find a file that vanished or
was truncated to nothing (which SQLite would open as a new, empty database).
"""

from __future__ import annotations

import sqlite3

import pytest
import trio

from mesh.sensor_db import SensorDB, StoreCorrupt
from mesh.sensors import SensorState

N = 60


def _value(i: int) -> dict:
    return {"reading": i, "label": f"value-{i:03d}"}


@pytest.fixture
def filled(tmp_path):
    """A closed store of N entries; returns its path."""
    path = tmp_path / "sensors.sqlite"

    async def fill():
        store = SensorState("node-a", path, interval=0.5)
        for i in range(N):
            await store.put(f"k{i}", _value(i))
        store.close()

    trio.run(fill)
    assert not path.with_name(path.name + "-wal").exists()  # checkpointed at close: the bytes are all here
    return path


def _reopen(path):
    """SensorState on ``path``: (store, its entries as a dict)."""
    store = SensorState("node-a", path, interval=0.5)
    return store, {e["key"]: e["value"] for e in store.list()}


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.5, 0.8, 0.999])
def test_truncated_file_is_detected_and_nothing_of_it_served(filled, keep):
    size = filled.stat().st_size
    with open(filled, "r+b") as f:
        f.truncate(int(size * keep))
    store, served = _reopen(filled)
    assert served == {}, "a truncated store must not be served"
    assert "sensors.sqlite" in store.corrupt_notice and store.writer == "node-a~1"
    store.close()


def test_changed_value_bytes_fail_the_row_checksum(filled):
    raw = filled.read_bytes()
    at = raw.index(b"value-042")
    filled.write_bytes(raw[:at] + b"value-942" + raw[at + 9:])  # still valid JSON, still a valid page
    with pytest.raises(StoreCorrupt, match="'k42' fails its checksum"):
        SensorDB(filled).load()
    store, served = _reopen(filled)
    assert served == {} and "k42" in store.corrupt_notice
    store.close()


def test_overwritten_header_is_detected(filled):
    raw = filled.read_bytes()
    filled.write_bytes(raw[:16] + b"\xa5" * 64 + raw[80:])
    with pytest.raises(StoreCorrupt, match="not a readable SQLite database"):
        SensorDB(filled)


def test_vanished_file_is_damage_not_a_first_start(filled, caplog):
    filled.unlink()
    store, served = _reopen(filled)
    assert served == {} and "is missing" in store.corrupt_notice
    assert store.writer == "node-a~1"  # the old counters are gone: writing as node-a would reuse dots
    assert any("sensors.sqlite is missing" in r.getMessage() for r in caplog.records)
    store.close()


def test_the_damaged_file_is_kept_aside_and_the_new_store_works(filled):
    with open(filled, "r+b") as f:
        f.truncate(filled.stat().st_size // 2)

    async def main():
        store = SensorState("node-a", filled, interval=0.5)
        entry = await store.put("k1", "fresh")
        assert entry["writer"] == "node-a~1"
        store.close()
        again = SensorState("node-a", filled, interval=0.5)  # the new file is healthy: no second epoch
        assert again.corrupt_notice == "" and again.writer == "node-a~1" and again.get("k1")["value"] == "fresh"
        again.close()

    trio.run(main)
    aside = list(filled.parent.glob("sensors.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].stat().st_size > 0


def test_unreadable_epoch_file_starts_a_fresh_writer(filled):
    filled.with_name("sensors.sqlite.epoch").write_text("garbage\n")
    store, served = _reopen(filled)
    assert served == {} and "unreadable" in store.corrupt_notice
    assert store.writer.startswith("node-a~") and int(store.writer.split("~")[1]) > 1_000_000
    store.close()


def test_a_file_from_before_the_checksums_is_upgraded_and_kept(tmp_path):
    path = tmp_path / "sensors.sqlite"

    async def fill():
        store = SensorState("node-a", path, interval=0.5)
        await store.put("old", 1)
        store.close()

    trio.run(fill)
    db = sqlite3.connect(path)  # what the previous schema looked like: no crc columns, no store mark
    db.executescript("""
        CREATE TABLE e2 AS SELECT key, value, ts, dot_node, dot_counter FROM entries;
        DROP TABLE entries; ALTER TABLE e2 RENAME TO entries;
        CREATE TABLE m2 AS SELECT name, value FROM meta WHERE name != 'store';
        DROP TABLE meta; ALTER TABLE m2 RENAME TO meta;
    """)
    db.close()
    path.with_name("sensors.sqlite.epoch").unlink()
    store, served = _reopen(path)
    assert served == {"old": 1} and store.corrupt_notice == "" and store.writer == "node-a"
    store.close()
    store, served = _reopen(path)  # now marked and checksummed
    assert served == {"old": 1} and store.corrupt_notice == ""
    store.close()
