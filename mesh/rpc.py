"""Request/reply and one-way notes over long-lived libp2p streams.

One outbound stream per peer carries all our requests to it, multiplexed by
request id; the peer answers on the same stream. Opening a stream costs ~8 ms
in py-libp2p against ~2 ms for a round trip on an open one, so streams stay
open until they break.

Where a peer offers one, calls go over a direct link (``link.py``): the same
frames over an AES-GCM-protected TCP connection whose key was handed over on
the libp2p stream, ~10x faster than py-libp2p's own Noise and Yamux. The
libp2p stream stays open beside it and carries the calls whenever the link is
not (yet) up or has broken.

Bounds everywhere: at most ``max_inflight`` outstanding calls per peer (the
caller gets ``Busy`` beyond it), at most ``max_handlers`` requests served at
once per inbound stream (the peer gets a "busy" error reply), and frames over
``MAX_FRAME`` are refused on both sides. A peer that sends garbage gets its
stream reset; the node keeps running.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from crdt.errors import LocalProtocolError, MeshError, RemoteProtocolError

from .host import DialError, Host, Stream
from .link import LINK_VERSION, LinkService, LinkStream
from .wire import PROTOCOL_ID, FrameDecoder, Note, Reply, Request, encode_envelope

log = logging.getLogger("meshnode.rpc")

Handler = Callable[[str, Any], Awaitable[Any]]
NoteHandler = Callable[[str, Any], Awaitable[None]]


class Busy(MeshError):
    """Too many requests in flight; try again later or elsewhere."""


class RemoteError(MeshError):
    """The peer answered with an error."""


class CallTimeout(MeshError):
    """The peer did not answer before the deadline."""


LINK_RETRY = 30.0  # seconds before trying again to open a link to a peer that could not give us one
STREAM_FLOOD = 64  # request streams refused to one peer before it is reported as abusive
GARBAGE_FLOOD = 16  # streams or links one peer broke with garbage before it is reported as abusive


class _Channel:
    """Our outbound stream (libp2p or link) to one peer and the calls waiting on it."""

    def __init__(self, stream: Stream | LinkStream) -> None:
        self.stream = stream
        self.write_lock = trio.Lock()
        self.pending: dict[int, list] = {}
        self.closed = False


class RpcPlane:
    """Serves our methods to peers and calls theirs."""

    def __init__(
        self,
        host: Host,
        nursery: trio.Nursery,
        *,
        max_inflight: int = 256,
        max_handlers: int = 64,
        max_streams_per_peer: int = 8,
    ) -> None:
        self._host = host
        self._nursery = nursery
        self._max_inflight = max_inflight
        self._max_handlers = max_handlers
        self._max_streams = max_streams_per_peer
        self._inbound: dict[str, int] = {}  # open request streams per peer
        self._handlers: dict[str, Handler] = {}
        self._notes: dict[str, NoteHandler] = {}
        self._channels: dict[str, _Channel] = {}
        self._opening: dict[str, trio.Lock] = {}
        self._links: LinkService | None = None
        self._link_chans: dict[str, _Channel] = {}
        self._link_retry: dict[str, float] = {}  # peer -> when we may try to open a link again
        self._inbound_links: dict[str, set[LinkStream]] = {}
        self._offences: dict[tuple[str, str], int] = {}  # (peer, kind) -> count since last report
        self.on_abuse: Callable[[str, str], None] | None = None  # (peer, what it did): the node cuts it off
        self.may_send: Callable[[str, str], bool] | None = None  # (peer, method): False for refused peers
        self._ids = itertools.count(1)
        self.stats = {
            "calls": 0, "served": 0, "refused_busy": 0, "bad_frames": 0, "notes_dropped": 0, "streams_refused": 0,
            "link_calls": 0, "link_failures": 0,
            # Every frame (request, reply or note) written to or read from a peer: the chaos harness's
            # messages per operation. Raft's own traffic (pysyncobj's TCP) is not in it.
            "frames_sent": 0, "frames_received": 0,
        }
        host.serve(PROTOCOL_ID, self._serve_stream)

    def route(self, method: str, handler: Handler) -> None:
        """Answer requests for ``method`` with ``handler(peer_id, body)``."""
        self._handlers[method] = handler

    def route_note(self, method: str, handler: NoteHandler) -> None:
        """Run ``handler(peer_id, body)`` for each one-way note ``method``."""
        self._notes[method] = handler

    async def open_links(self, bind_ip: str, guard: Callable[[str, Handler], Handler] | None = None) -> int:
        """Listen for direct links on ``bind_ip`` and offer them to peers; returns the port.

        ``guard(method, handler)`` wraps the ticket handler as the node wraps its
        own routes, so only admitted peers are handed a link key.
        """
        self._links = LinkService(bind_ip, self._nursery, self._serve_link)
        port = await self._nursery.start(self._links.serve)
        self.route("link.open", guard("link.open", self._on_link_open) if guard else self._on_link_open)
        return port

    async def _on_link_open(self, peer: str, body: Any) -> dict:
        if not isinstance(body, dict) or body.get("v") != LINK_VERSION:
            raise RemoteProtocolError(f"mesh: link.open wants version {LINK_VERSION}")
        return self._links.issue(peer, trio.current_time())

    async def _serve_link(self, link: LinkStream) -> None:
        links = self._inbound_links.setdefault(link.peer_id, set())
        links.add(link)
        try:
            await self._serve_stream(link)
        finally:
            links.discard(link)
            if not links:
                self._inbound_links.pop(link.peer_id, None)

    # -- serving ---------------------------------------------------------------

    async def _serve_stream(self, stream: Stream) -> None:
        # A peer needs one request stream (two during a reconnect); one opening streams by
        # the hundred is cut off here instead of costing a task and buffers per stream.
        peer = stream.peer_id
        if self._inbound.get(peer, 0) >= self._max_streams:
            self.stats["streams_refused"] += 1
            if self.stats["streams_refused"] % 100 == 1:
                log.warning("mesh: %s opened more than %d request streams; refusing more", peer, self._max_streams)
            self._offence(peer, "streams", STREAM_FLOOD, f"kept opening request streams past {self._max_streams}")
            await stream.reset()
            return
        self._inbound[peer] = self._inbound.get(peer, 0) + 1
        try:
            await self._serve_requests(stream)
        finally:
            self._inbound[peer] -= 1
            if not self._inbound[peer]:
                del self._inbound[peer]

    def _offence(self, peer: str, kind: str, limit: int, what: str) -> None:
        """Count a peer's misbehaviour; past ``limit`` report it (``on_abuse``) and start counting anew."""
        key = (peer, kind)
        self._offences[key] = self._offences.get(key, 0) + 1
        if self._offences[key] >= limit:
            del self._offences[key]
            if self.on_abuse is not None:
                self.on_abuse(peer, f"{what} ({limit} times)")

    async def _serve_requests(self, stream: Stream) -> None:
        decoder = FrameDecoder()
        write_lock = trio.Lock()
        limiter = trio.Semaphore(self._max_handlers)
        notes = trio.Semaphore(self._max_handlers)
        async with trio.open_nursery() as nursery:
            try:
                while True:
                    data = await stream.receive_some()
                    if not data:
                        break
                    for env in decoder.feed(data):
                        self.stats["frames_received"] += 1
                        if isinstance(env, Request):
                            if limiter.value == 0:
                                self.stats["refused_busy"] += 1
                                log.warning("mesh: refusing %r from %s: %d requests of theirs in flight",
                                            env.method, stream.peer_id, self._max_handlers)
                                reply = Reply(id=env.id, ok=False, error="busy: mesh: too many requests in flight")
                                await self._write(stream, write_lock, reply)
                                self.stats["frames_sent"] += 1
                                continue
                            await limiter.acquire()
                            nursery.start_soon(self._answer, stream, write_lock, limiter, env)
                        elif isinstance(env, Note):
                            handler = self._notes.get(env.method)
                            if handler is None:
                                continue
                            if notes.value == 0:
                                self.stats["notes_dropped"] += 1  # notes are best effort: shed load
                                continue
                            await notes.acquire()
                            nursery.start_soon(self._run_note, handler, stream.peer_id, env, notes)
                        else:
                            raise RemoteProtocolError("mesh: a reply arrived on a request stream")
            except RemoteProtocolError as exc:
                # A peer that sends garbage loses this stream; the node and its other streams go on.
                self.stats["bad_frames"] += 1
                log.warning("mesh: closing stream from %s: %s", stream.peer_id, exc)
                self._offence(stream.peer_id, "garbage", GARBAGE_FLOOD, "kept sending malformed frames")
                nursery.cancel_scope.cancel()
                await stream.reset()
                return
            except MeshError:
                nursery.cancel_scope.cancel()
                return
        await stream.aclose()

    async def _run_note(self, handler: NoteHandler, peer: str, env: Note, limiter: trio.Semaphore) -> None:
        try:
            await handler(peer, env.body)
        except MeshError as exc:
            log.warning("mesh: note %r from %s refused: %s", env.method, peer, exc)
        except Exception:  # a bug of ours must not take the node down
            log.exception("mesh: note handler for %r failed", env.method)
        finally:
            limiter.release()

    async def _answer(self, stream: Stream, lock: trio.Lock, limiter: trio.Semaphore, req: Request) -> None:
        try:
            handler = self._handlers.get(req.method)
            if handler is None:
                reply = Reply(id=req.id, ok=False, error=f"mesh: unknown method {req.method!r}")
            else:
                try:
                    body = await handler(stream.peer_id, req.body)
                    reply = Reply(id=req.id, ok=True, body=body)
                except MeshError as exc:
                    reply = Reply(id=req.id, ok=False, error=str(exc))
                except Exception as exc:  # a bug of ours must not take the node down
                    log.exception("mesh: handler for %r failed", req.method)
                    reply = Reply(id=req.id, ok=False, error=f"mesh: internal error in {req.method}: {exc}")
            self.stats["served"] += 1
            try:
                frame = encode_envelope(reply)
            except LocalProtocolError as exc:
                frame = encode_envelope(Reply(id=req.id, ok=False, error=f"mesh: cannot send the reply: {exc}"))
            try:
                if isinstance(stream, LinkStream):  # a link takes concurrent writers itself
                    await stream.send_all(frame)
                else:
                    async with lock:
                        await stream.send_all(frame)
                self.stats["frames_sent"] += 1
            except MeshError:
                pass  # the caller went away; nothing to tell it
        finally:
            limiter.release()

    @staticmethod
    async def _write(stream: Stream, lock: trio.Lock, env) -> None:
        frame = encode_envelope(env)
        async with lock:
            await stream.send_all(frame)

    # -- calling ---------------------------------------------------------------

    async def _channel(self, peer: str) -> _Channel:
        chan = self._link_chans.get(peer)
        if chan is not None and not chan.closed:
            return chan
        chan = self._channels.get(peer)
        if chan is not None and not chan.closed:
            self._maybe_link(peer, chan)
            return chan
        lock = self._opening.setdefault(peer, trio.Lock())
        async with lock:
            chan = self._channels.get(peer)
            if chan is not None and not chan.closed:
                return chan
            stream = await self._host.open_stream(peer, PROTOCOL_ID)
            chan = _Channel(stream)
            self._channels[peer] = chan
            self._nursery.start_soon(self._read_replies, peer, chan)
            self._maybe_link(peer, chan)
            return chan

    def _maybe_link(self, peer: str, base: _Channel) -> None:
        """Start opening a link to ``peer`` in the background unless one is coming or recently failed."""
        if self._links is None or peer in self._link_chans:
            return
        if self._link_retry.get(peer, 0.0) > trio.current_time():
            return
        self._link_retry[peer] = trio.current_time() + LINK_RETRY  # also marks "opening"
        self._nursery.start_soon(self._open_link, peer, base)

    async def _open_link(self, peer: str, base: _Channel) -> None:
        try:
            with trio.fail_after(5):
                ticket = await self._call_on(peer, base, "link.open", {"v": LINK_VERSION}, 5.0)
                ip = base.stream.remote_ip() if isinstance(base.stream, Stream) else None
                if not ip:
                    raise DialError(f"mesh: no address to open a link to {peer}")
                link = await self._links.dial(peer, ip, ticket, self._nursery)
        except (MeshError, trio.TooSlowError) as exc:
            self.stats["link_failures"] += 1
            log.info("mesh: no direct link to %s (%s); calls stay on libp2p", peer, exc or "timed out")
            return
        if base.closed:  # the peer went away while we dialled
            await link.aclose()
            return
        chan = _Channel(link)
        self._link_chans[peer] = chan
        self._link_retry.pop(peer, None)
        self._nursery.start_soon(self._read_replies, peer, chan)

    async def _read_replies(self, peer: str, chan: _Channel) -> None:
        decoder = FrameDecoder()
        reason = "stream closed"
        try:
            while True:
                data = await chan.stream.receive_some()
                if not data:
                    break
                for env in decoder.feed(data):
                    self.stats["frames_received"] += 1
                    if not isinstance(env, Reply):
                        raise RemoteProtocolError("mesh: peer sent a request on our call stream")
                    slot = chan.pending.pop(env.id, None)
                    if slot is not None:
                        slot[1] = env
                        slot[0].set()
        except RemoteProtocolError as exc:
            reason = str(exc)
            self.stats["bad_frames"] += 1
            log.warning("mesh: dropping call stream to %s: %s", peer, exc)
        finally:
            self._drop(peer, chan, f"mesh: connection to {peer} lost ({reason})")

    async def call(self, peer: str, method: str, body: Any, *, timeout: float = 10.0) -> Any:
        """Call ``method`` on ``peer``; returns the reply body or raises."""
        self.stats["calls"] += 1
        self._check_may_send(peer, method)
        chan = self._link_chans.get(peer)
        if chan is None or chan.closed:
            try:
                with trio.fail_after(timeout):
                    chan = await self._channel(peer)
            except trio.TooSlowError:
                raise CallTimeout(f"mesh: could not reach {peer} within {timeout:g} s") from None
        return await self._call_on(peer, chan, method, body, timeout)

    def _check_may_send(self, peer: str, method: str) -> None:
        if self.may_send is not None and not self.may_send(peer, method):
            raise DialError(f"mesh: {peer} is refused by this node; {method!r} not sent")

    async def _call_on(self, peer: str, chan: _Channel, method: str, body: Any, timeout: float) -> Any:
        if len(chan.pending) >= self._max_inflight:
            raise Busy(f"mesh: {len(chan.pending)} calls already in flight to {peer}; try again later")
        if isinstance(chan.stream, LinkStream):
            self.stats["link_calls"] += 1
        req_id = next(self._ids)
        frame = encode_envelope(Request(id=req_id, method=method, body=body))  # too big: our error, channel fine
        slot: list = [trio.Event(), None]
        chan.pending[req_id] = slot
        try:
            await self._send(peer, chan, frame)
            with trio.move_on_after(timeout):
                await slot[0].wait()
        finally:
            chan.pending.pop(req_id, None)
        result = slot[1]
        if result is None:
            raise CallTimeout(f"mesh: {peer} did not answer {method!r} within {timeout:g} s")
        if isinstance(result, Exception):
            raise result
        if not result.ok:
            if result.error.startswith("busy: "):
                raise Busy(result.error[len("busy: ") :])
            raise RemoteError(result.error)
        return result.body

    async def notify(self, peer: str, method: str, body: Any) -> int:
        """Send a one-way note; returns the bytes it took on the wire; raises if the peer cannot be reached."""
        self._check_may_send(peer, method)
        frame = encode_envelope(Note(method=method, body=body))
        await self._send(peer, await self._channel(peer), frame)
        return len(frame)

    async def _send(self, peer: str, chan: _Channel, frame: bytes) -> None:
        """Write one frame on a channel; a broken stream closes the channel for good."""
        try:
            if isinstance(chan.stream, LinkStream):  # a link takes concurrent writers itself
                await chan.stream.send_all(frame)
            else:
                async with chan.write_lock:
                    await chan.stream.send_all(frame)
        except MeshError:
            self._drop(peer, chan)
            raise
        self.stats["frames_sent"] += 1

    def forget(self, peer: str) -> None:
        """Drop our streams and links to a peer that left or lost its connection; pending calls fail at once."""
        for chans in (self._link_chans, self._channels):
            chan = chans.get(peer)
            if chan is not None:
                self._drop(peer, chan, f"mesh: {peer} left the mesh")
        for key in [k for k in self._offences if k[0] == peer]:
            del self._offences[key]
        for link in self._inbound_links.pop(peer, ()):
            self._nursery.start_soon(link.aclose)
        self._opening.pop(peer, None)
        self._link_retry.pop(peer, None)

    def _drop(self, peer: str, chan: _Channel, reason: str = "") -> None:
        """Close a channel for good: fail its calls, reset its stream (ends its reader)."""
        for chans in (self._channels, self._link_chans):
            if chans.get(peer) is chan:
                del chans[peer]
        for slot in chan.pending.values():
            if slot[1] is None:
                slot[1] = DialError(reason or f"mesh: connection to {peer} lost")
            slot[0].set()
        chan.pending.clear()
        if not chan.closed:
            chan.closed = True
            self._nursery.start_soon(chan.stream.reset)

    def statistics(self) -> dict:
        """Counters and open streams, for status and metrics."""
        return dict(self.stats, streams=len(self._channels), links=len(self._link_chans),
                    links_in=sum(map(len, self._inbound_links.values())))

