"""ScopedState (mesh/sensor_scopes.py) on real SQLite files, with peers wired in memory."""

from __future__ import annotations

import random
import sqlite3

import msgpack
import pytest
import trio

from crdt.errors import MeshError
from mesh.config import Config
from mesh.sensor_scopes import ZONE_METHOD, ScopedState

PRIVACY = {
    "local_only": ["secret/*"],
    "zone_only": ["floor/*"],
    "aggregates": [{"key": "stats/secret-sum", "source": "secret/*", "function": "sum", "epsilon": 1.0,
                    "sensitivity": 1.0, "every": 0.1}],
}


def open_state(tmp_path, name: str, location: str = "lab", privacy=PRIVACY, seed: int = 1) -> ScopedState:
    data_dir = tmp_path / name
    data_dir.mkdir(exist_ok=True)
    cfg = Config.from_dict({"name": name, "location": location, "privacy": privacy,
                            "sync": {"interval": 0.05}}, data_dir=data_dir)
    state = ScopedState.open(name, data_dir, cfg)
    state._rng = random.Random(seed)  # production uses SystemRandom
    return state


def rows(path) -> list[tuple]:
    return sqlite3.connect(path).execute("SELECT key, value FROM entries ORDER BY key").fetchall()


def test_each_key_goes_to_the_store_of_its_scope_only(tmp_path):
    async def main():
        st = open_state(tmp_path, "a")
        assert (await st.put("secret/pin", "4711"))["scope"] == "local"
        assert (await st.put("floor/temp", 20))["scope"] == "zone"
        assert (await st.put("hall/light", "on"))["scope"] == "shared"
        assert rows(tmp_path / "a" / "local.sqlite") == [("secret/pin", '"4711"')]
        assert rows(tmp_path / "a" / "zone.sqlite") == [("floor/temp", "20")]
        assert rows(tmp_path / "a" / "sensors.sqlite") == [("hall/light", '"on"')]
        assert st.get("secret/pin")["value"] == "4711" and st.get("secret/pin")["scope"] == "local"
        assert [(d["key"], d["scope"]) for d in st.list()] == [
            ("floor/temp", "zone"), ("hall/light", "shared"), ("secret/pin", "local")]
        assert [d["key"] for d in st.list("secret/")] == ["secret/pin"]
        assert len(st) == 3 and st.statistics()["local"] == {"keys": 1}
        st.close()
        again = open_state(tmp_path, "a")  # durable across a restart
        assert again.get("secret/pin")["value"] == "4711" and again.get("floor/temp")["value"] == 20
        again.close()

    trio.run(main)


def test_a_per_write_scope_is_a_check_never_an_override(tmp_path):
    async def main():
        st = open_state(tmp_path, "a")
        with pytest.raises(MeshError, match="privacy: key 'hall/x' is shared under this node's privacy config, not local"):
            await st.put("hall/x", 1, scope="local")
        with pytest.raises(MeshError, match="privacy: key 'secret/x' is local .* not shared"):
            await st.put("secret/x", 1, scope="shared")
        with pytest.raises(MeshError, match="scope must be one of"):
            await st.put("secret/x", 1, scope="public")
        assert len(st) == 0
        assert (await st.put("secret/x", 1, scope="local"))["scope"] == "local"
        with pytest.raises(MeshError, match="crdt: key must be"):
            await st.put("", 1)
        with pytest.raises(MeshError, match="limit"):
            await st.put("secret/big", "x" * 100_000)
        # Consistency levels ask other members, so they never apply to private keys.
        with pytest.raises(MeshError, match="privacy: key 'secret/x' is local-only; consistency 'majority'"):
            await st.put("secret/x", 2, consistency="majority")
        with pytest.raises(MeshError, match="zone-only; consistency 'majority'"):
            st.get("floor/x", consistency="majority")
        assert (await st.put("secret/x", 3, consistency="local", timeout=5.0))["value"] == 3
        st.close()

    trio.run(main)


