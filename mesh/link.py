"""Direct links: an encrypted TCP byte stream to a peer libp2p has already authenticated.

Why: py-libp2p moves ~80 MB/s and ~2,000 round trips a second on loopback where
a bare trio socket moves ~1,800 MB/s and ~25,000 (``bench/rpc.py``); the cost is
in its Python Noise and Yamux layers, not in the network. A link carries the
same RPC frames over a plain TCP connection protected with AES-256-GCM, which
OpenSSL does at >10 GB/s here.

Theory of operation:

* The key travels only inside libp2p. A wants a link to B: it asks B over the
  libp2p RPC plane (Noise + PSK, so B knows it is talking to A's peer id) for
  a ticket; B answers with a fresh 32-byte secret, a 16-byte single-use ticket
  and its link port, and remembers ``ticket -> (A, secret)`` for
  ``TICKET_TTL`` seconds.
* A connects to B's link port and sends ``MAGIC + ticket``. B pops the ticket:
  unknown, expired or already used means the connection is closed at once, so
  only the peer B handed that ticket to (over Noise) can have the secret.
* Each direction has its own AES-256-GCM key derived from the secret (HKDF with
  the ticket as salt) and a 64-bit record counter as nonce, so no nonce repeats
  and records cannot be replayed, dropped, reordered or cut short without the
  next decryption failing. A record is ``u32 length || ciphertext``, at most
  ``RECORD_MAX`` bytes of plaintext; the length is authenticated as associated
  data.
* Writes go into a bounded outbox that one writer task drains: frames from
  concurrent callers are batched into as few records and system calls as fit,
  and a caller's cancel can never leave half a record on the wire. A caller
  waits only while the outbox is over ``OUTBOX_LIMIT`` (backpressure).

A link is only a faster pipe: the RPC plane keeps its libp2p stream to the same
peer, falls back to it whenever a link cannot be opened or breaks, and closes
the link when libp2p says the peer is gone or not admitted.
"""

from __future__ import annotations

import logging
import os
import struct
from collections import deque
from collections.abc import Awaitable, Callable

import trio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crdt.errors import RemoteProtocolError

from .host import DialError

log = logging.getLogger("meshnode.link")

LINK_VERSION = 1
MAGIC = b"MNL1"
TICKET_LEN = 16
SECRET_LEN = 32
TICKET_TTL = 10.0  # seconds from issue to use; a dial on loopback or a LAN takes milliseconds
MAX_TICKETS = 256  # outstanding tickets kept; the oldest go first
HANDSHAKE_TIMEOUT = 3.0  # a connection that does not present a ticket within this is closed
MAX_HANDSHAKES = 64  # unauthenticated connections held at once; more are closed on accept
RECORD_MAX = 256 * 1024  # plaintext bytes per record: large enough to batch, small enough to pipeline
OUTBOX_LIMIT = 8 * 1024 * 1024  # queued bytes before send_all waits
_HEADER = struct.Struct(">I")
_TAG = 16


def _keys(secret: bytes, ticket: bytes) -> tuple[AESGCM, AESGCM]:
    """(dialer→listener, listener→dialer) ciphers for one link."""
    out = []
    for direction in (b"meshnode link dialer->listener", b"meshnode link listener->dialer"):
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=ticket, info=direction).derive(secret)
        out.append(AESGCM(key))
    return out[0], out[1]


def _nonce(counter: int) -> bytes:
    return b"\0\0\0\0" + counter.to_bytes(8, "big")


