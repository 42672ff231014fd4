"""Which peers serve a model (or each of its partitions), and when a stored placement should change (pure).

Theory of operation
-------------------
The Raft leader plans placement for every registered model and writes it with
a compare-and-set (``consensus.placement``); every node applies it. This module
is the leader's decision, a function of facts only: each candidate peer is a
``ServingNode`` (alive, tier, free memory, capabilities, its measured run time
of the model). No clock, no randomness, no IO: every node given the same facts
computes the same placement, and input order does not matter.

*Eligible.* A node may serve a model when it is alive, has at least
``model_bytes_needed`` free (unknown memory counts as enough: most nodes do not
report it yet, and refusing them would place nothing) and has every required
capability. Nothing else is placed, ever.

*Ranked.* Two orders, both ending in the peer id so that ties are broken the
same way on every node:

- strong (serving a whole model, or the back partitions): nodes with a
  measured run time first, fastest first (a measurement beats a guess), then
  tier (cloud, edge, device); unmeasured nodes after them, by tier;
- data-side (partition 0 when there are 2 or more partitions: the front runs
  near the data, on the weak side): tier device, edge, cloud first, then as strong.

``plan_placement`` gives partition 0 (data-side when partitioned, strong
otherwise) and every later partition (strong) its eligible nodes in that
order, at most ``max_peers``. No eligible node: ``{}``, nothing to write.

*When to write* (``placement_changed``), per partition, hysteresis against
flapping. Run times are EWMAs that wander by a few percent, and a stored
placement should not be rewritten (a Raft entry, and every node reloading)
because two similar nodes swapped places. Change when:

1. there is no placement yet, or the partition indices differ;
2. a placed peer is no longer eligible (dead, left, unknown, out of memory,
   lacking a capability);
3. an eligible peer is planned that is not placed while the placement has
   fewer peers than the plan (a node joined and there is room);
4. the planned first peer is not the placed first peer and is *clearly
   better* than it; or, the placement being full, a planned newcomer is
   clearly better than the worst placed peer it displaces.

*Clearly better* (a over b): on the data side a lower tier; else, both
measured, a's run time below ``(1 - threshold)`` times b's (20% by default);
else, both unmeasured and strong, a higher tier. A measurement appearing or
expiring (an advert late) is not a reason on its own. So a re-ordering by
noise never writes; a death, a departure or a join always does. With no
eligible node at all nothing is written: Raft already drops removed peers, and
a placement cannot be empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crdt.errors import LocalProtocolError

TIERS = ("device", "edge", "cloud")  # weakest first; mirrors mesh.config.TIERS (inference may not import mesh)
MAX_PARTITION_PEERS = 16  # mirrors consensus.state.MAX_PARTITION_PEERS (inference may not import consensus)
MAX_PARTITIONS = 64  # mirrors consensus.state.MAX_PARTITIONS
SPEED_HYSTERESIS = 0.2  # a new first peer must be this much faster (fraction of run time) to move the top
MAX_PEER_ID = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class ServingNode:
    """One candidate for serving a model: what the leader knows of it now."""

    peer: str
    tier: str
    alive: bool
    memory_free_bytes: int | None = None  # None: not reported (counts as enough)
    speed_ms: float | None = None  # its measured whole-model run time of this model; None: not measured
    capabilities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.peer, str) or not 0 < len(self.peer) <= MAX_PEER_ID:
            raise LocalProtocolError(f"inference: placement peer id must be a str of 1..{MAX_PEER_ID} chars, got {self.peer!r:.80}")
        if self.tier not in TIERS:
            raise LocalProtocolError(f"inference: {self.peer}: tier must be one of {', '.join(TIERS)}, got {self.tier!r}")
        if type(self.alive) is not bool:
            raise LocalProtocolError(f"inference: {self.peer}: alive must be a bool, got {self.alive!r}")
        mem = self.memory_free_bytes
        if mem is not None and (type(mem) is not int or mem < 0):
            raise LocalProtocolError(f"inference: {self.peer}: memory_free_bytes must be None or an int >= 0, got {mem!r}")
        s = self.speed_ms
        if s is not None and (type(s) not in (int, float) or not math.isfinite(s) or s < 0):
            raise LocalProtocolError(f"inference: {self.peer}: speed_ms must be None or a finite number >= 0, got {s!r}")
        caps = self.capabilities
        if not isinstance(caps, tuple) or not all(isinstance(c, str) for c in caps):
            raise LocalProtocolError(f"inference: {self.peer}: capabilities must be a tuple of str, got {caps!r:.80}")

    @property
    def strength(self) -> int:
        """Tier as a number: device 0, edge 1, cloud 2."""
        return TIERS.index(self.tier)


def eligible(node: ServingNode, model_bytes_needed: int, required_capabilities: Sequence[str] = ()) -> bool:
    """Alive, enough free memory (unknown counts as enough) and every required capability."""
    return (
        node.alive
        and (node.memory_free_bytes is None or node.memory_free_bytes >= model_bytes_needed)
        and set(required_capabilities) <= set(node.capabilities)
    )


def _strong_key(n: ServingNode) -> tuple:
    if n.speed_ms is not None:
        return (0, n.speed_ms, -n.strength, n.peer)
    return (1, 0.0, -n.strength, n.peer)


def _data_side_key(n: ServingNode) -> tuple:
    return (n.strength, *_strong_key(n))


def _by_peer(nodes: Sequence[ServingNode]) -> dict[str, ServingNode]:
    out: dict[str, ServingNode] = {}
    for n in nodes:
        if not isinstance(n, ServingNode):
            raise LocalProtocolError(f"inference: placement nodes must be ServingNode, got {type(n).__name__}")
        if n.peer in out:
            raise LocalProtocolError(f"inference: placement lists peer {n.peer} twice; give each peer once")
        out[n.peer] = n
    return out


def _check(model: str, model_bytes_needed: int, partitions: int, max_peers: int) -> None:
    if not isinstance(model, str) or not model:
        raise LocalProtocolError(f"inference: placement model name must be a non-empty str, got {model!r}")
    if type(model_bytes_needed) is not int or model_bytes_needed < 0:
        raise LocalProtocolError(f"inference: {model}: model_bytes_needed must be an int >= 0, got {model_bytes_needed!r}")
    if type(partitions) is not int or not 1 <= partitions <= MAX_PARTITIONS:
        raise LocalProtocolError(f"inference: {model}: partitions must be an int in 1..{MAX_PARTITIONS}, got {partitions!r}")
    if type(max_peers) is not int or not 1 <= max_peers <= MAX_PARTITION_PEERS:
        raise LocalProtocolError(f"inference: {model}: max_peers must be an int in 1..{MAX_PARTITION_PEERS}, got {max_peers!r}")


def plan_placement(
    model: str,
    model_bytes_needed: int,
    nodes: Sequence[ServingNode],
    *,
    partitions: int = 1,
    max_peers: int = MAX_PARTITION_PEERS,
    required_capabilities: Sequence[str] = (),
) -> dict[int, tuple[str, ...]]:
    """Partition index -> eligible peer ids, best first, at most ``max_peers`` each; ``{}`` when none is eligible.

    ``model_bytes_needed`` is what a node needs free to serve one partition (the
    whole model when ``partitions`` is 1). See the module doc for the orders.
    """
    _check(model, model_bytes_needed, partitions, max_peers)
    ok = [n for n in _by_peer(nodes).values() if eligible(n, model_bytes_needed, required_capabilities)]
    if not ok:
        return {}
    strong = tuple(n.peer for n in sorted(ok, key=_strong_key))[:max_peers]
    plan = {i: strong for i in range(partitions)}
    if partitions >= 2:
        plan[0] = tuple(n.peer for n in sorted(ok, key=_data_side_key))[:max_peers]
    return plan


def _clearly_better(a: ServingNode, b: ServingNode, *, data_side: bool, threshold: float) -> bool:
    if data_side and a.strength != b.strength:
        return a.strength < b.strength
    if a.speed_ms is not None and b.speed_ms is not None:
        return a.speed_ms < b.speed_ms * (1.0 - threshold)
    if a.speed_ms is None and b.speed_ms is None and not data_side:
        return a.strength > b.strength
    return False  # a measurement appearing or expiring is advert noise, not a reason to move


def placement_changed(
    current: Mapping[int, Sequence[str]] | None,
    planned: Mapping[int, Sequence[str]],
    nodes: Sequence[ServingNode],
    *,
    model_bytes_needed: int,
    required_capabilities: Sequence[str] = (),
    threshold: float = SPEED_HYSTERESIS,
) -> bool:
    """Whether ``planned`` should replace ``current`` (rules 1-4 of the module doc); False when ``planned`` is empty."""
    if not (isinstance(threshold, (int, float)) and 0 <= threshold < 1):
        raise LocalProtocolError(f"inference: placement threshold must be a number in [0, 1), got {threshold!r}")
    if not planned:
        return False
    if not current or set(current) != set(planned):
        return True  # rule 1
    by_peer = _by_peer(nodes)
    data_side = len(planned) >= 2
    for index, placed in current.items():
        plan = tuple(planned[index])
        placed = tuple(placed)
        front = data_side and index == 0
        if any(p not in by_peer or not eligible(by_peer[p], model_bytes_needed, required_capabilities) for p in placed):
            return True  # rule 2
        newcomers = [p for p in plan if p not in placed]
        if newcomers and len(placed) < len(plan):
            return True  # rule 3
        if not plan or not placed:
            continue
        if plan[0] != placed[0] and _clearly_better(by_peer[plan[0]], by_peer[placed[0]], data_side=front, threshold=threshold):
            return True  # rule 4: the top moves
        if newcomers:
            key = _data_side_key if front else _strong_key
            worst = max((by_peer[p] for p in placed if p not in plan), key=key)
            if _clearly_better(by_peer[newcomers[0]], worst, data_side=front, threshold=threshold):
                return True  # rule 4: a full placement takes a clearly better newcomer
    return False


__all__ = [
    "MAX_PARTITION_PEERS",
    "SPEED_HYSTERESIS",
    "TIERS",
    "ServingNode",
    "eligible",
    "placement_changed",
    "plan_placement",
]
