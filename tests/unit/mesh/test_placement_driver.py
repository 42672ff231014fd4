"""The placement driver (mesh.placement_driver) on trio's MockClock, over the real placement apply (consensus)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio
import trio.testing

from consensus.commands import PlacementSet
from consensus.machine import Refusal
from consensus.placement import apply_placement
from consensus.state import ClusterState, ModelRecord
from crdt.errors import LocalProtocolError
from inference.placement import ServingNode
from mesh.placement_driver import PlacementDriver

INTERVAL = 10.0
MB = 1_000_000
A = "12D3KooWGzBw2WRxj3tHLdT8wT5sVMwDkbeoX3Hx1Q6wD7HhXX9Z"
B = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5nw1dNBGZ2wEjS9BwHL"
C = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5nw1dNBGZ2wEjS9BwHM"


class Cluster:
    """An in-memory Raft: the real placement apply on a ClusterState, one leader flag, a fault to inject."""

    def __init__(self) -> None:
        record = ModelRecord(name="m", sha256="0" * 64, size=MB, inputs=[], outputs=[], origin=A)
        self.state = ClusterState(models={"m": record})
        self.leader = True
        self.nodes = {
            A: ServingNode(peer=A, tier="cloud", alive=True, speed_ms=5.0),
            B: ServingNode(peer=B, tier="edge", alive=True, speed_ms=20.0),
        }
        self.writes: list[dict] = []
        self.fail_next: BaseException | None = None
        self.hang_next = False

    def current(self, model):
        placed = self.state.placement.get(model)
        return (None, 0) if placed is None else (placed.partitions, placed.revision)

    async def write(self, model, partitions, expected_revision):
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if self.hang_next:
            self.hang_next = False
            await trio.sleep_forever()
        command = PlacementSet(model=model, partitions=partitions, expected_revision=expected_revision, request="")
        self.state, result = apply_placement(self.state, command)
        assert not isinstance(result, Refusal), result.reason
        if result["swapped"]:
            self.writes.append({i: tuple(p) for i, p in partitions.items()})
        return result

    def placed(self):
        return {i: tuple(p) for i, p in self.current("m")[0].items()}

    def driver(self, nodes=None) -> PlacementDriver:
        return PlacementDriver(
            is_leader=lambda: self.leader,
            models=lambda: {name: r.size for name, r in self.state.models.items()},
            nodes=nodes or (lambda model: list(self.nodes.values())),
            current=lambda model: self.current(model),
            write=self.write,
            interval=INTERVAL,
        )


def run(test) -> None:
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))


async def settle(seconds: float = 0.0) -> None:
    """Let mock time pass (autojump: no real waiting), then let every task block."""
    await trio.sleep(seconds)
    await trio.testing.wait_all_tasks_blocked()


def test_writes_only_on_the_leader():
    """Rule: only the Raft leader plans and writes placement; followers leave it alone."""
    cluster = Cluster()
    cluster.leader = False

    async def test():
        driver = cluster.driver()
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            await settle(3 * INTERVAL)
            assert cluster.writes == []
            assert driver.statistics()["follower_rounds"] >= 3
            cluster.leader = True
            driver.poke()
            await settle()
            assert cluster.placed() == {0: (A, B)}
            nursery.cancel_scope.cancel()

    run(test)


def test_no_write_while_nothing_changed():
    cluster = Cluster()

    async def test():
        driver = cluster.driver()
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            await settle(5 * INTERVAL)
            cluster.nodes[B] = replace(cluster.nodes[B], speed_ms=4.5)  # B 10% faster than A now: noise
            driver.poke()
            await settle(2 * INTERVAL)
            nursery.cancel_scope.cancel()
        assert cluster.writes == [{0: (A, B)}]
        assert driver.statistics()["unchanged"] >= 6

    run(test)


def test_rewrites_when_a_node_dies_and_when_one_joins():
    """Rule: placement changes when nodes join, leave or die (the node pokes the driver on each)."""
    cluster = Cluster()

    async def test():
        driver = cluster.driver()
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            await settle()
            cluster.nodes[A] = replace(cluster.nodes[A], alive=False)
            driver.poke()
            await settle()
            assert cluster.placed() == {0: (B,)}
            cluster.nodes[C] = ServingNode(peer=C, tier="device", alive=True)
            await settle(INTERVAL)  # no poke: the periodic round finds it
            assert cluster.placed() == {0: (B, C)}
            nursery.cancel_scope.cancel()
        assert cluster.writes == [{0: (A, B)}, {0: (B,)}, {0: (B, C)}]
        assert driver.statistics()["writes"] == 3

    run(test)


def test_survives_a_write_that_raises_and_retries_next_round():
    cluster = Cluster()
    cluster.fail_next = RuntimeError("consensus: not the leader")

    async def test():
        driver = cluster.driver()
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            await settle()
            assert cluster.writes == [] and driver.statistics()["failures"] == 1
            await settle(INTERVAL)
            assert cluster.placed() == {0: (A, B)}
            nursery.cancel_scope.cancel()

    run(test)


def test_survives_a_write_that_hangs():
    cluster = Cluster()
    cluster.hang_next = True

    async def test():
        driver = cluster.driver()
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            await settle(INTERVAL + 20)
            assert driver.statistics()["failures"] == 1
            assert cluster.placed() == {0: (A, B)}
            nursery.cancel_scope.cancel()

    run(test)


def test_survives_a_broken_fact_source():
    cluster = Cluster()
    calls = []

    def nodes(model):
        calls.append(model)
        if len(calls) == 1:
            raise KeyError("peer table being rebuilt")
        return list(cluster.nodes.values())

    async def test():
        driver = cluster.driver(nodes)
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            await settle(INTERVAL)
            nursery.cancel_scope.cancel()
        assert cluster.placed() == {0: (A, B)}
        assert driver.statistics()["failures"] == 1

    run(test)


def test_a_failed_compare_replans_from_what_is_there():
    """Rule: a swapped-False answer (another planner wrote first) is not retried blindly; the next round re-plans."""
    cluster = Cluster()

    async def test():
        driver = cluster.driver()
        real = cluster.current
        cluster.current = lambda model: (None, 0)  # first round reads before a rival's write lands
        cluster.state, _ = apply_placement(
            cluster.state, PlacementSet(model="m", partitions={0: (B,)}, expected_revision=0, request="")
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run)
            await settle()
            assert driver.statistics()["conflicts"] == 1 and cluster.writes == []
            cluster.current = real
            await settle(INTERVAL)
            assert cluster.placed() == {0: (A, B)}
            nursery.cancel_scope.cancel()

    run(test)


def test_no_eligible_node_writes_nothing():
    cluster = Cluster()
    cluster.nodes = {p: replace(n, alive=False) for p, n in cluster.nodes.items()}

    async def test():
        driver = cluster.driver()
        await driver.plan_round()
        assert cluster.writes == []
        assert driver.statistics()["unplaceable"] == 1

    run(test)


def test_bad_interval_is_refused():
    with pytest.raises(LocalProtocolError, match="^mesh: placement interval"):
        PlacementDriver(is_leader=lambda: True, models=dict, nodes=list, current=lambda m: (None, 0),
                        write=None, interval=0)
