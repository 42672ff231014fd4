"""When to redial peers we know but cannot reach (sans-IO).

Theory of operation. After a partition heals, nothing else brings the two sides
back quickly: the health ping aborted their connections, SWIM only pings a random
dead member every ``reconnect_interval``, and libp2p redials nobody (only join
addresses are retried, once a second). So the node tells this schedule, each time
it looks, which peers it wants back (``want``): known to it, not departed, admitted,
and not alive — without a connection, suspected or declared dead by the failure
detector, or silent. Each gets an attempt (connect and hello; over a connection it
still holds, a hello that must answer quickly or the connection is replaced, since
after a partition TCP's backed-off retransmissions hold it for seconds) ``interval``
seconds (± ``jitter``) after its previous attempt ended — at once the first time —
one attempt per peer at a time and at most ``parallel`` at once. With the host's
short TCP connect deadline, a SYN lost in the partition is replaced by a fresh one
within about half a second instead of the kernel's 1 s, 3 s, 7 s retransmits.

A peer that is really gone must cost little: after ``fast_attempts`` attempts in a row
the gap doubles with each further one, up to ``max_interval``. A peer no longer wanted
(reached, left, refused) is dropped with its count, so its next loss starts fast again.

Like every core here it reads no clock and has no randomness of its own: ``now`` and a
``random.Random`` are passed in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from crdt.errors import LocalProtocolError

__all__ = ["RedialConfig", "Redialer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RedialConfig:
    """Tuning of the redial schedule; every default is explained beside it."""

    interval: float = 0.25
    """Seconds between the end of one attempt to a peer and the next, while fast."""
    jitter: float = 0.2
    """Each gap is scaled by a uniform factor in ``1 ± jitter``, so nodes do not dial in step."""
    fast_attempts: int = 40
    """Attempts in a row at ``interval`` (10–30 s of trying, as connects fail fast or time out)
    before backing off: long enough for any partition the failure detector can see heal."""
    max_interval: float = 10.0
    """Longest gap once backed off: a peer gone for good costs one dial per this many seconds."""
    parallel: int = 4
    """Attempts in flight at once, over all peers."""

    def __post_init__(self) -> None:
        if not 0 < self.interval <= self.max_interval:
            raise LocalProtocolError("redial: need 0 < interval <= max_interval")
        if not 0 <= self.jitter < 1:
            raise LocalProtocolError("redial: need 0 <= jitter < 1")
        if self.fast_attempts < 0 or self.parallel < 1:
            raise LocalProtocolError("redial: need fast_attempts >= 0 and parallel >= 1")


@dataclass(slots=True)
class _Peer:
    due: float
    attempts: int = 0


class Redialer:
    """The redial schedule of one node (see the module docstring)."""

    def __init__(self, *, rng: random.Random, config: RedialConfig | None = None) -> None:
        if not isinstance(rng, random.Random):
            raise LocalProtocolError("redial: rng must be a random.Random (the core has no randomness of its own)")
        self.config = config or RedialConfig()
        self._rng = rng
        self._peers: dict[str, _Peer] = {}
        self._inflight: set[str] = set()

    def want(self, peers: Iterable[str], now: float) -> None:
        """The peers to get back, as of ``now``; a new one is due at once, one missing is dropped."""
        wanted = set(peers)
        for peer in [p for p in self._peers if p not in wanted]:
            del self._peers[peer]
        for peer in wanted:
            if peer not in self._peers:
                self._peers[peer] = _Peer(due=now)

    def due(self, now: float) -> list[str]:
        """Peers to dial now, earliest first; each is in flight until ``done``."""
        free = self.config.parallel - len(self._inflight)
        if free <= 0:
            return []
        ready = sorted((p.due, peer) for peer, p in self._peers.items() if peer not in self._inflight and p.due <= now)
        chosen = [peer for _, peer in ready[:free]]
        self._inflight.update(chosen)
        return chosen

    def done(self, peer: str, now: float) -> None:
        """An attempt to ``peer`` ended (either way): the next one, if still wanted, waits a gap."""
        self._inflight.discard(peer)
        state = self._peers.get(peer)
        if state is None:
            return
        state.attempts += 1
        state.due = now + self.gap(state.attempts)

    def gap(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th attempt in a row (jittered)."""
        cfg = self.config
        over = attempts - cfg.fast_attempts
        base = cfg.interval if over <= 0 else min(cfg.max_interval, cfg.interval * 2.0 ** min(over, 64))
        return base * self._rng.uniform(1 - cfg.jitter, 1 + cfg.jitter)

    def next_deadline(self) -> float:
        """When ``due`` next has a peer (``inf`` if none is waiting); ignores the parallel limit."""
        waiting = [p.due for peer, p in self._peers.items() if peer not in self._inflight]
        return min(waiting, default=math.inf)

    def attempts(self, peer: str) -> int:
        """Attempts in a row to ``peer`` so far (0 if it is not wanted)."""
        state = self._peers.get(peer)
        return state.attempts if state is not None else 0
