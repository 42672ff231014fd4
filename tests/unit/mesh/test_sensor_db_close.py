"""A sensor store closed while a worker thread saves waits for the save; a save after close says so."""

from __future__ import annotations

import threading

import pytest

from crdt import HybridLogicalClock, LWWMap
from crdt.errors import MeshError
from mesh.sensor_db import SensorDB


def test_close_waits_for_a_save_on_another_thread_and_later_saves_are_refused(tmp_path):
    db = SensorDB(tmp_path / "s.sqlite")
    replica, clock = LWWMap("w"), HybridLogicalClock("w")
    batches = []
    for i in range(200):
        delta = replica.put(f"k{i}", "x" * 200, clock.now(1_000 + i))
        batches.append(list(delta.entries))
    errors: list[BaseException] = []

    def saver():
        try:
            for entries in batches:
                db.save(entries, replica.context, clock.last)
        except MeshError as exc:  # closed under it: the refusal, never a crash
            errors.append(exc)

    worker = threading.Thread(target=saver)
    worker.start()
    db.close()  # from this thread, while the worker saves (SQLite used to crash the process here)
    worker.join(30)
    assert not worker.is_alive()
    assert all("is closed" in str(e) for e in errors)
    with pytest.raises(MeshError, match="is closed"):
        db.save(batches[0], replica.context, clock.last)
    reopened = SensorDB(tmp_path / "s.sqlite", expect_store=True)
    entries, _, _ = reopened.load()  # what was saved before the close is whole
    assert all(e.value == "x" * 200 for e in entries)
    reopened.close()
