"""Mesh RPC vs a raw trio TCP socket with the same framing, server in another process, same run.

Three transports answer the same calls (``echo`` for 1 KiB requests, ``ack``
returning the length for 600 KiB and 4 MiB tensors):

* **raw trio TCP**: mesh.wire's length-prefixed msgpack envelopes over a bare
  loopback socket; the client multiplexes concurrent calls by request id, as
  any real client must.
* **mesh RPC, libp2p only**: ``RpcPlane`` over py-libp2p (Noise + Yamux + PSK).
* **mesh RPC**: ``RpcPlane`` as a node runs it: calls go over the direct link
  (AES-256-GCM over TCP, key handed over inside libp2p), libp2p beside it.

The server runs in its own process (``python -m bench.rpc --serve KIND``) so
client and server each have a core, as two nodes would. Small calls are
measured one at a time (latency) and with 32 callers at once (throughput);
tensors one at a time. Ratios are mesh / raw from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import asynccontextmanager

import trio

from mesh.host import Host, new_identity_seed
from mesh.rpc import RpcPlane
from mesh.wire import FrameDecoder, Reply, Request, encode_envelope

SMALL = b"x" * 1024
BULK_SIZES = (600 * 1024, 4 * 1024 * 1024)
CONCURRENCY = 32
READ_SIZE = 256 * 1024  # the raw side reads as much per call as a link record holds: a like-for-like baseline
ROUNDS = 3  # transports take turns, and each figure is the median of its rounds: load drifts between runs
SERVER_MAX_SECONDS = 600  # a server whose client vanished exits by itself


# -- servers (in their own process) ------------------------------------------


def _answer(method: str, body):
    return len(body) if method == "ack" else body


async def _serve_raw() -> dict:
    async def serve(stream: trio.SocketStream) -> None:
        dec = FrameDecoder()
        try:
            while data := await stream.receive_some(READ_SIZE):
                out = [encode_envelope(Reply(id=env.id, ok=True, body=_answer(env.method, env.body)))
                       for env in dec.feed(data)]
                await stream.send_all(b"".join(out))
        except trio.BrokenResourceError:
            pass

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def run() -> None:
        await trio.serve_listeners(serve, listeners)

    return {"port": port, "run": run}


async def _server_main(kind: str, psk: str) -> None:
    async with trio.open_nursery() as nursery:
        if kind == "raw":
            info = await _serve_raw()
            nursery.start_soon(info.pop("run"))
            print(json.dumps(info), flush=True)
            await _wait_for_stdin_close()
            nursery.cancel_scope.cancel()
            return
        async with _mesh_plane(kind, psk, nursery) as (host, plane):

            async def echo(peer, body):
                return body

            async def ack(peer, body):
                return len(body)

            plane.route("echo", echo)
            plane.route("ack", ack)
            print(json.dumps({"addr": host.addrs()[0], "peer": host.peer_id}), flush=True)
            await _wait_for_stdin_close()
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def _mesh_plane(kind: str, psk: str, nursery: trio.Nursery):
    """A running libp2p host and its RPC plane, offering links when ``kind`` is "mesh"."""
    host = Host(seed=new_identity_seed(), psk_hex=psk, listen="/ip4/127.0.0.1/tcp/0", on_peer_event=lambda *_: None)
    async with host.running():
        plane = RpcPlane(host, nursery)
        if kind == "mesh":
            await plane.open_links("127.0.0.1")
        yield host, plane


async def _wait_for_stdin_close() -> None:
    with trio.move_on_after(SERVER_MAX_SECONDS):
        await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)


# -- clients -----------------------------------------------------------------


class _RawClient:
    """Request/reply over one raw socket: a reader task matches replies to callers by id."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.lock = trio.Lock()
        self.pending: dict[int, list] = {}
        self.ids = 0

    async def read(self) -> None:
        dec = FrameDecoder()
        while data := await self.stream.receive_some(READ_SIZE):
            for env in dec.feed(data):
                slot = self.pending.pop(env.id)
                slot[1] = env.body
                slot[0].set()

    async def call(self, method: str, body):
        self.ids += 1
        slot = [trio.Event(), None]
        self.pending[self.ids] = slot
        frame = encode_envelope(Request(id=self.ids, method=method, body=body))
        async with self.lock:
            await self.stream.send_all(frame)
        await slot[0].wait()
        return slot[1]


