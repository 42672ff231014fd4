"""The trio driver of placement planning (STYLE §3: thin, the decisions are ``inference.placement``'s).

On the Raft leader only, every ``interval`` seconds and whenever ``poke()`` is
called (a peer joined, left or died), it plans each registered model's
placement from the facts the node hands it and writes the plan with a
compare-and-set on the model's placement revision when ``placement_changed``
says so. Everything outside is a callable, so it runs without a node:

- ``is_leader()``: whether this node leads Raft now;
- ``models()``: registered model name -> bytes a node needs free to serve it;
- ``nodes(model)``: a ``ServingNode`` per candidate peer (this node included);
- ``current(model)``: (partition index -> peers, or None; placement revision, 0 for none);
- ``write(model, partitions, expected_revision)``: awaits the ``PlacementSet``
  answer (``node.placement.set``), a dict with ``swapped``.

A failed compare (``swapped`` False: another planner wrote first, or Raft
dropped a peer meanwhile) is not retried at once: the next round plans again
from the state as it is then. A write or read that raises or outlasts
``write_timeout`` is logged and counted, and the next round tries again: the
loop never dies of one model's trouble. A node that loses leadership mid-round
may still send a write; the revision compare stops it from clobbering the new
leader's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import trio

from crdt.errors import LocalProtocolError
from inference.placement import (
    MAX_PARTITION_PEERS,
    SPEED_HYSTERESIS,
    ServingNode,
    placement_changed,
    plan_placement,
)

log = logging.getLogger("meshnode.placement")

PLAN_INTERVAL = 10.0  # seconds between rounds without a poke: catches speed drift and non-voter deaths
WRITE_TIMEOUT = 15.0  # seconds one PlacementSet may take before the round gives up on it


class PlacementDriver:
    """Plans and writes model placement on the Raft leader (see the module doc)."""

    def __init__(
        self,
        *,
        is_leader: Callable[[], bool],
        models: Callable[[], Mapping[str, int]],
        nodes: Callable[[str], Sequence[ServingNode]],
        current: Callable[[str], tuple[Mapping[int, Sequence[str]] | None, int]],
        write: Callable[[str, Mapping[int, Sequence[str]], int], Awaitable[dict]],
        interval: float = PLAN_INTERVAL,
        write_timeout: float = WRITE_TIMEOUT,
        max_peers: int = MAX_PARTITION_PEERS,
        threshold: float = SPEED_HYSTERESIS,
    ) -> None:
        if not interval > 0 or not write_timeout > 0:
            raise LocalProtocolError("mesh: placement interval and write_timeout must be > 0 seconds")
        self._is_leader = is_leader
        self._models = models
        self._nodes = nodes
        self._current = current
        self._write = write
        self._interval = interval
        self._write_timeout = write_timeout
        self._max_peers = max_peers
        self._threshold = threshold
        self._poked = trio.Event()
        self._stats = {"rounds": 0, "follower_rounds": 0, "writes": 0, "unchanged": 0, "unplaceable": 0,
                       "conflicts": 0, "failures": 0}

    def poke(self) -> None:
        """Plan again now (membership changed); safe to call from any task, any number of times."""
        self._poked.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Plan every ``interval`` seconds and on each poke, until cancelled."""
        task_status.started()
        while True:
            self._poked = trio.Event()  # a poke during the round below wakes the next wait at once
            await self.plan_round()
            with trio.move_on_after(self._interval):
                await self._poked.wait()

    async def plan_round(self) -> None:
        """One round: nothing unless leader; else plan each model and write the ones that changed."""
        self._stats["rounds"] += 1
        try:
            if not self._is_leader():
                self._stats["follower_rounds"] += 1
                return
            models = dict(self._models())
        except Exception:
            self._stats["failures"] += 1
            log.warning("placement: could not read leadership or the registered models; retrying next round",
                        exc_info=True)
            return
        for model in sorted(models):
            try:
                await self._plan_model(model, models[model])
            except Exception:
                self._stats["failures"] += 1
                log.warning("placement: planning %r failed; retrying next round", model, exc_info=True)

    async def _plan_model(self, model: str, size: int) -> None:
        nodes = list(self._nodes(model))
        planned = plan_placement(model, size, nodes, max_peers=self._max_peers)
        if not planned:
            self._stats["unplaceable"] += 1
            return
        current, revision = self._current(model)
        if not placement_changed(current, planned, nodes, model_bytes_needed=size, threshold=self._threshold):
            self._stats["unchanged"] += 1
            return
        with trio.move_on_after(self._write_timeout) as scope:
            answer = await self._write(model, planned, revision)
        if scope.cancelled_caught:
            self._stats["failures"] += 1
            log.warning("placement: writing %r took over %gs; retrying next round", model, self._write_timeout)
        elif answer.get("swapped"):
            self._stats["writes"] += 1
            log.info("placement: %r now on %s (placement revision %s)", model,
                     {i: list(p) for i, p in planned.items()}, answer.get("placement_revision"))
        else:
            self._stats["conflicts"] += 1  # someone wrote first: re-plan from what is there next round

    def statistics(self) -> dict:
        """Counters: rounds, follower_rounds, writes, unchanged, unplaceable, conflicts, failures."""
        return dict(self._stats)


__all__ = ["PLAN_INTERVAL", "PlacementDriver"]
