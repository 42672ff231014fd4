"""The RPC plane over two real libp2p hosts in one trio loop."""

from __future__ import annotations

import os
import struct

import pytest
import trio

from crdt.errors import MeshError
from mesh.host import DialError, Host, new_identity_seed
from mesh.rpc import Busy, CallTimeout, RemoteError, RpcPlane
from mesh.wire import PROTOCOL_ID

pytestmark = pytest.mark.slow


def make_host(psk: str) -> Host:
    return Host(seed=new_identity_seed(), psk_hex=psk, listen="/ip4/127.0.0.1/tcp/0", on_peer_event=lambda *_: None)




def run(fn):
    trio.run(fn)


def test_calls_errors_and_garbage():
    async def main():
        psk = os.urandom(32).hex()
        a, b = make_host(psk), make_host(psk)
        async with trio.open_nursery() as nursery, a.running(), b.running():
            server = RpcPlane(a, nursery, max_handlers=2)
            client = RpcPlane(b, nursery)
            gate = trio.Event()

            async def echo(peer, body):
                return {"from": peer, "body": body}

            async def refuse(peer, body):
                raise MeshError("test: refused on purpose")

            async def slow(peer, body):
                await gate.wait()
                return "late"

            server.route("echo", echo)
            server.route("refuse", refuse)
            server.route("slow", slow)
            assert await b.connect(a.addrs()[0]) == a.peer_id

            got = await client.call(a.peer_id, "echo", b"\x00bytes")
            assert got == {"from": b.peer_id, "body": b"\x00bytes"}

            with pytest.raises(RemoteError, match="unknown method 'nope'"):
                await client.call(a.peer_id, "nope", None)
            with pytest.raises(RemoteError, match="refused on purpose"):
                await client.call(a.peer_id, "refuse", None)
            with pytest.raises(CallTimeout, match="did not answer 'slow'"):
                await client.call(a.peer_id, "slow", None, timeout=0.2)

            # Two handlers are still parked in `slow` (the timed-out call and this one);
            # the server refuses the next request as busy instead of queueing it.
            nursery.start_soon(lambda: client.call(a.peer_id, "slow", None, timeout=5))
            await trio.sleep(0.2)
            with pytest.raises(Busy):
                await client.call(a.peer_id, "echo", 1)
            gate.set()
            await trio.sleep(0.1)

            # A peer that sends garbage gets its stream reset; the server keeps serving.
            raw = await b.open_stream(a.peer_id, PROTOCOL_ID)
            await raw.send_all(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
            assert await raw.receive_some() == b""
            assert server.statistics()["bad_frames"] == 1
            assert (await client.call(a.peer_id, "echo", 2))["body"] == 2
            nursery.cancel_scope.cancel()

    run(main)


def test_wrong_mesh_key_cannot_connect():
    async def main():
        a, c = make_host(os.urandom(32).hex()), make_host(os.urandom(32).hex())
        async with a.running(), c.running():
            with pytest.raises(DialError, match="mesh key"):
                await c.connect(a.addrs()[0])
            assert a.connected_peers() == [] and c.connected_peers() == []

    run(main)


def test_inflight_bound_refuses_locally():
    async def main():
        psk = os.urandom(32).hex()
        a, b = make_host(psk), make_host(psk)
        async with trio.open_nursery() as nursery, a.running(), b.running():
            server = RpcPlane(a, nursery)
            client = RpcPlane(b, nursery, max_inflight=1)
            gate = trio.Event()

            async def slow(peer, body):
                await gate.wait()
                return 1

            server.route("slow", slow)
            await b.connect(a.addrs()[0])
            nursery.start_soon(lambda: client.call(a.peer_id, "slow", None, timeout=5))
            await trio.sleep(0.2)
            with pytest.raises(Busy, match="already in flight"):
                await client.call(a.peer_id, "slow", None)
            gate.set()
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()

    run(main)


def test_oversized_messages_fail_fast_and_leave_the_channel_usable():
    async def main():
        psk = os.urandom(32).hex()
        a, b = make_host(psk), make_host(psk)
        async with trio.open_nursery() as nursery, a.running(), b.running():
            server = RpcPlane(a, nursery)
            client = RpcPlane(b, nursery)

            async def huge(peer, body):
                return b"x" * (17 * 1024 * 1024)

            async def echo(peer, body):
                return body

            server.route("huge", huge)
            server.route("echo", echo)
            await b.connect(a.addrs()[0])
            assert await client.call(a.peer_id, "echo", 1) == 1
            with trio.fail_after(3):  # an error reply, not a silent drop and a caller waiting out its timeout
                with pytest.raises(RemoteError, match="cannot send the reply"):
                    await client.call(a.peer_id, "huge", None, timeout=10)
            from crdt.errors import LocalProtocolError

            with pytest.raises(LocalProtocolError, match="frame limit"):
                await client.call(a.peer_id, "echo", b"y" * (17 * 1024 * 1024))
            assert await client.call(a.peer_id, "echo", 2) == 2
            assert client.statistics()["streams"] == 1
            nursery.cancel_scope.cancel()

    run(main)


def test_a_peer_opening_many_streams_is_cut_off_and_others_still_served():
    async def main():
        psk = os.urandom(32).hex()
        a, b, c = make_host(psk), make_host(psk), make_host(psk)
        async with trio.open_nursery() as nursery, a.running(), b.running(), c.running():
            server = RpcPlane(a, nursery, max_streams_per_peer=4)

            async def echo(peer, body):
                return body

            server.route("echo", echo)
            await b.connect(a.addrs()[0])
            await c.connect(a.addrs()[0])
            streams, refused = [], 0
            with trio.fail_after(10):
                for _ in range(12):
                    try:
                        streams.append(await b.open_stream(a.peer_id, PROTOCOL_ID))
                    except DialError:
                        refused += 1  # reset while the protocol was being negotiated
                for s in streams[4:]:
                    if await s.receive_some() == b"":
                        refused += 1
            assert refused == 8 and server.statistics()["streams_refused"] == 8
            good = RpcPlane(c, nursery)
            assert await good.call(a.peer_id, "echo", "still here") == "still here"
            for s in streams:
                await s.aclose()
            nursery.cancel_scope.cancel()

    run(main)


def test_a_peer_flooding_streams_or_garbage_is_reported_for_cut_off():
    """Issue 3: "A peer that ... opens thousands of streams, is cut off by limits"."""
    from mesh import rpc as rpc_module

    async def main():
        psk = os.urandom(32).hex()
        a, b = make_host(psk), make_host(psk)
        async with trio.open_nursery() as nursery, a.running(), b.running():
            server = RpcPlane(a, nursery, max_streams_per_peer=2)
            reported = []
            server.on_abuse = lambda peer, what: reported.append((peer, what))
            await b.connect(a.addrs()[0])
            held = [await b.open_stream(a.peer_id, PROTOCOL_ID) for _ in range(2)]
            with trio.fail_after(5):  # the two allowed streams are being served
                while server._inbound.get(b.peer_id) != 2:
                    await trio.sleep(0.01)
            for _ in range(3 * rpc_module.STREAM_FLOOD):  # each is refused: reset at once
                try:
                    extra = await b.open_stream(a.peer_id, PROTOCOL_ID)
                    assert await extra.receive_some() == b""
                except DialError:
                    pass  # reset while the protocol was still being negotiated
                if reported:
                    break
            assert server.statistics()["streams_refused"] == rpc_module.STREAM_FLOOD
            assert reported == [(b.peer_id, f"kept opening request streams past 2 ({rpc_module.STREAM_FLOOD} times)")]
            for stream in held:
                await stream.reset()

            # Garbage: each bad stream is closed; the GARBAGE_FLOOD-th one reports the peer.
            for _ in range(rpc_module.GARBAGE_FLOOD):
                raw = await b.open_stream(a.peer_id, PROTOCOL_ID)
                await raw.send_all(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
                assert await raw.receive_some() == b""
            assert reported[-1] == (b.peer_id, f"kept sending malformed frames ({rpc_module.GARBAGE_FLOOD} times)")
            nursery.cancel_scope.cancel()

    run(main)


def test_a_handshake_failure_buried_in_libp2p_s_dial_error_is_recognised():
    """py-libp2p wraps per-address errors (one may have an empty message) in its dial error's cause."""
    from libp2p.exceptions import MultiError
    from libp2p.transport.exceptions import SecurityUpgradeFailure

    from mesh.host import _mentions

    def dial_error(*inner: Exception) -> Exception:
        try:
            raise RuntimeError("unable to connect, no addresses established a successful connection") from MultiError(
                list(inner))
        except RuntimeError as exc:
            return exc

    assert _mentions(dial_error(SecurityUpgradeFailure("")), "upgrade security")
    assert _mentions(dial_error(OSError("x"), Exception("failed to upgrade security for peer")), "upgrade security")
    assert not _mentions(dial_error(ConnectionRefusedError("refused")), "upgrade security")