def test_zone_keys_need_a_location(tmp_path):
    async def main():
        st = open_state(tmp_path, "a", location="", privacy={"local_only": ["secret/*"]})
        st.settings = st.settings.model_copy(update={"zone_only": ["floor/*"]})  # config forbids this; belt and braces
        with pytest.raises(MeshError, match="privacy: zone-only keys need this node's `location`"):
            await st.put("floor/t", 1)
        with pytest.raises(MeshError, match="this node has no location"):
            await st.receive_zone("p", {})
        assert not (tmp_path / "a" / "zone.sqlite").exists()
        st.close()

    trio.run(main)


class Wire:
    """Delivers between ScopedStates in memory and keeps every message sent, per (sender, receiver, route)."""

    def __init__(self, states: dict[str, ScopedState], locations: dict[str, str | None]) -> None:
        self.states, self.locations, self.sent = states, locations, []
        for name, st in states.items():
            st.attach(lambda peer: self.locations.get(peer), self._notify_from(name))

    def _notify_from(self, sender: str):
        async def notify(peer: str, method: str, msg) -> None:
            self.sent.append((sender, peer, method, msgpack.packb(msg)))
            assert method == ZONE_METHOD
            await self.states[peer].receive_zone(sender, msg)
        return notify

    def shared_send(self, sender: str):
        async def send(peer: str, msg) -> None:
            self.sent.append((sender, peer, "crdt.sync", msgpack.packb(msg)))
            await self.states[peer].receive(sender, msg)
        return send


async def wait_until(check, timeout=10.0):
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.02)


def test_sync_carries_shared_and_same_zone_entries_and_nothing_local(tmp_path):
    """Rule: a local-only value never appears in a message to a peer; a zone-only one only to its zone."""
    async def main():
        names = {"a": "lab", "b": "lab", "c": "office"}
        states = {n: open_state(tmp_path, n, location=loc) for n, loc in names.items()}
        wire = Wire(states, names)
        secret, zoned, public = "5ec2e7a1b0c4d9f3", "20a3e9c1d7b6f4a8", "0b11c5e7d2a9f6e3"
        async with trio.open_nursery() as nursery:
            for n, st in states.items():
                await nursery.start(st.run, wire.shared_send(n))
            for n, st in states.items():
                for other in states:
                    if other != n:
                        st.peer_up(other)
            await states["a"].put("secret/pin", secret)
            await states["a"].put("floor/door", zoned)
            await states["a"].put("hall/tag", public)
            await wait_until(lambda: all(s.get("hall/tag") for s in states.values()) and states["b"].get("floor/door"))
            await trio.sleep(0.3)  # several more digest rounds
            # C never got the zone entry; B and C never got the local one.
            assert states["c"].get("floor/door") is None
            assert states["b"].get("secret/pin") is None and states["c"].get("secret/pin") is None
            assert states["b"].get("floor/door")["scope"] == "zone"
            nursery.cancel_scope.cancel()
        frames = [(s, r, m, f) for s, r, m, f in wire.sent]
        assert any(public.encode() in f for *_, f in frames)  # the capture sees values
        assert any(zoned.encode() in f for s, r, m, f in frames if r == "b")
        assert not any(secret.encode() in f or b"secret/pin" in f for *_, f in frames)
        assert not any(zoned.encode() in f for s, r, m, f in frames if "c" in (s, r))
        assert not any(m == ZONE_METHOD for s, r, m, f in frames if "c" in (s, r))
        for st in states.values():
            st.close()

    trio.run(main)


