"""``node.config`` and ``node.tasks``: the Raft-replicated settings and task leases, and how they are read.

Reads come in two kinds:

* **linearizable** (the default): the read is a command through the Raft log
  (``ConfigGet``, ``ConfigList``, ``TaskList``, ``TaskCheck``), so it sees every
  write that finished before it started. It needs a majority: without one it
  fails after ``raft.write_timeout`` with ``consensus: no majority …``.
* **stale**: the same read command applied to the state this node has applied
  (``consensus.apply`` of a read changes nothing), without asking anyone. It
  works without a majority and says how old it may be: ``age_s`` is the
  seconds since this node last heard its leader (a follower) or a majority (a
  leader), from ``Log.state_age()``; None when it never did. A node that does
  not vote asks a voter it sees alive (``raft.read``) and shows that voter's age.

Task commands carry the time of the voter that submits them (``stamp``):
``consensus.leases`` explains why only voters' clocks count. ``lease_left_s``
in answers is computed on the answering node's wall clock. Both read it through
``mesh.clock.wall`` (the chaos harness's clock nemesis skews exactly those reads).

``watch`` follows the applied state (a voter looks at its own every 50 ms, a
forwarder asks a voter every 0.5 s) and yields each change of a watched key:
a key written twice between two looks shows once, with its latest value.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import trio

from consensus import (
    ConfigCas,
    ConfigDelete,
    ConfigGet,
    ConfigList,
    ConfigSet,
    TaskAcquire,
    TaskCheck,
    TaskList,
    TaskRelease,
    TaskRenew,
    apply,
    decode_command,
    encode_command,
)
from consensus.commands import READS, TIMED
from crdt.errors import LocalProtocolError, MeshError, RemoteProtocolError

from .clock import wall

if TYPE_CHECKING:
    from .node import Node

WATCH_INTERVAL = 0.05  # seconds between a voter's looks at its applied state
WATCH_REMOTE_INTERVAL = 0.5  # seconds between a forwarder's stale reads from a voter
READ_TIMEOUT = 5.0  # seconds a forwarded stale read may take


def stamp(command: Any) -> Any:
    """``command`` with ``now`` set to this node's wall clock, for the commands that carry time."""
    if isinstance(command, TIMED):
        return dataclasses.replace(command, now=wall())
    return command


