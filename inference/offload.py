"""Where a request runs: here, or on a peer (pure; the walking-skeleton rule).

Theory of operation
-------------------
Inputs are this node's queue (requests waiting or running for the model) and
its bound, plus each peer's last advertised load: its queue and bound for the
model, whether it has the model loaded, its measured run time for the model
(when it has run it) and the measured round trip. The caller passes only
unexpired adverts: soft state past its expiry is no figure at all.

* While the local queue has room, the request runs here. Inference is cheap to
  start locally and sending tensors over py-libp2p is not (~2 ms per round trip,
  50-70 MB/s), so a node offloads only when it must.
* When the local queue is full, the request goes to the peer that has the model
  and room, with the earliest predicted completion ``(queue + 1) * run_ms +
  rtt_ms`` (the request waits behind the peer's queue, then runs). A peer that
  has not measured the model yet is predicted at the median of those that have,
  so it gets its share and a figure. Ties, or no figures at all, go to the most
  spare capacity: lowest ``queue / max_queue``, then the stronger tier (cloud
  over edge over device), then lowest RTT, then peer id so every node breaks
  ties the same way.
* When no such peer has room either, the request is refused with
  ``Overloaded``: queues are bounded and refuse rather than grow without end.

Invariants: never choose a peer without the model or with a full queue; never
return "run here" when the local queue is full. Adverts are soft state and may
be stale, so a peer may still refuse; the caller then retries elsewhere or here.
The full planner (compute, transfer and queue time, partitions) replaces this.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from crdt.errors import LocalProtocolError
from inference.errors import Overloaded


@dataclass(frozen=True, slots=True)
class PeerLoad:
    """A peer's advertised load for one model, as last seen."""

    peer: str
    queue: int
    max_queue: int
    has_model: bool
    rtt_ms: float
    strength: int = 0  # tier rank (device 0, edge 1, cloud 2): ties go to the stronger peer
    run_ms: float | None = None  # the peer's measured run time of the model; None: not measured

    def __post_init__(self) -> None:
        if not isinstance(self.peer, str) or not self.peer:
            raise LocalProtocolError(f"inference: peer must be a non-empty str, got {self.peer!r}")
        for name in ("queue", "max_queue"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise LocalProtocolError(f"inference: {name} must be an int >= 0, got {value!r}")
        if not isinstance(self.rtt_ms, (int, float)) or not math.isfinite(self.rtt_ms) or self.rtt_ms < 0:
            raise LocalProtocolError(f"inference: rtt_ms must be a finite number >= 0, got {self.rtt_ms!r}")
        run = self.run_ms
        if run is not None and (not isinstance(run, (int, float)) or not math.isfinite(run) or run < 0):
            raise LocalProtocolError(f"inference: run_ms must be None or a finite number >= 0, got {run!r}")

    @property
    def has_room(self) -> bool:
        """Whether this peer has the model and can queue one more request."""
        return self.has_model and self.queue < self.max_queue


def choose_target(local_queue: int, local_max_queue: int, peers: Sequence[PeerLoad]) -> str | None:
    """The peer to send a request to, or None to run it here; Overloaded if nobody can."""
    ints = type(local_queue) is int and type(local_max_queue) is int
    if not ints or min(local_queue, local_max_queue) < 0:
        raise LocalProtocolError(
            f"inference: local queue and bound must be ints >= 0, got {local_queue!r}/{local_max_queue!r}"
        )
    if local_queue < local_max_queue:
        return None
    candidates = [p for p in peers if p.has_room]
    if not candidates:
        with_model = sum(1 for p in peers if p.has_model)
        raise Overloaded(
            f"inference: this node is busy (queue {local_queue}/{local_max_queue}) and none of "
            f"the {with_model} peers with the model has room; retry later or add capacity"
        )
    measured = [p.run_ms for p in candidates if p.run_ms is not None]
    typical = statistics.median(measured) if measured else 0.0

    def predicted_ms(p: PeerLoad) -> float:
        run = typical if p.run_ms is None else p.run_ms
        return (p.queue + 1) * run + p.rtt_ms if measured else 0.0

    best = min(candidates, key=lambda p: (predicted_ms(p), p.queue / p.max_queue, -p.strength, p.rtt_ms, p.peer))
    return best.peer