def test_a_zone_message_from_another_or_unknown_zone_is_refused_and_not_applied(tmp_path):
    async def main():
        names = {"a": "lab", "b": "lab"}
        states = {n: open_state(tmp_path, n, location=loc) for n, loc in names.items()}
        wire = Wire(states, dict(names))
        async with trio.open_nursery() as nursery:
            for n, st in states.items():
                await nursery.start(st.run, wire.shared_send(n))
            states["a"].peer_up("b")
            states["b"].peer_up("a")
            await states["a"].put("floor/one", 1)
            await wait_until(lambda: states["b"].get("floor/one") is not None)
            # B now believes A moved to the office: A's zone messages are refused, nothing applied.
            wire.locations["a"] = "office"
            msg = {"t": "digest", "v": 1}
            with pytest.raises(MeshError, match="refused: it has location 'office', this node is in 'lab'"):
                await states["b"].receive_zone("a", msg)
            wire.locations["a"] = None
            with pytest.raises(MeshError, match="refused: it has an unknown location"):
                await states["b"].receive_zone("a", msg)
            # And A, told B moved, stops sending to it before the next message goes out.
            wire.locations["a"], wire.locations["b"] = "lab", "office"
            before = len(wire.sent)
            await states["a"].put("floor/two", 2)
            await wait_until(lambda: states["a"].statistics()["privacy"]["zone_not_sent"] > 0)
            await trio.sleep(0.2)
            assert not any(m == ZONE_METHOD and (s, r) == ("a", "b") for s, r, m, _ in wire.sent[before:])
            assert states["b"].get("floor/two") is None
            assert states["b"].statistics()["privacy"]["zone_refused"] == 2
            assert "b" not in states["a"].statistics()["zone"]["peers"]
            nursery.cancel_scope.cancel()
        for st in states.values():
            st.close()

    trio.run(main)


def test_an_aggregate_release_is_noisy_shared_and_only_when_inputs_change(tmp_path):
    async def main():
        st = open_state(tmp_path, "a", seed=11)
        rule = st.settings.aggregates[0]
        assert await st.release_once(rule) == ()  # a sum of nothing is 0: released too
        await st.put("secret/a", 2.0)
        await st.put("secret/b", 5)
        await st.put("secret/c", "not a number")
        await st.put("floor/x", 100)  # zone key: not in source
        last = await st.release_once(rule)
        assert last == (2.0, 5.0)
        doc = st.get("stats/secret-sum")
        assert doc["scope"] == "shared" and doc["value"]["noisy"] is True and doc["value"]["epsilon"] == 1.0
        assert doc["value"]["value"] != 7.0 and abs(doc["value"]["value"] - 7.0) < 30  # scale 1: |noise| < 30 w.p. 1-1e-13
        hlc = doc["hlc"]
        assert await st.release_once(rule, last) == last  # unchanged inputs: no new release, no ε spent
        assert st.get("stats/secret-sum")["hlc"] == hlc
        stats = st.statistics()["privacy"]
        assert stats["releases"] == 2 and stats["epsilon_spent"] == {"stats/secret-sum": 2.0}
        # The driver releases on its own every `every` seconds.
        async with trio.open_nursery() as nursery:
            await nursery.start(st.run, lambda peer, msg: None)
            await st.put("secret/d", 1)
            await wait_until(lambda: st.statistics()["privacy"]["releases"] >= 3)
            nursery.cancel_scope.cancel()
        st.close()

    trio.run(main)


def test_local_delete_limits_and_node_hooks_reach_the_right_stores(tmp_path):
    async def main():
        st = open_state(tmp_path, "a")
        await st.put("secret/a", 1)
        gone = await st.delete("secret/a")
        assert gone["existed"] and gone["scope"] == "local" and st.get("secret/a") is None
        assert not (await st.delete("secret/a"))["existed"]
        await st.put("floor/x", 1)
        assert (await st.delete("floor/x"))["scope"] == "zone" and st.get("floor/x") is None
        assert st.list() == []
        st.close()
        again = open_state(tmp_path, "a")
        assert again.get("secret/a") is None and again.list() == []  # the tombstones are durable
        # The store bounds apply to the local file too: a tiny limit refuses a new key there.
        again.limit_store(max_store_mb=0.0001, min_free_mb=0)
        with pytest.raises(MeshError, match="crdt-store: local.sqlite is full"):
            await again.put("secret/b", "x" * 2000)
        assert again.get("secret/b") is None
        # The node's hooks: replicas (majority) for the shared store only; admits for shared and zone.
        marker = object()
        again.replicas = marker
        assert again._shared.replicas is marker and again._zone.replicas is not marker
        again.admits = lambda peer: False
        assert not again._shared.admits("p") and not again._zone.admits("p")
        hook = lambda origin, peer: False
        again.relay_to = hook  # any other hook the node sets reaches both syncing stores
        assert again._shared.relay_to is hook and again._zone.relay_to is hook and again.relay_to is hook
        assert "relay_to" not in vars(again)
        again.close()

    trio.run(main)
