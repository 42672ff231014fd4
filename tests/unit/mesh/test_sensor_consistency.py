"""SensorState's consistency levels over real SQLite stores wired to each other in memory (no network).

``Replicas`` gets a ``call`` that hands the request straight to the other
store's ``on_write``/``on_read``; a "stalled" peer never answers, like a
SIGSTOPped process. Tests where nobody answers run on trio's MockClock, so the
timeout passes without waiting for it (not where a peer must persist: a mock
clock would jump past the timeout while the peer's worker thread writes).
"""

from __future__ import annotations

import sqlite3

import pytest
import trio
import trio.testing

from crdt.errors import LocalProtocolError, MeshError, RemoteProtocolError
from mesh.sensor_quorum import READ_METHOD, WRITE_METHOD, QuorumNotReached
from mesh.sensor_replicas import Replicas
from mesh.sensors import SensorState


class Mesh:
    """Stores by name; ``stalled`` ones never answer, ``garbage`` ones answer nonsense."""

    def __init__(self, tmp_path, names, nursery) -> None:
        self.stores = {n: SensorState(n, tmp_path / f"{n}.sqlite", interval=0.5) for n in names}
        self.stalled: set[str] = set()
        self.garbage: set[str] = set()
        self.calls: list[tuple[str, str, str]] = []
        for name, store in self.stores.items():
            others = [n for n in names if n != name]
            store.replicas = Replicas(lambda others=others: others, self._caller(name), nursery.start_soon)

    def _caller(self, me: str):
        async def call(peer: str, method: str, body, *, timeout: float):
            self.calls.append((me, peer, method))
            with trio.move_on_after(timeout):
                if peer in self.stalled:
                    await trio.sleep_forever()
                if peer in self.garbage:
                    return {"t": "delta", "v": 1, "delta": "nonsense", "reply_context": None}
                store = self.stores[peer]
                handler = {WRITE_METHOD: store.on_write, READ_METHOD: store.on_read}[method]
                return await handler(me, body)
            raise MeshError(f"mesh: {peer} did not answer {method!r} within {timeout:g} s")

        return call

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


def run(tmp_path, test, names=("a", "b", "c"), clock=None):
    async def main():
        async with trio.open_nursery() as nursery:
            mesh = Mesh(tmp_path, list(names), nursery)
            try:
                await test(mesh)
            finally:
                mesh.close()

    trio.run(main, clock=clock)


def on_disk(path, key):
    rows = sqlite3.connect(path).execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchall()
    return rows[0][0] if rows else None


def test_majority_write_is_persisted_on_a_majority_when_it_returns(tmp_path):
    async def test(mesh):
        doc = await mesh.stores["a"].put("door", "shut", consistency="majority", timeout=5)
        assert doc["value"] == "shut" and doc["members"] == 3 and doc["acks"] >= 2
        holders = [n for n in "abc" if on_disk(tmp_path / f"{n}.sqlite", "door") == '"shut"']
        assert "a" in holders and len(holders) >= 2

    run(tmp_path, test)


def test_local_write_asks_nobody(tmp_path):
    async def test(mesh):
        doc = await mesh.stores["a"].put("door", "open")
        assert "acks" not in doc and mesh.calls == []

    run(tmp_path, test)


def test_majority_write_times_out_with_a_clear_error_and_the_value_stays(tmp_path):
    async def test(mesh):
        mesh.stalled |= {"b", "c"}
        start = trio.current_time()
        with pytest.raises(QuorumNotReached) as info:
            await mesh.stores["a"].put("door", "shut", consistency="majority", timeout=3)
        assert trio.current_time() - start == pytest.approx(3, abs=0.5)  # mock clock: exact, not a timing
        text = str(info.value)
        assert "1 of 3 members" in text and "kept on this node" in text
        assert mesh.stores["a"].get("door")["value"] == "shut"
        assert on_disk(tmp_path / "a.sqlite", "door") == '"shut"'

    run(tmp_path, test, clock=trio.testing.MockClock(autojump_threshold=0))


def test_majority_write_fails_at_once_when_peers_refuse(tmp_path):
    async def test(mesh):
        mesh.stores["b"].broken = mesh.stores["c"].broken = "disk gone"
        start = trio.current_time()
        with pytest.raises(QuorumNotReached, match="could not be reached"):
            await mesh.stores["a"].put("k", 1, consistency="majority", timeout=60)
        assert trio.current_time() - start < 60
        assert mesh.stores["a"].get("k")["value"] == 1

    run(tmp_path, test, clock=trio.testing.MockClock(autojump_threshold=0))