def _age(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def local_read(node: Node, command: Any) -> dict:
    """Answer a read command from this voter's applied state: ``{"result", "stale", "age_s", "read_on"}``."""
    if node.raft is None:
        raise MeshError("consensus: this node does not vote; ask a voter")
    if not isinstance(command, READS):
        raise LocalProtocolError(f"consensus: {type(command).__name__} is not a read")
    _, result = apply(node.raft.state(), stamp(command))
    return {"result": result, "stale": True, "age_s": _age(node.raft.state_age()), "read_on": node.settings.name}


async def read(node: Node, command: Any, *, stale: bool) -> dict:
    """Answer a read command, through the log or (``stale``) from applied state; same shape either way."""
    if not stale:
        return {"result": await node.submit(command), "stale": False, "age_s": 0.0, "read_on": node.settings.name}
    if node.raft is not None:
        return local_read(node, command)
    try:
        reply = await node.rpc.call(node._voter_peer(), "raft.read", encode_command(command), timeout=READ_TIMEOUT)
    except MeshError as exc:
        raise MeshError(f"consensus: a stale read needs a voter and none answered ({exc})") from exc
    if not (isinstance(reply, dict) and set(reply) == {"result", "stale", "age_s", "read_on"}
            and isinstance(reply["read_on"], str)):
        raise RemoteProtocolError("mesh: malformed raft.read reply")
    return reply


async def on_raft_read(node: Node, peer: str, body: Any) -> dict:
    """A forwarder's stale read: answer it from this voter's applied state."""
    if not isinstance(body, bytes):
        raise RemoteProtocolError("mesh: raft.read needs an encoded read command")
    command = decode_command(body)
    if not isinstance(command, READS):
        raise RemoteProtocolError(f"mesh: raft.read takes reads only, not {command.TYPE}")
    return local_read(node, command)


def _meta(answer: dict) -> dict:
    return {k: answer[k] for k in ("stale", "age_s", "read_on")}


class ClusterConfig:
    """``node.config``: the Raft-replicated key/value settings of the mesh."""

    def __init__(self, node: Node) -> None:
        self._node = node

    async def set(self, key: str, value: Any) -> dict:
        """Commit ``key = value`` through Raft; returns once applied."""
        return await self._node.submit(ConfigSet(key=key, value=value))

    async def get(self, key: str, *, stale: bool = False) -> Any:
        """The value of ``key`` (None when unset); linearizable unless ``stale``."""
        entry = await self.entry(key, stale=stale)
        return None if entry is None else entry["value"]

    async def entry(self, key: str, *, stale: bool = False) -> dict | None:
        """``{"value", "revision", "stale", "age_s", "read_on"}`` for ``key``, or None when unset."""
        answer = await read(self._node, ConfigGet(key=key), stale=stale)
        return None if answer["result"] is None else {**answer["result"], **_meta(answer)}

    async def cas(self, key: str, value: Any, expected_revision: int) -> dict:
        """Set ``key`` only if its entry is at ``expected_revision`` (0: only if unset).

        Returns ``{"key", "swapped", "exists", "value", "entry_revision", "revision"}``:
        when ``swapped`` is False, ``value`` and ``entry_revision`` are the
        current entry's, to retry from.
        """
        request = os.urandom(8).hex()  # lets a retried submit recognise its own write
        return await self._node.submit(
            ConfigCas(key=key, expected_revision=expected_revision, value=value, request=request)
        )

    async def delete(self, key: str) -> dict:
        """Remove ``key``; ``{"key", "deleted", "revision"}`` (``deleted`` False if it was not set)."""
        return await self._node.submit(ConfigDelete(key=key))

    async def list(self, prefix: str = "", *, stale: bool = False) -> dict:
        """``{"revision", "entries": [{key, value, revision}], "stale", "age_s", "read_on"}`` under ``prefix``."""
        answer = await read(self._node, ConfigList(prefix=prefix), stale=stale)
        return {**answer["result"], **_meta(answer)}

    async def watch(self, key: str | None = None, *, prefix: str | None = None) -> AsyncIterator[dict]:
        """Yield ``{"key", "value", "revision", "deleted"}`` for each change of ``key`` (or keys under ``prefix``).

        Runs until the caller stops iterating (use ``changes`` for a bounded wait).
        """
        async for event in self._watch(key, prefix):
            yield event

    async def changes(self, key: str | None = None, *, prefix: str | None = None, count: int = 1,
                      timeout: float | None = None) -> list[dict]:
        """Wait for ``count`` changes (or until ``timeout`` seconds pass) and return them."""
        events: list[dict] = []
        deadline = trio.current_time() + (math.inf if timeout is None else timeout)
        async for event in self._watch(key, prefix, heartbeat=1.0, deadline=deadline):
            if event is not None:
                events.append(event)
            if len(events) >= count:
                break
        return events

    async def _watch(self, key: str | None, prefix: str | None, *, heartbeat: float | None = None,
                     deadline: float = math.inf) -> AsyncIterator[dict | None]:
        """``watch``, yielding None after every ``heartbeat`` seconds without a change, ending at ``deadline``.

        No cancel scope spans a ``yield`` (trio forbids that in async generators): the bound is checked here.
        """
        if (key is None) == (prefix is None):
            raise MeshError("config: watch takes a key or a prefix, not both or neither")
        command = ConfigGet(key=key) if key is not None else ConfigList(prefix=prefix)
        seen, _ = await self._view(command)
        quiet_since = trio.current_time()
        while True:
            local = self._node.raft is not None
            pause = WATCH_INTERVAL if local else WATCH_REMOTE_INTERVAL
            if trio.current_time() + pause > deadline:
                await trio.sleep_until(deadline)
                return
            await trio.sleep(pause)
            try:
                now_view, revision = await self._view(command)
            except MeshError:
                continue  # a forwarder between voters: look again
            events = [
                {"key": k, "value": v, "revision": r, "deleted": False}
                for k, (v, r) in now_view.items() if seen.get(k, (None, None))[1] != r
            ] + [
                {"key": k, "value": None, "revision": revision, "deleted": True} for k in seen if k not in now_view
            ]
            seen = now_view
            for event in sorted(events, key=lambda e: (e["revision"], e["key"])):
                yield event
            if events:
                quiet_since = trio.current_time()
            elif heartbeat is not None and trio.current_time() - quiet_since >= heartbeat:
                quiet_since = trio.current_time()
                yield None

    async def _view(self, command: Any) -> tuple[Mapping[str, tuple[Any, int]], int]:
        """The watched keys as ``{key: (value, revision)}``, and the cluster revision, from applied state."""
        node = self._node
        if node.raft is not None:
            state = node.raft.state()
            if isinstance(command, ConfigGet):
                entry = state.config.get(command.key)
                return ({} if entry is None else {command.key: (entry.value, entry.revision)}), state.revision
            return {
                k: (e.value, e.revision) for k, e in state.config.items() if k.startswith(command.prefix)
            }, state.revision
        exact = command.key if isinstance(command, ConfigGet) else None
        result = (await read(node, ConfigList(prefix=exact or command.prefix), stale=True))["result"]
        entries = [e for e in result["entries"] if exact is None or e["key"] == exact]
        return {e["key"]: (e["value"], e["revision"]) for e in entries}, result["revision"]


def _lease_left(doc: dict) -> dict:
    """``doc`` with ``lease_left_s``: seconds until ``expires_at`` on this node's clock (None for a free task)."""
    expires = doc.get("expires_at")
    left = None if expires is None else round(max(expires - wall(), 0.0), 3)
    return {**doc, "lease_left_s": left}


class ClusterTasks:
    """``node.tasks``: task assignments with leases and fencing tokens (see ``consensus.leases``).

    ``holder`` defaults to this node's peer id. A holder must stop acting for a
    task when its lease runs out on its own clock (count from before the call),
    and must pass its fencing token to every resource it touches for the task.
    """

    def __init__(self, node: Node) -> None:
        self._node = node

    def _holder(self, holder: str | None) -> str:
        return self._node.peer_id if holder is None else holder

    async def acquire(self, task: str, lease: float, *, holder: str | None = None) -> dict:
        """Take ``task`` for ``lease`` seconds; ``acquired`` False (with the current holder) if someone has it."""
        command = TaskAcquire(task=task, holder=self._holder(holder), lease=lease, now=wall())
        return _lease_left(await self._node.submit(command))

    async def renew(self, task: str, token: int, lease: float, *, holder: str | None = None) -> dict:
        """Extend the live lease fenced by ``token`` to ``lease`` seconds from now; ``renewed`` says if it was."""
        command = TaskRenew(task=task, holder=self._holder(holder), token=token, lease=lease, now=wall())
        return _lease_left(await self._node.submit(command))

    async def release(self, task: str, token: int, *, holder: str | None = None) -> dict:
        """Give ``task`` up if still held under ``token``; ``released`` says if it was."""
        command = TaskRelease(task=task, holder=self._holder(holder), token=token, now=wall())
        return _lease_left(await self._node.submit(command))

    async def check(self, task: str, token: int, *, stale: bool = False) -> dict:
        """Whether ``token`` is ``task``'s live fencing token (``valid``), with the current lease."""
        answer = await read(self._node, TaskCheck(task=task, token=token, now=wall()), stale=stale)
        return {**_lease_left(answer["result"]), **_meta(answer)}

    async def list(self, *, stale: bool = False) -> dict:
        """``{"revision", "clock", "fence", "tasks": [lease + lease_left_s], "stale", "age_s", "read_on"}``."""
        answer = await read(self._node, TaskList(), stale=stale)
        result = answer["result"]
        return {**result, "tasks": [_lease_left(t) for t in result["tasks"]], **_meta(answer)}


__all__ = ["ClusterConfig", "ClusterTasks", "local_read", "on_raft_read", "read", "stamp"]
