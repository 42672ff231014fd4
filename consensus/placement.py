"""Partition placement: which peers serve which partition of a model, applied purely (part of ``consensus.machine``).

Theory of operation
-------------------
``state.placement`` maps a registered model's name to a ``ModelPlacement``:
partition index (0, 1, …) -> peer ids, most preferred first, and the cluster
revision that wrote it. Issue 6's planner (on the Raft leader) computes it
from capabilities and memory; every node reads it from its applied state.

*Whole placements, compared by revision.* ``PlacementSet`` replaces a model's
whole placement at once, never one partition: a half-updated placement (part 0
planned for the new cut, part 1 for the old one) would chain partitions that do
not fit. It swaps only when the model's placement is at ``expected_revision``
(0: the model has none yet), etcd's ``mod_revision`` compare, as ``ConfigCas``.
Two planners (an old leader that has not noticed it lost, and the new one) then
cannot overwrite each other blindly: the second to commit sees a revision it did
not plan from and must re-read and re-plan. A failed compare is an answer, not a
refusal (``swapped`` False with the current placement; nothing written). A
command applied twice (the Raft adapter retried it) finds its own ``request``
id on the placement it wrote and reports ``swapped`` again.

*What may be placed.* Refused (``Refusal``, the state unchanged):

- a model that is not registered (``state.models``): placement names files every
  node can fetch and check by hash; a name with no record means nothing;
- a peer that is not admitted while the admitted-peer list is on (a revoked peer
  is refused by every node, so it could serve nobody). Peers need not be Raft
  voters: most serving nodes are not, and voters are chosen for durability, not
  for compute. With the list off (an open mesh), any well-formed peer id goes;
- malformed input never gets this far: peer ids must have the shape of a libp2p
  peer id, partition indices are ints below ``MAX_PARTITIONS``, a partition lists
  1 to ``MAX_PARTITION_PEERS`` distinct peers (the command's constructor and the
  codec check this; ``consensus.state.check_partitions``).

*Peers that leave drop out.* A peer taken out of the voter set (``MemberRemove``:
a voter dead past ``raft.replace_after``, revoked, or leaving) and a peer that
is no longer admitted (after ``PeerRevoke``, or a ``PeerAdmit`` that turned the
list on without it) is removed from every partition of every placement in the
same apply: a placement never names a peer the mesh has dropped. Each changed
placement gets the new cluster revision (so a planner's pending compare fails
and it re-plans from what is left) and its ``request`` is cleared. A partition
whose last peer went stays, with an empty list: unserved until re-planned.
The death of a non-voter is not a Raft event; the planner (issue 6) re-plans
from liveness for that.

``PlacementClear`` removes a model's placement unconditionally (an operator's
or planner's reset; ``cleared`` False when there was none). The revision moves
by one per accepted write, as everywhere in ``consensus.machine``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ._checks import check_key
from .commands import PlacementClear, PlacementGet, PlacementList, PlacementSet
from .state import ClusterState, ModelPlacement

PlacementCommand = PlacementSet | PlacementClear | PlacementGet | PlacementList


def apply_placement(state: ClusterState, command: PlacementCommand) -> tuple[ClusterState, Any]:
    """Apply one placement command (see the module doc); returns the new state and the result."""
    from .machine import Refusal  # machine imports this module

    if isinstance(command, PlacementList):
        return state, {
            "revision": state.revision,
            "placements": [state.placement[m].to_dict(m) for m in sorted(state.placement)],
        }
    model = check_key(command.model, "model name")
    current = state.placement.get(model)
    if isinstance(command, PlacementGet):
        return state, None if current is None else current.to_dict(model)

    revision = state.revision + 1
    if isinstance(command, PlacementClear):
        new = replace(state, revision=revision, placement=state.placement.delete(model))
        return new, {"model": model, "cleared": current is not None, "revision": revision}

    # PlacementSet
    if model not in state.models:
        return state, Refusal(
            f"consensus: cannot place model {model!r}: it is not registered; register it first (meshnode model add)"
        )
    for index, peers in command.partitions.items():
        for peer in peers:
            if not state.is_admitted(peer):
                why = "revoked" if peer in state.admitted else "not on the admitted-peer list"
                return state, Refusal(
                    f"consensus: cannot place partition {index} of {model!r} on {peer}: it is {why}; "
                    "admit it first or leave it out"
                )
    at = 0 if current is None else current.revision
    if at == command.expected_revision:
        placed = ModelPlacement(command.partitions, revision, command.request)
        new = replace(state, revision=revision, placement=state.placement.set(model, placed))
        return new, _set_result(model, placed, swapped=True, revision=revision)
    # Its own write, applied once already (a retried submit): report the swap again.
    again = current is not None and command.request != "" and current.request == command.request
    return state, _set_result(model, current, swapped=again, revision=state.revision)


def _set_result(model: str, placed: ModelPlacement | None, *, swapped: bool, revision: int) -> dict:
    if placed is None:
        doc = {"model": model, "placement_revision": 0, "partitions": []}
    else:
        doc = placed.to_dict(model)
    return {**doc, "swapped": swapped, "exists": placed is not None, "revision": revision}


def drop_peers(state: ClusterState, keep: Callable[[str], bool]) -> ClusterState:
    """``state`` with every placed peer for which ``keep`` is False removed (call with the new revision set).

    Only the placements that change are written (``FrozenMap.set``), each at
    ``state.revision``; the rest of the map is shared with the old state.
    """
    placement = state.placement
    for model in sorted(state.placement):
        placed = state.placement[model]
        if all(keep(p) for p in placed.peers()):
            continue
        partitions = {i: tuple(p for p in peers if keep(p)) for i, peers in placed.partitions.items()}
        placement = placement.set(model, ModelPlacement(partitions, state.revision))
    return state if placement is state.placement else replace(state, placement=placement)
