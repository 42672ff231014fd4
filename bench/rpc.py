"""Mesh RPC (1 KiB round trips, 600 KiB and 4 MiB tensors) vs a raw trio TCP socket, same framing, same run.

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
BULK_SIZES = (600 * 1024, 4 * 1024 * 1024)


def _summary(name: str, samples: list[float], wall: float, size: int = 0) -> dict:
    samples = sorted(samples)
    row = {
        "name": name,
        "calls": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 3),
        "p99_ms": round(samples[max(0, int(len(samples) * 0.99) - 1)] * 1000, 3),
        "calls_per_s": round(len(samples) / wall, 1),
    }
    if size > 4096:
        row.update(payload_bytes=size, MB_per_s=round(size * len(samples) / wall / 1e6, 1))
    return row


async def raw_tcp(n: int, payload: bytes = PAYLOAD, ack_only: bool = False) -> dict:
    """Echo (or ack) over a raw trio socket with mesh framing."""

    async def serve(stream: trio.SocketStream) -> None:
        dec = FrameDecoder()
        while data := await stream.receive_some(65536):
            for env in dec.feed(data):
                body = len(env.body) if ack_only else env.body
                await stream.send_all(encode_envelope(Reply(id=env.id, ok=True, body=body)))

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        dec = FrameDecoder()
        samples = []
        wall = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            await stream.send_all(encode_envelope(Request(id=i, method="echo", body=payload)))
            got = []
            while not got:
                got = dec.feed(await stream.receive_some(65536))
            samples.append(time.perf_counter() - t)
        wall = time.perf_counter() - wall
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return _summary("raw trio TCP", samples, wall, len(payload))


async def mesh_rpc(n: int, payload: bytes = PAYLOAD, ack_only: bool = False) -> dict:
    """Echo (or ack) through two libp2p hosts and the RPC plane."""
    psk = os.urandom(32).hex()
    a = Host(seed=new_identity_seed(), psk_hex=psk, listen="/ip4/127.0.0.1/tcp/0", on_peer_event=lambda *_: None)
    b = Host(seed=new_identity_seed(), psk_hex=psk, listen="/ip4/127.0.0.1/tcp/0", on_peer_event=lambda *_: None)
    async with trio.open_nursery() as nursery, a.running(), b.running():
        server = RpcPlane(a, nursery)

        async def echo(peer: str, body):
            return len(body) if ack_only else body

        server.route("echo", echo)
        client = RpcPlane(b, nursery)
        await b.connect(a.addrs()[0])
        await client.call(a.peer_id, "echo", PAYLOAD)  # open the stream
        samples = []
        wall = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            await client.call(a.peer_id, "echo", payload, timeout=60)
            samples.append(time.perf_counter() - t)
        wall = time.perf_counter() - wall
        nursery.cancel_scope.cancel()
    return _summary("mesh RPC (libp2p)", samples, wall, len(payload))


def run(n: int = 2000, bulk_n: int = 30) -> list[dict]:
    """Small-RPC and bulk-transfer measurements, each beside its raw TCP baseline, with ratios."""
    rows = []
    base = trio.run(raw_tcp, n)
    mesh = trio.run(mesh_rpc, n)
    rows += [base, mesh, {
        "name": "ratio mesh/raw (1 KiB RPC)",
        "p50": round(mesh["p50_ms"] / base["p50_ms"], 2),
        "throughput": round(mesh["calls_per_s"] / base["calls_per_s"], 3),
    }]
    for size in BULK_SIZES:
        payload = b"t" * size
        base = trio.run(raw_tcp, bulk_n, payload, True)
        mesh = trio.run(mesh_rpc, bulk_n, payload, True)
        rows += [base, mesh, {
            "name": f"ratio mesh/raw ({size // 1024} KiB tensor + ack)",
            "throughput": round(mesh["MB_per_s"] / base["MB_per_s"], 3),
        }]
    return rows