class LinkStream:
    """One end of a link: the same surface as ``host.Stream`` (receive_some, send_all, aclose, reset)."""

    def __init__(self, sock: trio.SocketStream, peer_id: str, send: AESGCM, recv: AESGCM,
                 nursery: trio.Nursery) -> None:
        self.peer_id = peer_id
        self._sock = sock
        self._send_aead, self._recv_aead = send, recv
        self._send_n = self._recv_n = 0
        self._inbuf = bytearray()
        self._outbox: deque[bytes] = deque()
        self._out_bytes = 0
        self._wake = trio.Event()
        self._drained = trio.Event()
        self._error: str = ""
        self._sending = False
        self.closed = False
        nursery.start_soon(self._writer)

    # -- reading ---------------------------------------------------------------

    async def receive_some(self, max_bytes: int = 65536) -> bytes:
        """The plaintext of the next record (up to ``RECORD_MAX``); ``b""`` once the link is closed.

        Raises ``RemoteProtocolError`` when a record fails authentication or is
        too long: the link is then useless and should be reset.
        """
        while True:
            buf = self._inbuf
            if len(buf) >= 4:
                (length,) = _HEADER.unpack_from(buf)
                if length > RECORD_MAX + _TAG or length < _TAG:
                    raise RemoteProtocolError(f"mesh: link from {self.peer_id} sent a record of {length} bytes")
                if len(buf) >= 4 + length:
                    try:
                        plain = self._recv_aead.decrypt(
                            _nonce(self._recv_n), memoryview(buf)[4:4 + length], bytes(buf[:4]))
                    except InvalidTag:
                        raise RemoteProtocolError(
                            f"mesh: link from {self.peer_id} sent a record that fails authentication") from None
                    self._recv_n += 1
                    del buf[:4 + length]
                    return plain
            try:
                data = await self._sock.receive_some(max(65536, RECORD_MAX + _TAG + 4 - len(buf)))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return b""
            if not data:
                return b""
            buf += data

    # -- writing ---------------------------------------------------------------

    async def send_all(self, data: bytes) -> None:
        """Write ``data``: at once when the link is idle, else queued for the writer task.

        Waits only while the outbox is over ``OUTBOX_LIMIT``. The write itself is
        shielded from cancellation: half a record would break the link.
        """
        while self._out_bytes > OUTBOX_LIMIT and not self.closed:
            await self._drained.wait()
        if self.closed:
            raise DialError(self._error or f"mesh: link to {self.peer_id} is closed")
        if self._sending or self._outbox:
            self._outbox.append(data)
            self._out_bytes += len(data)
            self._wake.set()
            return
        # Idle link: write in the caller's task, saving the writer's wake-up on every lone call.
        await self._write([data])
        if self.closed:
            raise DialError(self._error)

    async def _write(self, chunks: list[bytes]) -> None:
        self._sending = True
        try:
            with trio.CancelScope(shield=True):
                for record in self._records(chunks):
                    await self._sock.send_all(record)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail(f"mesh: link to {self.peer_id} broke: {exc or type(exc).__name__}")
        finally:
            self._sending = False
            if self._outbox:
                self._wake.set()

    async def _writer(self) -> None:
        """Drain the outbox: everything queued while a write was going goes out batched."""
        try:
            while not self.closed:
                if not self._outbox or self._sending:
                    self._wake = trio.Event()
                    await self._wake.wait()
                    continue
                batch = list(self._outbox)
                self._outbox.clear()
                await self._write(batch)
                self._out_bytes = sum(map(len, self._outbox))
                self._drained.set()
                self._drained = trio.Event()
        finally:
            self._drained.set()

    def _records(self, chunks: list[bytes]):
        """Encrypt queued chunks into records of at most ``RECORD_MAX`` plaintext bytes."""
        parts: list[memoryview] = []
        size = 0
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                take = view[: RECORD_MAX - size]
                view = view[len(take):]
                parts.append(take)
                size += len(take)
                if size == RECORD_MAX:
                    yield self._seal(parts, size)
                    parts, size = [], 0
        if parts:
            yield self._seal(parts, size)

    def _seal(self, parts: list[memoryview], size: int) -> bytearray:
        plain = parts[0] if len(parts) == 1 else b"".join(parts)
        record = bytearray(4 + size + _TAG)
        _HEADER.pack_into(record, 0, size + _TAG)
        self._send_aead.encrypt_into(_nonce(self._send_n), plain, bytes(record[:4]), memoryview(record)[4:])
        self._send_n += 1
        return record

    # -- closing ---------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self._error = reason
            self._wake.set()
            self._drained.set()

    async def aclose(self) -> None:
        """Close the link (queued data not yet written is dropped)."""
        self._fail(f"mesh: link to {self.peer_id} was closed")
        with trio.CancelScope(shield=True):
            await self._sock.aclose()

    async def reset(self) -> None:
        """Same as ``aclose``: TCP has no separate abort we need."""
        await self.aclose()


Accept = Callable[[LinkStream], Awaitable[None]]


