"""The sensor-state file is bounded, and running out of room is a clear error that loses nothing (issue 5).

Rule: "a node cut off for an hour keeps accepting writes (queue bounded by
disk, with a clear error when full) and syncs them when it returns." Local
writes wait in SQLite until the digest exchange hands them over; the bound is
``sync.max_store_mb`` (new keys refused beyond it, overwrites that do not grow
a value still pass) and ``sync.min_free_mb`` of disk. A real disk-full error
during a save (SQLITE_FULL, ENOSPC) is the same clear error, and the store
goes back to what its file holds instead of turning read-only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

import mesh
from mesh.sensor_db import StoreFull
from mesh.sensors import SensorState

VALUE = "x" * 1000


def _fill_until_full(store: SensorState, prefix: str, limit: int = 2000) -> tuple[dict, StoreFull]:
    """Put new keys until a write is refused; returns (acknowledged, the error)."""

    async def main():
        acked = {}
        for i in range(limit):
            try:
                await store.put(f"{prefix}{i}", f"{i}:{VALUE}")
            except StoreFull as exc:
                return acked, exc
            acked[f"{prefix}{i}"] = f"{i}:{VALUE}"
        raise AssertionError(f"{limit} writes of 1 kB and still not full")

    return trio.run(main)


def _reopened(path) -> dict:
    store = SensorState("node-a", path, interval=0.5)
    try:
        return {e["key"]: e["value"] for e in store.list()}
    finally:
        store.close()


def test_beyond_max_store_new_keys_are_refused_clearly_and_nothing_changes(tmp_path):
    path = tmp_path / "sensors.sqlite"
    store = SensorState("node-a", path, interval=0.5)
    store.limit_store(max_store_mb=0.1, min_free_mb=0)
    acked, error = _fill_until_full(store, "k")
    message = str(error)
    assert message.startswith("crdt-store: sensors.sqlite is full") and "sync.max_store_mb" in message
    assert "new key" in message and "nothing changed" in message
    refused = f"k{len(acked)}"
    assert store.get(refused) is None and len(store) == len(acked)
    assert store.statistics()["broken"] == ""
    assert store.statistics()["store"]["store_bytes"] <= 0.1 * 1024 * 1024 + 2000

    async def overwrite():
        await store.put("k0", "small")  # shrinks: passes
        await store.put("k1", "y" * 60)  # grows, but within the overwrite room: passes
        with pytest.raises(StoreFull, match="is full"):
            await store.put("k2", "z" * 5000)  # grows a value past its old size: refused
        store.limit_store(max_store_mb=1, min_free_mb=0)
        await store.put(refused, "now there is room")

    trio.run(overwrite)
    acked.update({"k0": "small", "k1": "y" * 60, refused: "now there is room"})
    store.close()
    assert _reopened(path) == acked


def test_below_the_disk_floor_every_local_write_is_refused(tmp_path):
    store = SensorState("node-a", tmp_path / "sensors.sqlite", interval=0.5)
    store.limit_store(max_store_mb=1024, min_free_mb=10**9)  # more than any disk has free

    async def main():
        with pytest.raises(StoreFull, match=r"disk of sensors.sqlite is full.*sync.min_free_mb"):
            await store.put("k", 1)

    trio.run(main)
    assert len(store) == 0 and store.statistics()["broken"] == ""
    store.close()


def test_sqlite_full_during_a_save_is_the_clear_error_and_memory_goes_back_to_the_file(tmp_path):
    path = tmp_path / "sensors.sqlite"
    store = SensorState("node-a", path, interval=0.5)
    store.limit_store(max_store_mb=1024, min_free_mb=0)
    db = store._db._db
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0] + 8}")
    acked, error = _fill_until_full(store, "k")
    assert "disk of sensors.sqlite is full (" in str(error) and "nothing changed" in str(error)
    assert store.get(f"k{len(acked)}") is None and len(store) == len(acked)
    assert store.statistics()["broken"] == ""
    db.execute("PRAGMA max_page_count=1073741823")

    async def more():
        entry = await store.put("after", 1)
        assert entry["writer"] == "node-a"

    trio.run(more)
    store.close()
    assert _reopened(path) == dict(acked, after=1)


def test_a_full_store_still_takes_entries_from_peers(tmp_path):
    async def main():
        a = SensorState("a", tmp_path / "a.sqlite", interval=0.05)
        b = SensorState("b", tmp_path / "b.sqlite", interval=0.05)
        a.limit_store(max_store_mb=0.0001, min_free_mb=0)
        with pytest.raises(StoreFull):
            await a.put("mine", 1)
        await b.put("from-b", 2)
        stores = {"a": a, "b": b}

        def sender(src):
            async def send(peer, msg):
                await stores[peer].receive(src, msg)

            return send

        async with trio.open_nursery() as nursery:
            await nursery.start(a.run, sender("a"))
            await nursery.start(b.run, sender("b"))
            a.peer_up("b")
            b.peer_up("a")
            with trio.fail_after(5):
                while a.get("from-b") is None:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        a.close()
        b.close()

    trio.run(main)


TINY_DISK_SCRIPT = textwrap.dedent("""
    import json, os, sys, trio
    from pathlib import Path
    from mesh.sensor_db import StoreFull
    from mesh.sensors import SensorState

    mount = Path(sys.argv[1])
    filler = mount / "filler"
    filler.write_bytes(b"f" * 64 * 1024)
    path = mount / "sensors.sqlite"
    out = {"acked": {}}

    async def main():
        store = SensorState("node-a", path, interval=0.5)
        store.limit_store(max_store_mb=1024, min_free_mb=0)  # only the real disk stops it
        try:
            for i in range(10_000):
                try:
                    await store.put(f"k{i}", f"{i}:" + "v" * 2000)
                except StoreFull as exc:
                    out["error"] = str(exc)
                    break
                out["acked"][f"k{i}"] = f"{i}:" + "v" * 2000
            out["broken"] = store.statistics()["broken"]
            out["refused_absent"] = store.get(f"k{len(out['acked'])}") is None
            filler.unlink()
            await store.put("after", "freed")
            out["acked"]["after"] = "freed"
        finally:
            store.close()

    trio.run(main)
    again = SensorState("node-a", path, interval=0.5)
    got = {e["key"]: e["value"] for e in again.list()}
    again.close()
    out["lost"] = sorted(k for k, v in out["acked"].items() if got.get(k) != v)
    out["acked"] = len(out["acked"])
    print(json.dumps(out))
""")


def _why_no_tiny_disk() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if not shutil.which("unshare") or not shutil.which("mount"):
        return "util-linux unshare/mount not installed"
    return None


def test_a_real_full_disk_during_saves_is_the_clear_error_and_loses_nothing(tmp_path):
    """A 512 kB tmpfs, mounted in a private mount namespace only the child process sees."""
    reason = _why_no_tiny_disk()
    if reason:
        pytest.skip(reason)
    mount = tmp_path / "tiny"
    mount.mkdir()
    (tmp_path / "script.py").write_text(TINY_DISK_SCRIPT)
    shell = (f"mount -t tmpfs -o size=512k meshtiny {mount} && "
             f"exec {sys.executable} {tmp_path / 'script.py'} {mount}")
    repo = str(Path(mesh.__file__).resolve().parents[1])
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", shell], check=False,
                         capture_output=True, text=True, timeout=120, cwd=repo, env=dict(os.environ, PYTHONPATH=repo))
    if out.returncode != 0 and "mount" in out.stderr and "script.py" not in out.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "disk of sensors.sqlite is full (" in result["error"], result  # from the save, not the floor check
    assert result["broken"] == "" and result["refused_absent"] and result["lost"] == []
    assert result["acked"] > 10
