"""Sensor state on a real SQLite file: durability, corruption handling, sync between two stores."""

from __future__ import annotations

import sqlite3

import pytest
import trio

from crdt.errors import MeshError, RemoteProtocolError
from mesh.sensor_db import SensorDB, StoreCorrupt
from mesh.sensors import SensorState


def test_put_is_on_disk_before_it_returns(tmp_path):
    async def main():
        store = SensorState("node-a", tmp_path / "s.sqlite", interval=0.5)
        entry = await store.put("kitchen/temp", 21.5)
        assert entry["value"] == 21.5 and entry["writer"] == "node-a"
        # A second connection sees the committed row while the first is still open.
        rows = sqlite3.connect(tmp_path / "s.sqlite").execute("SELECT key, value FROM entries").fetchall()
        assert rows == [("kitchen/temp", "21.5")]
        store.close()

    trio.run(main)


def test_reopen_keeps_entries_and_clock(tmp_path):
    async def main():
        store = SensorState("node-a", tmp_path / "s.sqlite", interval=0.5)
        await store.put("a", {"x": [1, 2]})
        first = await store.put("b", "text")
        store.close()
        again = SensorState("node-a", tmp_path / "s.sqlite", interval=0.5)
        assert again.get("a")["value"] == {"x": [1, 2]}
        later = await again.put("b", "newer")
        assert later["hlc"] > first["hlc"]
        assert [e["key"] for e in again.list()] == ["a", "b"]
        again.close()

    trio.run(main)


def test_bad_keys_and_values_are_refused(tmp_path):
    async def main():
        store = SensorState("n", tmp_path / "s.sqlite", interval=0.5)
        with pytest.raises(MeshError, match="key must be"):
            await store.put("", 1)
        with pytest.raises(MeshError, match="not JSON-serialisable"):
            await store.put("k", object())
        with pytest.raises(MeshError, match="limit"):
            await store.put("k", "x" * 100_000)
        assert len(store) == 0
        store.close()

    trio.run(main)


def test_corrupt_file_is_detected_moved_aside_and_a_new_writer_is_used(tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(StoreCorrupt, match="s.sqlite"):
        SensorDB(path)

    async def main():
        store = SensorState("node-a", path, interval=0.5)
        assert "s.sqlite" in store.corrupt_notice and store.writer == "node-a~1"
        assert (await store.put("k", 1))["writer"] == "node-a~1"
        assert list(tmp_path.glob("s.sqlite.corrupt-*"))
        store.close()

    trio.run(main)


def test_two_stores_converge_through_their_sync_messages(tmp_path):
    async def main():
        a = SensorState("a", tmp_path / "a.sqlite", interval=0.05)
        b = SensorState("b", tmp_path / "b.sqlite", interval=0.05)
        stores = {"a": a, "b": b}

        def sender(src):
            async def send(peer, msg):
                await stores[peer].receive(src, msg)

            return send

        async with trio.open_nursery() as nursery:
            await nursery.start(a.run, sender("a"))
            await nursery.start(b.run, sender("b"))
            await a.put("only-a", 1)
            a.peer_up("b")
            b.peer_up("a")
            await b.put("only-b", 2)
            with trio.fail_after(5):
                while len(a) < 2 or len(b) < 2:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert a.list() == b.list()
        a.close()
        b.close()
        # What b learned from a is durable too.
        reopened = SensorState("b", tmp_path / "b.sqlite", interval=0.05)
        assert reopened.get("only-a")["value"] == 1
        reopened.close()

    trio.run(main)


def test_malformed_sync_message_is_refused_and_counted(tmp_path):
    async def main():
        store = SensorState("n", tmp_path / "s.sqlite", interval=0.5)
        with pytest.raises(RemoteProtocolError):
            await store.receive("peer", {"t": "delta", "v": 99})
        assert store.statistics()["bad_messages"] == 1
        store.close()

    trio.run(main)