class LinkService:
    """Our link listener and the tickets we have handed out.

    ``issue(peer, now)`` is called from the libp2p RPC handler (so ``peer`` is
    authenticated); ``dial(...)`` is the other side. ``accept`` is run, in its
    own task, for every link a peer opens to us.
    """

    def __init__(self, bind_ip: str, nursery: trio.Nursery, accept: Accept) -> None:
        self._bind_ip = bind_ip
        self._nursery = nursery
        self._accept = accept
        self._tickets: dict[bytes, tuple[str, bytes, float]] = {}
        self._handshakes = 0
        self.port = 0
        self.stats = {"links_in": 0, "links_out": 0, "refused": 0}

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host=self._bind_ip)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._on_connection, listeners)

    def issue(self, peer: str, now: float) -> dict:
        """A fresh single-use ticket for ``peer``: the body of the ``link.open`` reply."""
        for ticket, (_, _, expiry) in list(self._tickets.items()):
            if expiry < now:
                del self._tickets[ticket]
        while len(self._tickets) >= MAX_TICKETS:
            del self._tickets[next(iter(self._tickets))]
        ticket, secret = os.urandom(TICKET_LEN), os.urandom(SECRET_LEN)
        self._tickets[ticket] = (peer, secret, now + TICKET_TTL)
        return {"v": LINK_VERSION, "port": self.port, "ticket": ticket, "secret": secret}

    async def _on_connection(self, sock: trio.SocketStream) -> None:
        if self._handshakes >= MAX_HANDSHAKES:
            self.stats["refused"] += 1
            await sock.aclose()
            return
        self._handshakes += 1
        try:
            hello = b""
            with trio.move_on_after(HANDSHAKE_TIMEOUT):
                while len(hello) < len(MAGIC) + TICKET_LEN:
                    data = await sock.receive_some(len(MAGIC) + TICKET_LEN - len(hello))
                    if not data:
                        break
                    hello += data
        except (trio.BrokenResourceError, OSError):
            hello = b""
        finally:
            self._handshakes -= 1
        entry = None
        if hello[: len(MAGIC)] == MAGIC and len(hello) == len(MAGIC) + TICKET_LEN:
            entry = self._tickets.pop(hello[len(MAGIC):], None)
        if entry is None or entry[2] < trio.current_time():
            self.stats["refused"] += 1
            if self.stats["refused"] % 100 == 1:
                log.warning("mesh: refused a link connection without a valid ticket (%d so far)",
                            self.stats["refused"])
            await sock.aclose()
            return
        peer, secret, _ = entry
        to_us, from_us = _keys(secret, hello[len(MAGIC):])
        self.stats["links_in"] += 1
        async with trio.open_nursery() as nursery:
            link = LinkStream(sock, peer, send=from_us, recv=to_us, nursery=nursery)
            try:
                await self._accept(link)
            finally:
                await link.aclose()

    async def dial(self, peer: str, ip: str, ticket: dict, nursery: trio.Nursery) -> LinkStream:
        """Open a link to ``peer`` at ``ip`` with the ticket it gave us over libp2p."""
        try:
            port, tk, secret = ticket["port"], ticket["ticket"], ticket["secret"]
        except (TypeError, KeyError) as exc:
            raise RemoteProtocolError(f"mesh: {peer} answered link.open without {exc}") from None
        if not (type(port) is int and 0 < port < 65536 and isinstance(tk, bytes) and len(tk) == TICKET_LEN
                and isinstance(secret, bytes) and len(secret) == SECRET_LEN):
            raise RemoteProtocolError(f"mesh: {peer} answered link.open with a malformed ticket")
        try:
            sock = await trio.open_tcp_stream(ip, port)
        except OSError as exc:
            raise DialError(f"mesh: cannot open a link to {peer} at {ip}:{port}: {exc}") from exc
        try:
            await sock.send_all(MAGIC + tk)
        except (trio.BrokenResourceError, OSError) as exc:
            await sock.aclose()
            raise DialError(f"mesh: link to {peer} broke during the handshake: {exc}") from exc
        to_them, from_them = _keys(secret, tk)
        self.stats["links_out"] += 1
        return LinkStream(sock, peer, send=to_them, recv=from_them, nursery=nursery)