def test_one_stalled_peer_of_three_does_not_stop_a_majority(tmp_path):
    async def test(mesh):
        mesh.stalled.add("c")
        doc = await mesh.stores["a"].put("k", 2, consistency="majority", timeout=3)
        assert doc["acks"] == 2 and mesh.stores["b"].get("k")["value"] == 2
        got = await mesh.stores["a"].read("k", consistency="majority", timeout=3)
        assert got["value"] == 2 and got["answers"] == 2

    # A real clock: b persists through a worker thread, and a mock clock would jump past the
    # timeout while it does. The test ends as soon as b answers.
    run(tmp_path, test)


def test_majority_read_returns_the_newest_value_and_repairs_this_node(tmp_path):
    async def test(mesh):
        await mesh.stores["a"].put("k", "old")
        await mesh.stores["b"].put("k", "new")  # later HLC; not synced: no driver runs here
        assert mesh.stores["a"].get("k")["value"] == "old"
        got = await mesh.stores["a"].read("k", consistency="majority")
        assert got["value"] == "new" and got["writer"] == "b"
        assert mesh.stores["a"].get("k")["value"] == "new"
        assert on_disk(tmp_path / "a.sqlite", "k") == '"new"'
        # Our clock observed the repaired entry: a later local write still wins.
        assert (await mesh.stores["a"].put("k", "newest"))["value"] == "newest"

    run(tmp_path, test, names=("a", "b"))


def test_majority_read_of_an_unknown_key_is_none(tmp_path):
    async def test(mesh):
        assert await mesh.stores["a"].read("nothing", consistency="majority") is None

    run(tmp_path, test)


def test_majority_read_times_out_clearly(tmp_path):
    async def test(mesh):
        await mesh.stores["a"].put("k", 1)
        mesh.stalled |= {"b", "c"}
        with pytest.raises(QuorumNotReached, match=r"majority read of 'k' answered by 1 of 3"):
            await mesh.stores["a"].read("k", consistency="majority", timeout=2)

    run(tmp_path, test, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_garbage_answer_counts_as_a_failed_member_not_a_crash(tmp_path):
    async def test(mesh):
        mesh.garbage.add("b")
        mesh.stalled.add("c")
        with pytest.raises(QuorumNotReached, match="b: crdt"):
            await mesh.stores["a"].read("k", consistency="majority", timeout=2)
        mesh.stalled.clear()
        await mesh.stores["c"].put("k", "from-c")
        assert (await mesh.stores["a"].read("k", consistency="majority", timeout=2))["value"] == "from-c"

    run(tmp_path, test, clock=trio.testing.MockClock(autojump_threshold=0))


def test_malformed_peer_requests_are_refused_and_change_nothing(tmp_path):
    async def test(mesh):
        b = mesh.stores["b"]
        for bad in (None, {"t": "delta"}, {"t": "digest", "v": 1, "context": {"vv": {}, "cloud": []}}):
            with pytest.raises(RemoteProtocolError):
                await b.on_write("a", bad)
        for bad in (None, {"key": 7}, {"key": "k", "x": 1}):
            with pytest.raises(RemoteProtocolError):
                await b.on_read("a", bad)
        assert len(b) == 0 and b.statistics()["bad_messages"] == 6
        await b.put("still/works", True)

    run(tmp_path, test)


def test_unknown_levels_and_bad_timeouts_are_refused_before_writing(tmp_path):
    async def test(mesh):
        a = mesh.stores["a"]
        with pytest.raises(LocalProtocolError, match="unknown consistency level 'all'; use one of 'local', 'majority'"):
            await a.put("k", 1, consistency="all")
        with pytest.raises(LocalProtocolError, match="timeout must be"):
            await a.put("k", 1, consistency="majority", timeout=0)
        with pytest.raises(LocalProtocolError, match="use one of"):
            await a.read("k", consistency="quorum")
        with pytest.raises(MeshError, match="use `await state.read"):
            a.get("k", "majority")
        assert len(a) == 0 and mesh.calls == []

    run(tmp_path, test)


def test_a_store_alone_is_its_own_majority(tmp_path):
    async def main():
        store = SensorState("solo", tmp_path / "s.sqlite", interval=0.5)
        try:
            doc = await store.put("k", 1, consistency="majority")
            assert (doc["acks"], doc["members"]) == (1, 1)
            assert (await store.read("k", consistency="majority"))["value"] == 1
        finally:
            store.close()

    trio.run(main)
