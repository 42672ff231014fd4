"""Mesh RPC round trip vs a raw trio TCP socket with the same framing, in the same run.

Both sides use mesh.wire's length-prefixed msgpack envelopes; the baseline
sends them over a bare loopback socket, the mesh over libp2p (Noise + Yamux +
PSK) through ``RpcPlane``. Server and client share one process and one trio
loop in both cases, so the ratio is fair even if the absolute numbers are not
what two machines would see.
"""

from __future__ import annotations

import functools
import os
import statistics
import time

import trio

from mesh.host import Host, new_identity_seed
from mesh.rpc import RpcPlane
from mesh.wire import FrameDecoder, Reply, Request, encode_envelope

PAYLOAD = b"x" * 1024


def _summary(name: str, samples: list[float], wall: float) -> dict:
    samples = sorted(samples)
    return {
        "name": name,
        "calls": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 3),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1] * 1000, 3),
        "calls_per_s": round(len(samples) / wall, 1),
    }


async def raw_tcp(n: int) -> dict:
    """Echo over a raw trio socket with mesh framing."""

    async def serve(stream: trio.SocketStream) -> None:
        dec = FrameDecoder()
        while data := await stream.receive_some(65536):
            for env in dec.feed(data):
                await stream.send_all(encode_envelope(Reply(id=env.id, ok=True, body=env.body)))

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        dec = FrameDecoder()
        samples = []
        wall = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            await stream.send_all(encode_envelope(Request(id=i, method="echo", body=PAYLOAD)))
            got = []
            while not got:
                got = dec.feed(await stream.receive_some(65536))
            samples.append(time.perf_counter() - t)
        wall = time.perf_counter() - wall
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return _summary("raw trio TCP", samples, wall)


async def mesh_rpc(n: int) -> dict:
    """Echo through two libp2p hosts and the RPC plane."""
    psk = os.urandom(32).hex()
    a = Host(seed=new_identity_seed(), psk_hex=psk, listen="/ip4/127.0.0.1/tcp/0", on_peer_event=lambda *_: None)
    b = Host(seed=new_identity_seed(), psk_hex=psk, listen="/ip4/127.0.0.1/tcp/0", on_peer_event=lambda *_: None)
    async with trio.open_nursery() as nursery, a.running(), b.running():
        server = RpcPlane(a, nursery)

        async def echo(peer: str, body):
            return body

        server.route("echo", echo)
        client = RpcPlane(b, nursery)
        await b.connect(a.addrs()[0])
        await client.call(a.peer_id, "echo", PAYLOAD)  # open the stream
        samples = []
        wall = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            await client.call(a.peer_id, "echo", PAYLOAD)
            samples.append(time.perf_counter() - t)
        wall = time.perf_counter() - wall
        nursery.cancel_scope.cancel()
    return _summary("mesh RPC (libp2p)", samples, wall)


def run(n: int = 2000) -> list[dict]:
    """Both measurements and the ratio."""
    base = trio.run(raw_tcp, n)
    mesh = trio.run(mesh_rpc, n)
    ratio = {
        "name": "ratio mesh/raw",
        "p50": round(mesh["p50_ms"] / base["p50_ms"], 2),
        "throughput": round(mesh["calls_per_s"] / base["calls_per_s"], 3),
    }
    return [base, mesh, ratio]
