"""A member of the mesh that sends malformed messages gets errors; the node keeps running.

The attacker is a real libp2p host holding the mesh key, talking the real RPC
protocol to a real node in the same trio program.
"""

from __future__ import annotations

import numpy as np
import pytest
import trio

from crdt.errors import MeshError
from mesh import Config, Node
from mesh.cluster import LocalCluster
from mesh.config import read_mesh_key
from mesh.host import Host, new_identity_seed
from mesh.rpc import RemoteError, RpcPlane

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_malformed_messages_are_refused_and_the_node_survives(tmp_path):
    from inference import build_demo_model

    node_dir = LocalCluster(tmp_path).init_node("target").data_dir
    model = build_demo_model(tmp_path / "m.onnx", seed=2)
    image = np.ones((1, 3, 32, 32), np.float32)

    async def main():
        async with Node.start(Config.load(node_dir), serve_api=False) as node:
            await node.add_model("m", model)
            psk = read_mesh_key(node_dir / "mesh.key")
            evil = Host(seed=new_identity_seed(), psk_hex=psk, listen="/ip4/127.0.0.1/tcp/0",
                        on_peer_event=lambda *_: None)
            async with trio.open_nursery() as nursery, evil.running():
                rpc = RpcPlane(evil, nursery)
                await evil.connect(node.host.addrs()[0])
                me = evil.peer_id
                good_desc = {"peer_id": me, "name": "evil", "tier": "edge", "capabilities": [], "location": "",
                             "addrs": evil.addrs(), "raft_addr": ""}
                await rpc.call(node.peer_id, "hello", good_desc)  # else the silent-peer rule may cut it off
                notes = [
                    ("advert", {"desc": good_desc, "load": {"queue": 0, "max_queue": 1, "models": []},
                                "peers": [["0OIl-not-a-peer-id", ["/ip4/127.0.0.1/tcp/1/p2p/0OIl"]]]}),
                    ("advert", {"desc": good_desc, "load": {"queue": True, "max_queue": 1}, "peers": []}),
                    ("advert", {"desc": {**good_desc, "peer_id": node.peer_id}, "load": {}, "peers": []}),
                    ("advert", "not a map"),
                    ("advert", {"desc": good_desc, "load": {"queue": 0, "max_queue": 1, "latency_ms": float("nan")}}),
                    ("advert", {"desc": good_desc, "load": {"queue": 0, "max_queue": 1, "speed_ms": {"m": -1.0}}}),
                    ("advert", {"desc": good_desc, "load": {"queue": 0, "max_queue": 1, "models": ["m"] * 10_000}}),
                    ("advert", {"desc": good_desc, "load": {"queue": 0, "max_queue": 1, "profiles": {
                        "m": {"cuts": "x", "ms": [1.0], "mem": [1], "bytes": [1]}}}}),  # one boundary short
                    ("crdt.sync", {"t": "delta", "v": 1, "delta": "garbage"}),
                    ("crdt.sync", [1, 2, 3]),
                    ("no.such.note", None),
                ]
                for method, body in notes:
                    await rpc.notify(node.peer_id, method, body)
                calls = [
                    ("hello", {**good_desc, "peer_id": node.peer_id}, "another peer"),
                    ("hello", {**good_desc, "tier": "moon"}, "tier"),
                    ("raft.add", {"peer_id": "someone-else", "raft_addr": "127.0.0.1:1"}, "only ask to add itself"),
                    ("raft.add", {"peer_id": me, "raft_addr": "127.0.0.1:1", "hops": -5}, "too many nodes"),
                    ("raft.join", {"raft_addr": 7}, "raft_addr"),
                    ("raft.submit", b"\x81\xa1v\x63", "consensus"),
                    ("model.fetch", {"sha256": "zz", "offset": 0, "length": 10}, "sha256"),
                    ("model.fetch", {"sha256": "a" * 64, "offset": -1, "length": 10}, "offset"),
                    ("infer", {"model": "m", "inputs": {"image": {"dtype": "float32", "shape": [1, 3, 32, 32],
                                                                  "data": b"short"}}}, "inference"),
                    ("infer", {"model": "m", "inputs": {"image": {"dtype": "object", "shape": [1],
                                                                  "data": b"x"}}}, "dtype"),
                    ("infer", {"model": 5}, "model"),
                    ("infer", {"model": "m", "inputs": {}, "deadline_s": 1.0, "hops": 0, "start": 1, "cuts": "nope"},
                     "differently"),
                    ("infer", {"model": "m", "inputs": {}, "deadline_s": 1.0, "hops": 0, "id": 5}, "request_id"),
                    ("infer", {"model": "m", "inputs": {}, "deadline_s": 1.0, "hops": 0, "start": 1}, "name its cuts"),
                    ("infer", {"model": "m", "inputs": {}, "deadline_s": 1.0, "hops": 0, "sha256": "0" * 64},
                     "another version"),
                    ("link.open", {"v": 99}, "version"),
                    ("link.open", "not a map", "version"),
                    ("nope", None, "unknown method"),
                ]
                for method, body, needle in calls:
                    with pytest.raises(RemoteError, match=needle):
                        await rpc.call(node.peer_id, method, body, timeout=5)
                with trio.fail_after(10):  # every malformed advert is refused and counted (7 above)
                    while node.advert_stats["refused"] < 7:
                        await trio.sleep(0.05)
                assert node.advert_stats == {"received": 8, "refused": 7}  # the first one was fine
                nursery.cancel_scope.cancel()
            # The node is still whole: it answers, syncs, infers, and never took the attacker's claims.
            assert node.status()["name"] == "target"
            assert all(p["peer_id"] != node.peer_id for p in node.peer_list())
            result = await node.infer("m", {"image": image})
            assert result.outputs["probs"].shape == (1, 10)
            await node.state.put("still/alive", True)
            assert node.raft_status()["voters"] == [node.raft_addr]
            with pytest.raises(MeshError):
                await node.infer("m", {"image": image.astype(np.float64)})

    trio.run(main)


