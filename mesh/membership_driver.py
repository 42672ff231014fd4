"""The trio driver of the SWIM/Lifeguard membership core (STYLE §3: thin, no decisions).

It feeds ``swim`` notes from peers into ``mesh.membership.Membership``, ticks the
core at its deadlines, sends what the core says is due as one-way notes (each
in its own task, so one hung peer delays nobody), and hands the core's verdicts
to the node. libp2p's connection events stay hints: only the core declares a
peer dead.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Callable

import trio

from crdt.errors import MeshError

from .membership import Event, Membership, MembershipConfig, decode, encode
from .rpc import RpcPlane

log = logging.getLogger("meshnode.membership")

SEND_TIMEOUT = 1.0
METHOD = "swim"


class MembershipDriver:
    """Runs one node's membership core over the RPC plane."""

    def __init__(self, self_id: str, rpc: RpcPlane, on_event: Callable[[Event], None],
                 *, config: MembershipConfig | None = None, rng: random.Random | None = None) -> None:
        self.core = Membership(self_id, rng=rng or random.Random(), config=config or MembershipConfig())
        self._rpc = rpc
        self._on_event = on_event
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        rpc.route_note(METHOD, self.receive)

    def join(self, peer: str) -> None:
        """A peer we can talk to (from hello or an advert): probe it from now on."""
        self.core.join(peer, trio.current_time())
        self._wake.set()

    def verdict(self, peer: str) -> str:
        """The core's current view of ``peer``: "alive", "suspect", "dead", "left" or "" if unknown."""
        member = self.core.members().get(peer)
        return member.state.value if member is not None else ""

    def leave(self) -> None:
        """Gossip our graceful departure (sent by the next round)."""
        self.core.leave(trio.current_time())
        self._wake.set()

    async def receive(self, peer: str, body: Any) -> None:
        """A membership message from a peer; malformed ones raise RemoteProtocolError."""
        self.core.receive(peer, decode(body), trio.current_time())
        self._wake.set()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Drive the core until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await self.flush()
                deadline = self.core.next_deadline()
                self._wake = trio.Event()
                with trio.move_on_at(min(deadline, trio.current_time() + 1.0)):
                    await self._wake.wait()

    async def flush(self) -> None:
        """Tick, send what is due, report verdicts."""
        self.core.tick(trio.current_time())
        for peer, msg in self.core.outgoing():
            self._nursery.start_soon(self._send, peer, encode(msg))
        for event in self.core.events():
            self._on_event(event)

    async def _send(self, peer: str, body: dict) -> None:
        # A lost probe is what SWIM is built for: the core notices the missing ack.
        with trio.move_on_after(SEND_TIMEOUT):
            try:
                await self._rpc.notify(peer, METHOD, body)
            except MeshError:
                pass

    def statistics(self) -> dict:
        """The core's counters."""
        return self.core.statistics()
