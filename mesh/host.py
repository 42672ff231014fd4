"""The libp2p host: the only module that imports py-libp2p.

It gives the rest of the mesh a small surface — listen, dial, open a stream,
serve a protocol, hear about connections — and hides py-libp2p's sharp edges
(see ``shared/DEPENDENCY-NOTES.md``):

* Noise is the only security transport offered (py-libp2p offers plaintext and
  secio too unless told otherwise), Yamux the only muxer, and every connection
  is wrapped in the mesh's private-network PSK, so a node without the mesh key
  cannot even finish the handshake.
* ``max_connections_per_peer=1`` avoids the 250 ms "happy eyeballs" dial wait.
* Health monitoring is on so a hung (SIGSTOPped) peer is noticed in seconds.
* Writes are shielded from cancellation: a deadline that fires mid-frame would
  corrupt the whole Yamux connection.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import AsyncIterator

import multiaddr
import trio
import zeroconf

from crdt.errors import MeshError


# Yamux otherwise sends a window update after every read: twice the frames for small RPCs.
# Turning it off cut the mesh RPC p50 by ~9% and raised throughput ~19% here (bench/rpc.py).
os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")


class _QuietLibp2pRoot(logging.Filter):
    """Drops what py-libp2p logs straight to the root logger (address lookups of peers
    it has not identified yet); our own code reports the failures that matter."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/libp2p/" not in record.pathname.replace("\\", "/")


logging.getLogger().addFilter(_QuietLibp2pRoot())

from libp2p import new_host  # noqa: E402
from libp2p.crypto.ed25519 import create_new_key_pair  # noqa: E402
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair  # noqa: E402
from libp2p.custom_types import TProtocol  # noqa: E402
from libp2p.discovery.mdns.broadcaster import PeerBroadcaster
from libp2p.discovery.mdns.listener import PeerListener
from libp2p.network.config import ConnectionConfig  # noqa: E402
from libp2p.peer.id import ID  # noqa: E402
from libp2p.peer.peerinfo import info_from_p2p_addr  # noqa: E402
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID  # noqa: E402
from libp2p.security.noise.transport import Transport as NoiseTransport  # noqa: E402
from libp2p.transport.exceptions import OpenConnectionError  # noqa: E402
from libp2p.transport.tcp.tcp import TCP  # noqa: E402

log = logging.getLogger("meshnode.host")

IDENTITY_SEED_BYTES = 32
DIAL_TIMEOUT = 3.0
CONNECT_TIMEOUT = 0.5
"""Seconds a TCP connect may take before it is abandoned for a fresh one (the Noise handshake
has ``DIAL_TIMEOUT``). A SYN lost in a partition is otherwise resent by the kernel only after
1 s, then 3 s, 7 s …; py-libp2p sets no connect deadline of its own and retries a failed
connect three times (after 0.1, 0.2, 0.4 s), so a dial sends a fresh SYN about every 0.6 s."""


class DialError(MeshError):
    """A peer could not be reached or refused the handshake."""


def new_identity_seed() -> bytes:
    """Fresh ed25519 identity seed (32 bytes) for a new node."""
    return os.urandom(IDENTITY_SEED_BYTES)


def peer_id_from_seed(seed: bytes) -> str:
    """The libp2p peer id (base58) that an ed25519 identity seed yields."""
    return ID.from_pubkey(create_new_key_pair(seed).public_key).to_base58()


def split_peer_addr(addr: str) -> tuple[str, str]:
    """Split ``/ip4/…/tcp/…/p2p/<id>`` into (transport address, peer id)."""
    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as exc:
        raise MeshError(
            f"mesh: {addr!r} is not a peer address; expected /ip4/HOST/tcp/PORT/p2p/PEER_ID"
        ) from exc
    return str(info.addrs[0]) if info.addrs else "", info.peer_id.to_base58()


def parse_peer_id(peer_id: str) -> ID:
    """A base58 peer id, or MeshError naming it."""
    try:
        return ID.from_base58(peer_id)
    except Exception as exc:
        raise MeshError(f"mesh: {peer_id!r} is not a peer id") from exc


