"""The thin trio side of sensor-state consistency levels (decisions in ``mesh.sensor_quorum``).

``Replicas`` asks every other member at once and feeds the answers to a
``WriteQuorum``/``ReadQuorum`` until it is done, cannot be met, or the timeout
passes. The calls run in the node's nursery, not under the caller: a caller
that returns as soon as its quorum is met leaves the slower calls to end on
their own (each has the same timeout), instead of cancelling a request halfway
through writing it to a shared stream.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from crdt.errors import MeshError

from .sensor_quorum import counted_peers

if TYPE_CHECKING:
    from .node import Node
    from .sensor_quorum import _Quorum

Call = Callable[..., Awaitable[Any]]  # rpc.call(peer, method, body, *, timeout=...)


class Replicas:
    """How sensor state reaches the other members; a node alone until ``Node`` attaches the mesh."""

    def __init__(self, members: Callable[[], list[str]], call: Call | None, spawn: Callable[..., None] | None) -> None:
        self._members = members
        self._call = call
        self._spawn = spawn

    @classmethod
    def alone(cls) -> Replicas:
        """No peers: every quorum is this node alone."""
        return cls(list, None, None)

    @classmethod
    def for_node(cls, node: Node) -> Replicas:
        """The members ``node`` knows (not left, still admitted), its RPC plane and its nursery."""

        def members() -> list[str]:
            now = trio.current_time()
            states = {
                rec.descriptor.peer_id: rec.state(now)
                for rec in node.peers.records()
                if node.admission.admits(rec.descriptor.peer_id)
            }
            return counted_peers(states)

        return cls(members, node.rpc.call, node._nursery.start_soon)

    def members(self) -> list[str]:
        """The other members a quorum counts right now."""
        return self._members() if self._call is not None else []

    async def gather(self, quorum: _Quorum, method: str, body: Any,
                     on_reply: Callable[[str, Any], Any], timeout: float) -> bool:
        """Ask every peer of ``quorum``; True once it is done, False when hopeless or out of time.

        ``on_reply(peer, body)`` records an answer in the quorum; a ``MeshError``
        from it (a malformed answer) counts as that peer failing.
        """
        if quorum.done or not quorum.peers:
            return quorum.done
        send, recv = trio.open_memory_channel(math.inf)
        async with recv:
            async with send:
                for peer in quorum.peers:
                    self._spawn(self._ask, send.clone(), peer, method, body, timeout)
            with trio.move_on_after(timeout):
                async for peer, ok, result in recv:
                    if ok:
                        try:
                            on_reply(peer, result)
                        except MeshError as exc:
                            quorum.fail(peer, str(exc))
                    else:
                        quorum.fail(peer, result)
                    if quorum.done or quorum.hopeless:
                        break
        return quorum.done

    async def _ask(self, send: trio.MemorySendChannel, peer: str, method: str, body: Any, timeout: float) -> None:
        async with send:
            try:
                result = (peer, True, await self._call(peer, method, body, timeout=timeout))
            except MeshError as exc:
                result = (peer, False, str(exc))
            try:
                send.send_nowait(result)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the caller already has its answer
