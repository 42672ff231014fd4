"""A peer that completes the handshake but never says hello is cut off; one that says hello stays.

Both peers are raw libp2p hosts holding the mesh key, connected to a real node
in the same trio program (as in test_hostile_peer.py).
"""

from __future__ import annotations

import logging

import pytest
import trio

from mesh import Config, Node
from mesh import admission as admission_module
from mesh.cluster import LocalCluster
from mesh.config import read_mesh_key
from mesh.host import Host, new_identity_seed
from mesh.rpc import RpcPlane

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEADLINE = 2.0  # the rule under test, shortened from HELLO_DEADLINE so the test stays short


def raw_host(psk: str) -> Host:
    """A bare libp2p host holding the mesh key: a peer that does only what the test makes it do."""
    return Host(seed=new_identity_seed(), psk_hex=psk, listen="/ip4/127.0.0.1/tcp/0", on_peer_event=lambda *_: None)


async def poll(check, timeout: float, what: str) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while not check():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def test_a_silent_peer_is_dropped_and_a_talking_one_is_kept(tmp_path, monkeypatch, caplog):
    """Issue 3: "a peer that connects and goes silent … is cut off by limits"."""
    monkeypatch.setattr(admission_module, "HELLO_DEADLINE", DEADLINE)
    node_dir = LocalCluster(tmp_path).init_node("target").data_dir
    caplog.set_level(logging.WARNING, logger="meshnode.admission")

    async def main():
        async with Node.start(Config.load(node_dir), serve_api=False) as node:
            psk = read_mesh_key(node_dir / "mesh.key")
            silent, talker = raw_host(psk), raw_host(psk)
            async with trio.open_nursery() as nursery, silent.running(), talker.running():
                rpc = RpcPlane(talker, nursery)
                await silent.connect(node.host.addrs()[0])
                await talker.connect(node.host.addrs()[0])
                desc = {"peer_id": talker.peer_id, "name": "talker", "tier": "edge", "capabilities": [],
                        "location": "", "addrs": talker.addrs(), "raft_addr": ""}

                async def answer_hello(peer, body):
                    return desc  # the node re-checks a peer that sends no adverts with a hello

                rpc.route("hello", answer_hello)
                reply = await rpc.call(node.peer_id, "hello", desc, timeout=5)
                assert reply["peer_id"] == node.peer_id
                assert node.host.is_connected(silent.peer_id)

                await poll(lambda: not node.host.is_connected(silent.peer_id), DEADLINE + 10,
                           "the node to drop the silent peer")
                # Both connections are past their deadline once none is awaiting its hello.
                await poll(lambda: node.status()["admission"]["awaiting_hello"] == 0, DEADLINE + 10,
                           "the talker's deadline to pass")
                assert node.status()["admission"]["silent_dropped"] == 1
                assert node.host.is_connected(talker.peer_id)  # it said hello in time
                nursery.cancel_scope.cancel()
        return silent.peer_id

    silent_id = trio.run(main)
    lines = [r.getMessage() for r in caplog.records if "said no hello" in r.getMessage()]
    assert lines == [f"mesh: dropped peer {silent_id}: connected but said no hello within {DEADLINE:g} s"]


def test_a_peer_flooding_streams_is_cut_off_and_refused_for_a_while(tmp_path, caplog):
    """Issue 3: "a peer that ... opens thousands of streams, is cut off by limits"."""
    from mesh import rpc as rpc_module
    from mesh.host import DialError
    from mesh.wire import PROTOCOL_ID

    node_dir = LocalCluster(tmp_path).init_node("target").data_dir
    caplog.set_level(logging.WARNING, logger="meshnode.admission")

    async def main():
        async with Node.start(Config.load(node_dir), serve_api=False) as node:
            psk = read_mesh_key(node_dir / "mesh.key")
            flooder = raw_host(psk)
            async with flooder.running():
                await flooder.connect(node.host.addrs()[0])
                held = []
                for _ in range(1000):  # bounded: the node cuts us off long before
                    if not node.host.is_connected(flooder.peer_id):
                        break
                    try:
                        held.append(await flooder.open_stream(node.peer_id, PROTOCOL_ID))
                    except DialError:
                        pass
                await poll(lambda: not node.host.is_connected(flooder.peer_id), 10, "the flooder to be cut off")
                assert node.rpc.statistics()["streams_refused"] >= rpc_module.STREAM_FLOOD
                assert node.admission.reason(flooder.peer_id).startswith("cut off for 60 s")
                # It comes back at once: refused at the door while the cut-off lasts. A dial that fails before
                # the node's connection handler runs (a loaded machine) is not a refusal yet: dial again, bounded.
                for _ in range(5):
                    try:
                        await flooder.connect(node.host.addrs()[0])
                    except DialError:
                        pass
                    await poll(lambda: not node.host.is_connected(flooder.peer_id), 10, "the redial to be dropped")
                    with trio.move_on_after(3):  # counted once the node's connection handler has run
                        while node.status()["admission"]["refused"] < 2:
                            await trio.sleep(0.05)
                    if node.status()["admission"]["refused"] >= 2:
                        break
                assert node.status()["admission"]["refused"] >= 2, "the redials were never refused"
        return flooder.peer_id

    flooder_id = trio.run(main)
    lines = [r.getMessage() for r in caplog.records if r.name == "meshnode.admission" and flooder_id in r.getMessage()]
    assert len(lines) == 1 and "kept opening request streams past 8" in lines[0], lines