def parse_multiaddr(addr: str) -> multiaddr.Multiaddr:
    """Parse a multiaddr, turning the library's error into ours."""
    try:
        return multiaddr.Multiaddr(addr)
    except Exception as exc:
        raise MeshError(f"mesh: {addr!r} is not a valid multiaddr ({exc})") from exc


class Stream:
    """A libp2p stream seen from the mesh: read, shielded write, close."""

    __slots__ = ("_raw", "peer_id")

    def __init__(self, raw, peer_id: str) -> None:
        self._raw = raw
        self.peer_id = peer_id

    async def receive_some(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes``; ``b""`` once the peer closed or reset the stream."""
        try:
            return await self._raw.read(max_bytes)
        except Exception:  # StreamEOF, StreamReset, connection gone: all mean "no more".
            return b""

    async def send_all(self, data: bytes) -> None:
        """Write every byte; never interrupted half-way by a cancel (see module doc)."""
        with trio.CancelScope(shield=True):
            try:
                await self._raw.write(data)
            except Exception as exc:
                raise DialError(f"mesh: stream to {self.peer_id} broke: {exc}") from exc

    def remote_ip(self) -> str | None:
        """The peer's IP address on this stream's connection, if libp2p knows it."""
        try:
            addr = self._raw.muxed_conn.get_remote_address()
        except Exception:
            return None
        return addr[0] if addr else None

    async def aclose(self) -> None:
        """Close our side; errors on an already broken stream are ignored."""
        with trio.CancelScope(shield=True):
            try:
                await self._raw.close()
            except Exception:
                pass

    async def reset(self) -> None:
        """Abort the stream (used after a peer sent garbage)."""
        with trio.CancelScope(shield=True):
            try:
                await self._raw.reset()
            except Exception:
                pass


StreamHandler = Callable[[Stream], Awaitable[None]]
PeerEvent = Callable[[str, bool], None]


class _Notifee:
    """Forwards py-libp2p connection events as (peer_id, connected) hints."""

    def __init__(self, on_event: PeerEvent) -> None:
        self._on_event = on_event

    async def connected(self, network, conn) -> None:
        self._on_event(conn.muxed_conn.peer_id.to_base58(), True)

    async def disconnected(self, network, conn) -> None:
        self._on_event(conn.muxed_conn.peer_id.to_base58(), False)

    async def opened_stream(self, network, stream) -> None:
        return None

    async def closed_stream(self, network, stream) -> None:
        return None

    async def listen(self, network, addr) -> None:
        return None

    async def listen_close(self, network, addr) -> None:
        return None


class _HandshakeLog(logging.Handler):
    """Turns py-libp2p's hidden upgrade failures into one clear line of ours.

    py-libp2p swallows failed inbound handshakes at debug level; a peer with a
    different mesh key fails exactly there, and the operator needs to see why.
    """

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith(("failed to upgrade security", "Inbound upgrade timeout")):
            log.warning(
                "mesh: refused a connection: %s — the peer holds a different mesh key, "
                "or is not a meshnode",
                text.splitlines()[0][:200],
            )


class _TCP(TCP):
    """py-libp2p's TCP transport with ``CONNECT_TIMEOUT`` on the TCP connect alone."""

    async def _dial_resolved(self, maddr, source=None):
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                return await super()._dial_resolved(maddr, source=source)
        except trio.TooSlowError as exc:
            # Cancelled inside the connect: trio closed the half-open socket. The swarm retries.
            raise OpenConnectionError(f"no TCP connection to {maddr} within {CONNECT_TIMEOUT} s") from exc


class Host:
    """A running libp2p host with the mesh's identity and key."""

    def __init__(self, *, seed: bytes, psk_hex: str, listen: str, on_peer_event: PeerEvent,
                 cut_off: Callable[[str], bool] | None = None) -> None:
        if len(psk_hex) != 64:
            raise MeshError("mesh: the mesh key must be 32 bytes (64 hex characters)")
        self._listen = parse_multiaddr(listen)
        key_pair = create_new_key_pair(seed)
        security = {
            NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
        }
        self._host = new_host(
            key_pair=key_pair,
            sec_opt=security,
            psk=psk_hex,
            muxer_preference="YAMUX",
            transports=[_TCP()],
            connection_config=ConnectionConfig(
                max_connections_per_peer=1,
                dial_timeout=DIAL_TIMEOUT,
                outbound_upgrade_timeout=DIAL_TIMEOUT,
                inbound_upgrade_timeout=DIAL_TIMEOUT,
                enable_health_monitoring=True,
                health_check_interval=2.0,
                ping_timeout=1.0,
                # Without this a SIGSTOPped peer stays "connected" and calls to it hang.
                abort_connection_on_ping_failure=True,
            ),
        )
        self._host.get_network().register_notifee(_Notifee(on_peer_event))
        self.peer_id: str = self._host.get_id().to_base58()
        self._cut_off = cut_off  # test-only (mesh/fault_filter.py): peers we must not reach

    @asynccontextmanager
    async def running(self) -> AsyncIterator["Host"]:
        """Listen, yield while serving, shut the host down on exit."""
        handler = _HandshakeLog(level=logging.DEBUG)
        watched = [logging.getLogger("libp2p.network.swarm")]
        for lg in watched:
            lg.addHandler(handler)
            lg.setLevel(logging.DEBUG)
            lg.propagate = False
        try:
            async with self._host.run([self._listen]):
                yield self
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(3):
                        await self._host.close()
        finally:
            for lg in watched:
                lg.removeHandler(handler)

    def addrs(self) -> list[str]:
        """Addresses others dial us at, each ending in ``/p2p/<our id>``."""
        out = []
        for addr in self._host.get_addrs():
            text = str(addr)
            if "/p2p/" not in text:
                text = f"{text}/p2p/{self.peer_id}"
            out.append(text)
        return out

    def serve(self, protocol: str, handler: StreamHandler) -> None:
        """Run ``handler`` for every inbound stream of ``protocol``."""

        async def _on_stream(raw) -> None:
            peer = raw.muxed_conn.peer_id.to_base58()
            await handler(Stream(raw, peer))

        self._host.set_stream_handler(TProtocol(protocol), _on_stream)

    async def connect(self, addr: str) -> str:
        """Dial a peer address; returns its verified peer id."""
        try:
            info = info_from_p2p_addr(parse_multiaddr(addr))
        except MeshError:
            raise
        except Exception as exc:
            raise DialError(f"mesh: {addr!r} has no /p2p/PEER_ID part") from exc
        if info.peer_id.to_base58() == self.peer_id:
            raise DialError(f"mesh: {addr} is this node itself")
        self._check_cut(info.peer_id.to_base58())
        # py-libp2p refuses, for 60 s, to dial a peer whose addresses all failed once (its
        # "negative cache"). Our dials are already paced by their callers, and a peer that
        # restarted or came back after a partition must be reachable at the next attempt.
        unblock = getattr(self._host.get_network(), "unblock_peer", None)
        if unblock is not None:
            unblock(info.peer_id)
        try:
            with trio.fail_after(DIAL_TIMEOUT + 1):
                await self._host.connect(info)
        except trio.TooSlowError as exc:
            raise DialError(
                f"mesh: no handshake with {addr} within {DIAL_TIMEOUT + 1:.0f} s "
                "(down, or holding a different mesh key)"
            ) from exc
        except Exception as exc:
            if _mentions(exc, "upgrade security"):
                # With different PSKs the Noise negotiation sees noise: it fails at once or times out.
                raise DialError(
                    f"mesh: {addr} failed the handshake: it holds a different mesh key, or is not a meshnode"
                ) from exc
            raise DialError(f"mesh: cannot connect to {addr}: {exc}") from exc
        return info.peer_id.to_base58()

    def add_addrs(self, peer_id: str, addrs: list[str]) -> None:
        """Remember where a peer listens (learned from another peer)."""
        pid = parse_peer_id(peer_id)
        self._host.get_peerstore().add_addrs(pid, [parse_multiaddr(a) for a in addrs], 600)

    def _check_cut(self, peer_id: str) -> None:
        if self._cut_off is not None and self._cut_off(peer_id):
            raise DialError(f"mesh: cannot reach {peer_id}: the chaos fault filter cuts this link")

    async def open_stream(self, peer_id: str, protocol: str) -> Stream:
        """A new stream to a connected (or dialable) peer."""
        self._check_cut(peer_id)
        try:
            with trio.fail_after(DIAL_TIMEOUT + 1):
                raw = await self._host.new_stream(parse_peer_id(peer_id), [TProtocol(protocol)])
        except trio.TooSlowError as exc:
            raise DialError(f"mesh: opening a stream to {peer_id} timed out") from exc
        except Exception as exc:
            raise DialError(f"mesh: cannot open a stream to {peer_id}: {exc}") from exc
        return Stream(raw, peer_id)

    def is_connected(self, peer_id: str) -> bool:
        """Whether libp2p holds a live connection to ``peer_id`` (a hint only)."""
        try:
            pid = ID.from_base58(peer_id)
        except Exception:
            return False
        return bool(self._host.get_network().connections.get(pid))

    def connected_peers(self) -> list[str]:
        """Peer ids with a live connection."""
        return [pid.to_base58() for pid, conns in self._host.get_network().connections.items() if conns]

    async def disconnect(self, peer_id: str) -> None:
        """Close every connection to ``peer_id``."""
        with trio.CancelScope(shield=True):
            try:
                await self._host.disconnect(parse_peer_id(peer_id))
            except Exception:
                pass

    async def run_mdns(self, on_sighting: Sighting, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Announce this node on the LAN and report mDNS sightings, ``on_sighting(peer_id, addrs)``, until cancelled."""
        addrs = mdns_announce_addrs([str(a) for a in self._host.get_transport_addrs()])
        if not addrs:
            log.info("discovery: mDNS is idle: this node listens on %s, not on a LAN address",
                     ", ".join(str(a) for a in self._host.get_transport_addrs()) or "nothing")
            task_status.started()
            return
        sightings = _Sightings(on_sighting, trio.lowlevel.current_trio_token())
        try:
            mdns = await trio.to_thread.run_sync(_Mdns, self.peer_id, addrs, sightings)
        except (OSError, RuntimeError, zeroconf.Error) as exc:
            # Discovery is a convenience: a node without it still runs (join addresses, peer exchange).
            log.warning("discovery: mDNS could not start on %s: %s; peers must be joined by address",
                        ", ".join(addrs), exc)
            task_status.started()
            return
        log.info("discovery: announcing %s over mDNS", ", ".join(addrs))
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            sightings.closed = True
            with trio.CancelScope(shield=True), trio.move_on_after(MDNS_STOP_TIMEOUT):
                # A browser thread may be inside a slow zeroconf lookup; past the deadline it is
                # abandoned (zeroconf's threads are daemons) rather than holding up shutdown.
                await trio.to_thread.run_sync(mdns.close, abandon_on_cancel=True)


# -- mDNS ------------------------------------------------------------------------------

# One service type for every meshnode, whatever its mesh key: a node of another mesh is sighted
# too and refused at the PSK handshake, which logs why (the usual "my node does not join" is a
# wrong key). py-libp2p's `_p2p-<fingerprint>` private-network type would hide it instead.
MDNS_SERVICE = "_meshnode._udp.local."
MDNS_STOP_TIMEOUT = 3.0

Sighting = Callable[[str, list[str]], None]


def mdns_announce_addrs(addrs: list[str]) -> list[str]:
    """The listen addresses worth announcing on the LAN: none on loopback, 0.0.0.0 or link-local.

    A wildcard address says nothing a peer can dial, and a loopback one would
    make every LAN peer dial itself; announcing nothing keeps a loopback-only
    node (every local test cluster) silent on the network.
    """
    out = []
    for addr in addrs:
        parts = addr.split("/")
        if len(parts) < 5 or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
            continue
        try:
            ip = ipaddress.ip_address(parts[2])
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast):
            out.append(addr)
    return out


class _Sightings:
    """Stands in for the peerstore py-libp2p's mDNS listener writes to, on zeroconf's thread.

    Nothing there touches our libp2p host: each sighting is handed to the trio
    loop (``trio.from_thread``), where the node decides whether to dial it.
    """

    def __init__(self, on_sighting: Sighting, token: trio.lowlevel.TrioToken) -> None:
        self._on_sighting = on_sighting
        self._token = token
        self.closed = False

    def _deliver(self, peer: str, addrs: list[str]) -> None:
        if self.closed:
            return
        try:
            self._on_sighting(peer, addrs)
        except Exception:
            log.exception("discovery: handling the mDNS sighting of %s failed", peer)

    def add_addrs(self, peer_id: ID, addrs: list, ttl: int) -> None:
        """A peer announced itself (called on a zeroconf thread)."""
        peer = peer_id.to_base58()
        dialable = [f"{a}/p2p/{peer}" for a in mdns_announce_addrs([str(a) for a in addrs])]
        if not dialable or self.closed:
            return
        try:
            trio.from_thread.run_sync(self._deliver, peer, dialable, trio_token=self._token)
        except (trio.RunFinishedError, trio.Cancelled):
            pass  # the node is stopping

    def clear_addrs(self, peer_id: ID) -> None:
        """A peer withdrew its announcement: membership notices departures, so nothing to do."""


class _Broadcaster(PeerBroadcaster):
    """py-libp2p's announcer, with A records for the address we listen on.

    The stock one guesses the machine's address from the default route (or
    127.0.0.1 without one), which may not be the interface we listen on.
    """

    def __init__(self, *, ips: list[str], **kwargs) -> None:
        self._ips = ips
        super().__init__(**kwargs)

    def _get_local_ips(self) -> list[str]:
        return list(self._ips)


class _Mdns:
    """py-libp2p's mDNS announcer and listener on a zeroconf bound to our listen interfaces."""

    def __init__(self, peer_id: str, addrs: list[str], sightings: _Sightings) -> None:
        ips = sorted({a.split("/")[2] for a in addrs})
        port = int(addrs[0].split("/")[4])
        # Blocking: binds sockets and starts zeroconf's own asyncio thread.
        self.zc = zeroconf.Zeroconf(interfaces=ips)
        name = f"{secrets.token_hex(16)}.{MDNS_SERVICE}"
        try:
            self.broadcaster = _Broadcaster(
                ips=ips, zeroconf=self.zc, service_type=MDNS_SERVICE, service_name=name,
                peer_id=peer_id, port=port, listen_addrs=addrs,
            )
            # Its browser threads call back into `sightings` on their own threads.
            self.listener = PeerListener(
                peerstore=sightings, zeroconf=self.zc, service_type=MDNS_SERVICE, service_name=name,
            )
            self.broadcaster.register()  # blocking: probes, then announces (about a second)
        except BaseException:
            self.zc.close()
            raise

    def close(self) -> None:
        """Say goodbye on the LAN and stop zeroconf's threads (blocking)."""
        try:
            self.broadcaster.unregister()
            self.listener.stop()
        finally:
            self.zc.close()


# py-libp2p's errors for a handshake that failed (the case of a peer with another mesh key), by name:
# an error of one of these types can carry an empty message.
HANDSHAKE_ERRORS = frozenset({"SecurityUpgradeFailure", "HandshakeFailure", "NoiseFailure"})


def _mentions(exc: BaseException, text: str, depth: int = 6) -> bool:
    """Whether ``text`` is in ``exc``'s message or in one of the errors behind it (or one is a handshake failure).

    py-libp2p reports a failed dial as "no addresses established a successful
    connection (with exceptions)", with the per-address errors (a failed
    security upgrade, say) only as its cause or in an exception group.
    """
    if text in str(exc) or type(exc).__name__ in HANDSHAKE_ERRORS:
        return True
    if depth <= 0:
        return False
    inner = list(getattr(exc, "exceptions", ()) or ()) + list(getattr(exc, "errors", ()) or ())
    inner += [e for e in (exc.__cause__, exc.__context__) if e is not None]
    return any(_mentions(e, text, depth - 1) for e in inner[:16])