@asynccontextmanager
async def _server(kind: str, psk: str):
    proc = subprocess.Popen([sys.executable, "-m", "bench.rpc", "--serve", kind, "--psk", psk],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = await trio.to_thread.run_sync(proc.stdout.readline)
        if not line:
            raise RuntimeError(f"bench: the {kind} server exited before it was ready")
        yield json.loads(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def _client(kind: str):
    """Yield an async ``call(method, body)`` bound to a fresh server of ``kind``."""
    psk = os.urandom(32).hex()
    async with _server(kind, psk) as info, trio.open_nursery() as nursery:
        if kind == "raw":
            stream = await trio.open_tcp_stream("127.0.0.1", info["port"])
            client = _RawClient(stream)
            nursery.start_soon(client.read)
            try:
                yield client.call
            finally:
                nursery.cancel_scope.cancel()
                await stream.aclose()
        else:
            async with _mesh_plane(kind, psk, nursery) as (host, plane):
                await host.connect(info["addr"])
                peer = info["peer"]
                await plane.call(peer, "echo", b"")
                if kind == "mesh":  # the link opens in the background after the first call
                    with trio.move_on_after(5):
                        while not plane.statistics()["links"]:
                            await trio.sleep(0.01)
                    if not plane.statistics()["links"]:
                        raise RuntimeError("bench: no direct link came up")

                async def call(method, body):
                    return await plane.call(peer, method, body, timeout=60)

                yield call
        nursery.cancel_scope.cancel()


def _row(name: str, samples: list[float], wall: float, size: int = 0) -> dict:
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


async def _measure(kind: str, n: int, bulk_n: int) -> dict[str, dict]:
    label = {"raw": "raw trio TCP", "mesh-libp2p": "mesh RPC, libp2p only", "mesh": "mesh RPC"}[kind]
    out = {}
    async with _client(kind) as call:
        for _ in range(50):  # warm up
            await call("echo", SMALL)
        samples = []
        wall = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            await call("echo", SMALL)
            samples.append(time.perf_counter() - t)
        out["seq"] = _row(f"{label}: 1 KiB, one at a time", samples, time.perf_counter() - wall)

        samples = []

        async def caller(count: int) -> None:
            for _ in range(count):
                t = time.perf_counter()
                await call("echo", SMALL)
                samples.append(time.perf_counter() - t)

        wall = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(CONCURRENCY):
                nursery.start_soon(caller, n // CONCURRENCY)
        out["par"] = _row(f"{label}: 1 KiB, {CONCURRENCY} callers", samples, time.perf_counter() - wall)

        for size in BULK_SIZES:
            payload = b"t" * size
            await call("ack", payload)
            samples = []
            wall = time.perf_counter()
            for _ in range(bulk_n):
                t = time.perf_counter()
                assert await call("ack", payload) == size
                samples.append(time.perf_counter() - t)
            out[size] = _row(f"{label}: {size // 1024} KiB tensor + ack", samples, time.perf_counter() - wall, size)
    return out


def run(n: int = 4000, bulk_n: int = 40, kinds: tuple[str, ...] = ("raw", "mesh-libp2p", "mesh"),
        rounds: int = ROUNDS) -> list[dict]:
    """Every transport's figures (median of ``rounds`` interleaved rounds), then mesh/raw ratios."""
    per_kind: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind in kinds:
            per_kind[kind].append(trio.run(_measure, kind, n, bulk_n))
    results = {}
    for kind, runs in per_kind.items():
        results[kind] = {}
        for key in runs[0]:
            rows = sorted((r[key] for r in runs), key=lambda row: row.get("MB_per_s", row["calls_per_s"]))
            results[kind][key] = dict(rows[len(rows) // 2], rounds=rounds)
    rows = [row for kind in kinds for row in results[kind].values()]
    base = results["raw"]
    for kind in kinds[1:]:
        got = results[kind]
        rows.append({
            "name": f"ratio {kind}/raw",
            "1KiB_one_at_a_time": round(got["seq"]["calls_per_s"] / base["seq"]["calls_per_s"], 3),
            f"1KiB_{CONCURRENCY}_callers": round(got["par"]["calls_per_s"] / base["par"]["calls_per_s"], 3),
            **{f"{size // 1024}KiB_tensor": round(got[size]["MB_per_s"] / base[size]["MB_per_s"], 3)
               for size in BULK_SIZES},
        })
    return rows


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=("raw", "mesh-libp2p", "mesh"))
    parser.add_argument("--psk", default="")
    args = parser.parse_args()
    if args.serve:
        trio.run(_server_main, args.serve, args.psk)
    else:
        for row in run():
            print(json.dumps(row))


if __name__ == "__main__":
    _main()
