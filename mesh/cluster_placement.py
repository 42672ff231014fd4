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

if TYPE_CHECKING:
    from .node import Node


def _meta(answer: dict) -> dict:
    return {k: answer[k] for k in ("stale", "age_s", "read_on")}


class ClusterPlacement:
    """``node.placement``: partition placement of registered models, agreed through Raft."""

    def __init__(self, node: Node) -> None:
        self._node = node

    async def set(self, model: str, partitions: Mapping[int, Sequence[str]], expected_revision: int) -> dict:
        """Replace ``model``'s placement if it is at ``expected_revision`` (0: none yet).

        ``partitions`` maps a partition index to peer ids, most preferred first.
        Returns ``{"model", "placement_revision", "partitions", "swapped",
        "exists", "revision"}``; when ``swapped`` is False, the placement is the
        current one, to re-plan from. Refusals raise ``ConsensusError``.
        """
        request = os.urandom(8).hex()  # lets a retried submit recognise its own write
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


__all__ = ["ClusterPlacement"]
