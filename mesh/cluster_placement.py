"""``node.placement``: which peers serve which partition of a model, as the Raft log has it.

A thin layer over the placement commands (``consensus.placement`` has the
rules: whole placements, compare-and-set on the model's placement revision,
registered models and admitted peers only, removed and revoked peers dropped).
Reads are linearizable unless ``stale``, exactly as ``node.config`` reads
(``mesh.cluster_config``). The Raft leader's planner (issue 6) writes
placement; ``set`` is also here for operators and tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from consensus import PlacementClear, PlacementGet, PlacementList, PlacementSet

from .cluster_config import read
from .placement_driver import PlacementDriver

if TYPE_CHECKING:
    from .node import Node


def _meta(answer: dict) -> dict:
    return {k: answer[k] for k in ("stale", "age_s", "read_on")}


HAND, PLANNED = "hand-", "plan-"  # the request id's prefix: who wrote a placement


class ClusterPlacement:
    """``node.placement``: partition placement of registered models, agreed through Raft."""

    def __init__(self, node: Node) -> None:
        self._node = node

    async def set(self, model: str, partitions: Mapping[int, Sequence[str]], expected_revision: int, *,
                  by_hand: bool = True) -> dict:
        """Replace ``model``'s placement if it is at ``expected_revision`` (0: none yet).

        ``partitions`` maps a partition index to peer ids, most preferred first.
        Returns ``{"model", "placement_revision", "partitions", "swapped",
        "exists", "revision"}``; when ``swapped`` is False, the placement is the
        current one, to re-plan from. Refusals raise ``ConsensusError``.

        A placement set by hand (an operator, the API, an embedding program) stands: the leader's
        planner leaves it alone until it is cleared, or until a peer it names leaves the mesh (the
        placement then loses that peer and is planned again). The planner writes with ``by_hand=False``.
        """
        # The request id lets a retried submit recognise its own write, and says who wrote it.
        request = (HAND if by_hand else PLANNED) + os.urandom(8).hex()
        return await self._node.submit(PlacementSet(
            model=model, partitions=partitions, expected_revision=expected_revision, request=request
        ))

    async def clear(self, model: str) -> dict:
        """Remove ``model``'s placement; ``{"model", "cleared", "revision"}``."""
        return await self._node.submit(PlacementClear(model=model))

    async def get(self, model: str, *, stale: bool = False) -> dict | None:
        """``{"model", "placement_revision", "partitions": [{partition, peers}], "stale", "age_s", "read_on"}``.

        None when ``model`` has no placement.
        """
        answer = await read(self._node, PlacementGet(model=model), stale=stale)
        return None if answer["result"] is None else {**answer["result"], **_meta(answer)}

    async def list(self, *, stale: bool = False) -> dict:
        """``{"revision", "placements": [...], "stale", "age_s", "read_on"}``, placements sorted by model."""
        answer = await read(self._node, PlacementList(), stale=stale)
        return {**answer["result"], **_meta(answer)}


def placement_driver(node: Node) -> PlacementDriver:
    """The leader's placement loop for ``node`` (``mesh/placement_driver.py``), fed from its peer table and Raft state.

    Only admitted peers count as alive (a placement naming another is refused);
    a suspect peer still counts (SWIM suspicion is a maybe, and placement must
    not flap on it); a peer's last advertised speed counts even when the advert
    has expired (an expired advert is not a death).
    """
    import trio

    from inference.placement import ServingNode

    from .cpu_budget import memory_available

    def nodes(model: str) -> list[ServingNode]:
        now = trio.current_time()
        state = node.raft.state()
        me = node.descriptor()
        out = [ServingNode(peer=node.peer_id, tier=me.tier, alive=state.is_admitted(node.peer_id),
                           speed_ms=dict(node.inference.run_times.speed_ms()).get(model)
                           or _profiled(node.inference.served.get(model)),
                           memory_free_bytes=_room(model, node.runtime.has(model), memory_available()),
                           capabilities=me.capabilities)]
        for rec in node.peers.records():
            d = rec.descriptor
            profile = rec.load.profile(model)
            out.append(ServingNode(
                peer=d.peer_id, tier=d.tier,
                alive=rec.state(now) in ("alive", "suspect") and state.is_admitted(d.peer_id),
                speed_ms=rec.load.speed(model) or (profile.whole_ms if profile is not None and profile.whole_ms > 0
                                                   else None),
                memory_free_bytes=_room(model, model in rec.load.models, rec.load.memory_free),
                capabilities=d.capabilities,
            ))
        return out

    def current(model: str):
        placed = node.raft.state().placement.get(model)
        return (None, 0) if placed is None else (placed.partitions, placed.revision)

    def models() -> dict[str, int]:
        """Registered models to plan: not those whose placement was set by hand (it stands until cleared)."""
        if node.raft is None:
            return {}
        state = node.raft.state()
        return {n: r.size for n, r in state.models.items()
                if not ((placed := state.placement.get(n)) is not None and placed.request.startswith(HAND))}

    async def write(model, partitions, expected_revision):
        return await node.placement.set(model, partitions, expected_revision, by_hand=False)

    return PlacementDriver(
        is_leader=lambda: node.raft is not None and node.raft.status().role == "leader",
        models=models,
        nodes=nodes,
        current=current,
        write=write,
    )


def _room(model: str, loaded: bool, free: int | None) -> int | None:
    """Memory a node has for ``model``: a node that already holds it has room by definition."""
    return None if loaded or free is None else free


def _profiled(served) -> float | None:
    return served.profile.whole_ms if served is not None and served.profile.whole_ms > 0 else None


__all__ = ["ClusterPlacement", "placement_driver"]
