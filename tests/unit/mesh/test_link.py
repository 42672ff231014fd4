"""Direct links (mesh/link.py) under the RPC plane, over real libp2p hosts and real sockets."""

from __future__ import annotations

import os
import struct

import pytest
import trio

from crdt.errors import MeshError
from mesh.host import Host, new_identity_seed
from mesh.link import MAGIC, RECORD_MAX
from mesh.rpc import RpcPlane

pytestmark = pytest.mark.slow


def make_host(psk: str) -> Host:
    return Host(seed=new_identity_seed(), psk_hex=psk, listen="/ip4/127.0.0.1/tcp/0", on_peer_event=lambda *_: None)


async def wait_until(predicate, seconds: float = 5.0) -> None:
    with trio.fail_after(seconds):
        while not predicate():
            await trio.sleep(0.01)


def pair(test, *, server_links: bool = True, client_links: bool = True):
    """Run ``test(server, client, a, b, nursery)`` on two connected planes serving echo."""

    async def main():
        psk = os.urandom(32).hex()
        a, b = make_host(psk), make_host(psk)
        async with trio.open_nursery() as nursery, a.running(), b.running():
            server, client = RpcPlane(a, nursery), RpcPlane(b, nursery)
            if server_links:
                await server.open_links("127.0.0.1")
            if client_links:
                await client.open_links("127.0.0.1")

            async def echo(peer, body):
                return {"from": peer, "body": body}

            server.route("echo", echo)
            await b.connect(a.addrs()[0])
            await test(server, client, a, b, nursery)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_calls_move_to_the_link_and_carry_big_and_concurrent_frames():
    async def test(server, client, a, b, nursery):
        assert (await client.call(a.peer_id, "echo", b"first"))["from"] == b.peer_id  # over libp2p
        await wait_until(lambda: client.statistics()["links"] == 1)
        assert server.statistics()["links_in"] == 1

        # The peer id the server sees on the link is the one libp2p authenticated.
        assert (await client.call(a.peer_id, "echo", 1))["from"] == b.peer_id
        # A tensor spanning many records comes back byte for byte.
        big = os.urandom(3 * RECORD_MAX + 12345)
        assert (await client.call(a.peer_id, "echo", big))["body"] == big
        # Concurrent callers are batched and every one gets its own answer.
        got = {}

        async def one(i):
            got[i] = (await client.call(a.peer_id, "echo", i))["body"]

        async with trio.open_nursery() as inner:
            for i in range(200):
                inner.start_soon(one, i)
        assert got == {i: i for i in range(200)}
        assert client.statistics()["link_calls"] >= 202

    pair(test)


def test_a_peer_without_links_is_called_over_libp2p():
    async def test(server, client, a, b, nursery):
        for i in range(3):
            assert (await client.call(a.peer_id, "echo", i))["body"] == i
        await wait_until(lambda: client.statistics()["link_failures"] == 1)
        assert client.statistics()["links"] == 0
        assert (await client.call(a.peer_id, "echo", "still"))["body"] == "still"
        assert client.statistics()["link_calls"] == 0

    pair(test, server_links=False)


def test_tickets_are_single_use_and_strangers_are_refused():
    async def test(server, client, a, b, nursery):
        port = server._links.port
        # No ticket, a wrong magic, garbage: each connection is closed at once.
        for hello in (b"", b"GET / HTTP/1.1\r\n\r\n", MAGIC + os.urandom(16)):
            sock = await trio.open_tcp_stream("127.0.0.1", port)
            if hello:
                await sock.send_all(hello)
            else:
                await sock.send_eof()
            with trio.fail_after(5):
                assert await sock.receive_some(100) == b""
            await sock.aclose()
        assert server._links.stats["refused"] == 3

        # A real ticket works once; replaying it is refused.
        ticket = server._links.issue(b.peer_id, trio.current_time())
        first = await trio.open_tcp_stream("127.0.0.1", port)
        await first.send_all(MAGIC + ticket["ticket"])
        await wait_until(lambda: server.statistics()["links_in"] == 1)
        replay = await trio.open_tcp_stream("127.0.0.1", port)
        await replay.send_all(MAGIC + ticket["ticket"])
        with trio.fail_after(5):
            assert await replay.receive_some(100) == b""
        assert server._links.stats["refused"] == 4

        # The authenticated link gets a record it cannot decrypt: the server drops that link
        # (counted as a bad frame) and keeps serving everyone else.
        await first.send_all(struct.pack(">I", 64) + os.urandom(64))
        with trio.fail_after(5):
            assert await first.receive_some(100) == b""
        assert server.statistics()["bad_frames"] == 1
        assert (await client.call(a.peer_id, "echo", "ok"))["body"] == "ok"
        await first.aclose()
        await replay.aclose()

    pair(test)


def test_an_oversized_record_header_drops_the_link():
    async def test(server, client, a, b, nursery):
        ticket = server._links.issue(b.peer_id, trio.current_time())
        sock = await trio.open_tcp_stream("127.0.0.1", server._links.port)
        await sock.send_all(MAGIC + ticket["ticket"] + struct.pack(">I", 1 << 31))
        with trio.fail_after(5):
            assert await sock.receive_some(100) == b""
        assert server.statistics()["bad_frames"] == 1
        await sock.aclose()

    pair(test)


def test_a_broken_link_fails_its_calls_then_reopens_and_forget_closes_inbound_links():
    async def test(server, client, a, b, nursery):
        await client.call(a.peer_id, "echo", 0)
        await wait_until(lambda: client.statistics()["links"] == 1)
        gate = trio.Event()

        async def stall(peer, body):
            await gate.wait()

        server.route("stall", stall)
        failed = []

        async def waiting_call():
            try:
                await client.call(a.peer_id, "stall", None, timeout=10)
            except MeshError as exc:
                failed.append(exc)

        nursery.start_soon(waiting_call)
        await wait_until(lambda: server.statistics()["links_in"] == 1)
        await trio.sleep(0.05)
        # The server forgets the client (as it does when libp2p says it disconnected):
        # the inbound link closes and the call waiting on it fails at once, not at its deadline.
        server.forget(b.peer_id)
        await wait_until(lambda: failed, 3)
        assert "lost" in str(failed[0]) or "left" in str(failed[0])
        await wait_until(lambda: client.statistics()["links"] == 0)
        # The next call goes over libp2p and a new link comes up behind it.
        assert (await client.call(a.peer_id, "echo", 5))["body"] == 5
        await wait_until(lambda: client.statistics()["links"] == 1)
        assert (await client.call(a.peer_id, "echo", 6))["body"] == 6
        gate.set()

    pair(test)
