"""SensorState deletes: tombstones on disk, synced between real stores, collected once every member holds them."""

from __future__ import annotations

import trio

import pytest

from mesh.sensors import SensorState


def open_store(tmp_path, name: str = "a") -> SensorState:
    return SensorState(name, tmp_path / f"{name}.sqlite", interval=0.5)


def test_a_deleted_key_is_gone_and_stays_gone_across_a_restart(tmp_path):
    async def main():
        store = open_store(tmp_path)
        await store.put("cam/1/status", "online")
        await store.put("cam/2/status", "online")
        doc = await store.delete("cam/1/status")
        assert doc["deleted"] and doc["existed"]
        assert store.get("cam/1/status") is None and [d["key"] for d in store.list()] == ["cam/2/status"]
        assert (await store.delete("never/set"))["existed"] is False
        assert store.statistics()["tombstones"] == 2 and store.statistics()["keys"] == 1
        store.close()
        again = open_store(tmp_path)
        assert again.get("cam/1/status") is None and [d["key"] for d in again.list()] == ["cam/2/status"]
        assert again.statistics()["tombstones"] == 2
        await again.put("cam/1/status", "back")  # a newer write after a delete sets the key again
        assert again.get("cam/1/status")["value"] == "back"
        again.close()

    trio.run(main)


def test_a_tombstone_waits_for_every_peer_ever_synced_with_even_after_a_restart(tmp_path):
    async def main():
        store = open_store(tmp_path)
        store.peer_up("b")
        await store.put("k", 1)
        await store.delete("k")
        assert await store.collect_garbage() == 0  # b has not said it holds the delete
        store.peer_down("b")  # b goes away: it still counts
        assert await store.collect_garbage() == 0
        store.close()
        again = open_store(tmp_path)
        assert again.gc_members() == ["b"]  # remembered on disk
        assert await again.collect_garbage() == 0 and again.statistics()["tombstones"] == 1
        again.admits = lambda peer: peer != "b"  # b revoked: it no longer holds tombstones back
        assert await again.collect_garbage() == 1 and again.statistics()["tombstones"] == 0
        again.close()
        third = open_store(tmp_path)
        assert third.statistics()["tombstones"] == 0 and third.get("k") is None  # removed from the file too
        third.close()

    trio.run(main)


@pytest.mark.slow
def test_a_delete_syncs_to_a_peer_and_is_collected_once_it_confirmed(tmp_path):
    async def main():
        a, b = open_store(tmp_path, "a"), open_store(tmp_path, "b")
        stores = {"a": a, "b": b}

        async def send_from(src):
            async def send(peer, msg):
                await stores[peer].receive(src, msg)
            return send

        async with trio.open_nursery() as nursery:
            for name, store in stores.items():
                store.peer_up("b" if name == "a" else "a")
                nursery.start_soon(store.run, await send_from(name))
            await a.put("k", 1)
            with trio.fail_after(10):
                while b.get("k") is None:
                    await trio.sleep(0.05)
            await a.delete("k")
            with trio.fail_after(10):
                while b.get("k") is not None:
                    await trio.sleep(0.05)
            assert b.statistics()["tombstones"] == 1
            with trio.fail_after(20):  # a learns b's context from b's digests, then forgets the tombstone
                while await a.collect_garbage() == 0:
                    await trio.sleep(0.2)
            assert a.statistics()["tombstones"] == 0 and a.get("k") is None and b.get("k") is None
            nursery.cancel_scope.cancel()
        a.close()
        b.close()

    trio.run(main)


def test_the_node_wiring_reaches_the_shared_and_zone_stores(tmp_path):
    from mesh.config import Config
    from mesh.sensor_scopes import ScopedState

    config = Config.model_validate({"name": "a", "location": "kitchen"})
    state = ScopedState.open("a", tmp_path, config)
    try:
        state.relay_to = lambda origin, peer: origin == "x"
        state.admits = lambda peer: peer != "revoked"
        for store in (state._shared, state._zone):
            assert store.relay_to("x", "y") and not store.relay_to("z", "y")
            assert store.admits("p") and not store.admits("revoked")
    finally:
        state.close()
