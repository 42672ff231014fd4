"""Counters in sensor state: a PN-counter over per-writer entries (mesh/sensor_counters.py)."""

from __future__ import annotations

import pytest
import trio

from crdt import Dot, Entry, LWWMap, Timestamp
from crdt.errors import MeshError
from mesh import sensor_counters as counters
from mesh.sensors import SensorState


def writer_entry(key: str, writer: str, value, wall: int = 1, deleted: bool = False) -> Entry:
    return Entry(key=counters.counter_key(key, writer), value=value, ts=Timestamp(wall, 0, writer),
                 dot=Dot(writer, wall), deleted=deleted)


def test_keys_round_trip_and_ordinary_keys_are_not_counters():
    sub = counters.counter_key("site/visitors", "12D3KooWA~1")
    assert counters.parse(sub) == ("site/visitors", "12D3KooWA~1")
    assert counters.parse("site/visitors") is None and counters.parse(counters.PREFIX + "x") is None
    assert sub.startswith(counters.counter_prefix("site/visitors"))
    assert not counters.counter_key("site/vis", "w").startswith(counters.counter_prefix("site/visitors"))


def test_steps_add_to_p_and_subtractions_to_n():
    assert counters.step(None, 3) == [3, 0]
    assert counters.step([3, 0], -5) == [3, 5]
    for bad in (0, 1.5, True, "1", 2**60):
        with pytest.raises(MeshError, match="counter step"):
            counters.step([0, 0], bad)


def test_value_sums_writers_and_skips_tombstones_and_garbage_from_peers():
    parts = [writer_entry("k", "a", [5, 1]), writer_entry("k", "b", [2, 0]), writer_entry("k", "c", None, deleted=True),
             writer_entry("k", "d", "lots"), writer_entry("k", "e", [-1, 0]), writer_entry("k", "f", [1, 2, 3])]
    assert counters.value_of(parts) == (6, 2)


def test_concurrent_increments_on_three_replicas_all_count_in_any_merge_order():
    maps = {n: LWWMap(n) for n in "abc"}
    steps = {"a": [1, 1, 1], "b": [5, -2], "c": [-1]}
    for node, deltas in steps.items():
        value = None
        for i, by in enumerate(deltas, 1):
            value = counters.step(value, by)
            maps[node].put(counters.counter_key("k", node), value, Timestamp(i, 0, node))
    for order in ("abc", "cba", "bca"):
        merged = LWWMap("z")
        for node in order:
            merged.merge(maps[node])
            merged.merge(maps[node])  # idempotent
        assert counters.value_of(merged.entries(counters.counter_prefix("k"))) == (5, 3)


def test_a_store_counts_survives_a_restart_and_keeps_counters_apart_from_values(tmp_path):
    async def main():
        store = SensorState("a", tmp_path / "s.sqlite", interval=0.5)
        assert (await store.incr("door/opened"))["value"] == 1
        assert (await store.incr("door/opened", 4))["value"] == 5
        doc = await store.incr("door/opened", -2)
        assert doc["value"] == 3 and doc["type"] == "counter" and doc["writers"] == 1
        await store.put("door/label", "front")
        assert [(r["key"], r["value"]) for r in store.list("door/")] == [("door/label", "front"), ("door/opened", 3)]
        with pytest.raises(MeshError, match="holds a value, not a counter"):
            await store.incr("door/label")
        with pytest.raises(MeshError, match="must not contain NUL"):
            await store.put("bad\x00key", 1)
        store.close()
        again = SensorState("a", tmp_path / "s.sqlite", interval=0.5)
        assert again.get("door/opened")["value"] == 3
        await again.delete("door/opened")
        assert again.get("door/opened") is None and [r["key"] for r in again.list("door/")] == ["door/label"]
        assert (await again.incr("door/opened"))["value"] == 1  # counting again after a delete starts over
        again.close()

    trio.run(main)