def _random_body(rng, depth=0):
    """A random msgpack-able value, biased towards the shapes handlers expect."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**40, 3.5, float("inf")])
    if kind == 2:
        return rng.choice(["", "m", "a" * 64, "0OIl", "/ip4/127.0.0.1/tcp/1/p2p/x", "127.0.0.1:1", "\u00ff" * 3])
    if kind == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    if kind == 4:
        return rng.randrange(-5, 5)
    if kind == 5:
        return rng.choice(["float32", "object", "delta", "digest", "config.set"])
    if kind == 6:
        return [_random_body(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["peer_id", "raft_addr", "hops", "model", "inputs", "sha256", "offset", "length", "desc", "load",
            "peers", "t", "v", "delta", "context", "dtype", "shape", "data", "name", "tier", "raft"]
    return {rng.choice(keys): _random_body(rng, depth + 1) for _ in range(rng.randrange(5))}


def test_random_bodies_to_every_method_never_hurt_the_node(tmp_path):
    import random

    seed = 20261123
    rng = random.Random(seed)
    node_dir = LocalCluster(tmp_path).init_node("target").data_dir

    async def main():
        async with Node.start(Config.load(node_dir), serve_api=False) as node:
            psk = read_mesh_key(node_dir / "mesh.key")
            evil = Host(seed=new_identity_seed(), psk_hex=psk, listen="/ip4/127.0.0.1/tcp/0",
                        on_peer_event=lambda *_: None)
            methods = ["hello", "raft.join", "raft.add", "raft.submit", "raft.models", "model.fetch", "infer",
                       "link.open", "raft.admitted"]
            notes = ["advert", "crdt.sync", "crdt.zone", "bye", "admission.refused"]
            async with trio.open_nursery() as nursery, evil.running():
                rpc = RpcPlane(evil, nursery)
                await evil.connect(node.host.addrs()[0])
                await rpc.call(node.peer_id, "hello", {
                    "peer_id": evil.peer_id, "name": "fuzzer", "tier": "edge", "capabilities": [], "location": "",
                    "addrs": evil.addrs(), "raft_addr": ""})  # else the silent-peer rule may cut it off
                for i in range(300):
                    body = _random_body(rng)
                    if i % 3 == 0:
                        await rpc.notify(node.peer_id, rng.choice(notes), body)
                        continue
                    method = rng.choice(methods)
                    try:
                        await rpc.call(node.peer_id, method, body, timeout=10)
                    except RemoteError as exc:
                        # Refused by validation, never by a crash inside a handler.
                        assert "internal error" not in str(exc), f"seed {seed}: {method} {body!r}: {exc}"
                # Random and truncated bytes at the direct-link port: every connection is closed.
                for _ in range(30):
                    sock = await trio.open_tcp_stream("127.0.0.1", node.link_port)
                    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
                    try:
                        await sock.send_all(rng.choice([junk, b"MNL1" + junk[:16], b"MNL1"]))
                        await sock.send_eof()
                        with trio.fail_after(5):
                            assert await sock.receive_some(100) == b""
                    except trio.BrokenResourceError:
                        pass  # the node closed it before our EOF (or reset it): closed either way
                    await sock.aclose()
                nursery.cancel_scope.cancel()
            assert node.status()["rpc"]["served"] >= 200, f"seed {seed}"
            await node.state.put("after/fuzz", 1)
            assert await node.config.get("never") is None

    trio.run(main)


def test_a_voter_ignores_removal_notes_from_a_peer_behind_its_own_log(tmp_path):
    """A leader of a voter set the mesh left (voters removed while away) is behind; its notes change nothing."""
    node_dir = LocalCluster(tmp_path).init_node("target").data_dir

    async def main():
        async with Node.start(Config.load(node_dir), serve_api=False) as node:
            await node.config.set("before", 1)
            psk = read_mesh_key(node_dir / "mesh.key")
            evil = Host(seed=new_identity_seed(), psk_hex=psk, listen="/ip4/127.0.0.1/tcp/0",
                        on_peer_event=lambda *_: None)
            async with trio.open_nursery() as nursery, evil.running():
                rpc = RpcPlane(evil, nursery)
                await evil.connect(node.host.addrs()[0])
                await rpc.call(node.peer_id, "hello", {
                    "peer_id": evil.peer_id, "name": "zombie", "tier": "edge", "capabilities": [], "location": "",
                    "addrs": evil.addrs(), "raft_addr": "127.0.0.1:9"})  # it says it votes
                last = node.raft.status().last_index
                assert last >= 2
                for body in ({"voters": ["127.0.0.1:9"], "commit_index": last},  # behind or level: ignored
                             {"voters": ["127.0.0.1:9"], "commit_index": 0},
                             {"voters": ["127.0.0.1:9"]},  # malformed: refused
                             {"voters": ["127.0.0.1:9"], "commit_index": -1},
                             {"voters": ["127.0.0.1:9"], "commit_index": "9999"}):
                    await rpc.notify(node.peer_id, "raft.removed", body)
                await trio.sleep(0.5)  # notes are one-way: give the node time to (not) act
                nursery.cancel_scope.cancel()
            assert node.raft is not None and node.raft.status().role == "leader"
            assert node.raft_status()["role"] == "leader"
            await node.config.set("after", 2)
            assert await node.config.get("after") == 2

    trio.run(main)
