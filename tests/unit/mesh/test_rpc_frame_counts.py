"""The RPC plane counts every frame it writes and reads (``frames_sent`` / ``frames_received``), notes included.

The chaos harness's messages per operation rest on these counters, so one call must be
exactly a request and a reply, and a note exactly one frame.
"""

from __future__ import annotations

import os

import pytest
import trio

from mesh.host import Host, new_identity_seed
from mesh.rpc import RpcPlane

pytestmark = pytest.mark.slow


def make_host(psk: str) -> Host:
    return Host(seed=new_identity_seed(), psk_hex=psk, listen="/ip4/127.0.0.1/tcp/0", on_peer_event=lambda *_: None)


def test_a_call_is_two_frames_and_a_note_one():
    async def main():
        psk = os.urandom(32).hex()
        a, b = make_host(psk), make_host(psk)
        async with trio.open_nursery() as nursery, a.running(), b.running():
            server, client = RpcPlane(a, nursery), RpcPlane(b, nursery)
            heard = trio.Event()

            async def echo(peer, body):
                return body

            async def note(peer, body):
                heard.set()

            server.route("echo", echo)
            server.route_note("note", note)
            assert await b.connect(a.addrs()[0]) == a.peer_id
            for i in range(3):
                assert await client.call(a.peer_id, "echo", i) == i
            await client.notify(a.peer_id, "note", None)
            with trio.fail_after(5):
                await heard.wait()
            c, s = client.statistics(), server.statistics()
            assert (c["frames_sent"], c["frames_received"]) == (4, 3)  # 3 requests + 1 note; 3 replies
            assert (s["frames_sent"], s["frames_received"]) == (3, 4)
            nursery.cancel_scope.cancel()

    trio.run(main)
