"""Privacy proof: a local-only value never appears in any frame a node sends to a peer (issue 5).

Three real nodes run in one trio program (the embedding API): A and B in zone
"lab", C in zone "office". Every plaintext a node hands to a peer is captured
at the lowest layer before encryption, with the peer it goes to:

- libp2p: ``SecureSession.write`` (the Noise session: yamux frames, every
  stream, including RPC, membership and sync, before Noise encrypts them);
- direct links: ``LinkStream._seal`` (the plaintext of each AES-GCM record);
- the Raft port: pysyncobj's ``TcpConnection.send`` (the message before it is
  pickled, compressed and encrypted; sensor state never goes there, checked).

A writes distinctive local-only and zone-only values before B and C exist (so
their join is a full state transfer), more after, and then every link is cut
and re-made (a new digest exchange from scratch). The captured frames must
hold no local-only value and no zone-only value bound for C in any encoding,
while shared values and B's zone values are there (so the capture works).
"""

from __future__ import annotations

import json
import pickle
import secrets
import struct
from contextlib import AsyncExitStack

import msgpack
import pytest
import trio
import yaml

from mesh import Config, Node
from mesh.cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]

PRIVACY = {
    "local_only": ["secret/*"],
    "zone_only": ["floor/*"],
    "aggregates": [{"key": "stats/secret-mean", "source": "secret/*", "function": "mean", "epsilon": 1.0,
                    "sensitivity": 1.0, "every": 0.3}],
}


class Capture:
    """Plaintext frames sent to peers: (layer, receiving peer id or None, bytes)."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, str | None, bytes]] = []

    def install(self, monkeypatch) -> None:
        from libp2p.security.secure_session import SecureSession
        from pysyncobj.tcp_connection import TcpConnection

        from mesh.link import LinkStream

        frames = self.frames
        session_write, seal, raft_send = SecureSession.write, LinkStream._seal, TcpConnection.send

        async def write(session, data):
            frames.append(("libp2p", session.remote_peer.to_base58(), bytes(data)))
            return await session_write(session, data)

        def sealed(link, parts, size):
            frames.append(("link", link.peer_id, b"".join(bytes(p) for p in parts)))
            return seal(link, parts, size)

        def send(conn, message):
            frames.append(("raft", None, pickle.dumps(message)))  # pysyncobj's own thread: list.append is atomic
            return raft_send(conn, message)

        monkeypatch.setattr(SecureSession, "write", write)
        monkeypatch.setattr(LinkStream, "_seal", sealed)
        monkeypatch.setattr(TcpConnection, "send", send)

    def to(self, peer: str | None = None) -> list[bytes]:
        """Frames sent to ``peer`` (every frame when None)."""
        return [data for _, to, data in self.frames if peer is None or to == peer]


def encodings(value) -> list[bytes]:
    """The ways ``value`` could appear in a frame: raw text, msgpack, JSON, and the binary of a hex string."""
    forms = [msgpack.packb(value), json.dumps(value).encode()]
    if isinstance(value, str):
        forms.append(value.encode())
        try:
            forms.append(bytes.fromhex(value))
        except ValueError:
            pass  # not a hex string (a key name)
    else:
        forms += [repr(value).encode(), struct.pack(">d", value), struct.pack("<d", value)]
    return forms


def leaks(frames: list[bytes], value) -> int:
    """How many frames hold ``value`` in any encoding."""
    forms = encodings(value)
    return sum(any(form in frame for form in forms) for frame in frames)


def add_privacy(data_dir) -> None:
    path = data_dir / "node.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["privacy"] = PRIVACY
    raw["sync"] = {"interval": 0.2}
    path.write_text(yaml.safe_dump(raw))


async def wait_until(check, what: str, timeout: float = 30.0) -> None:
    deadline = trio.current_time() + timeout
    while not check():
        if trio.current_time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {what}")
        await trio.sleep(0.05)


def test_no_frame_to_a_peer_holds_a_local_only_value_nor_a_zone_value_outside_its_zone(tmp_path, monkeypatch):
    cluster = LocalCluster(tmp_path)
    a = cluster.init_node("a", location="lab")
    b = cluster.init_node("b", location="lab")
    c = cluster.init_node("c", location="office")
    for node in (a, b, c):
        add_privacy(node.data_dir)
    capture = Capture()
    capture.install(monkeypatch)

    hexes = iter(secrets.token_hex(8) for _ in range(20))
    local = {f"secret/{next(hexes)}": next(hexes) for _ in range(2)}  # key names are private too
    local_numbers = {"secret/hr-1": 71.123456789, "secret/hr-2": 64.987654321}
    zone = {f"floor/{next(hexes)}": next(hexes) for _ in range(2)}
    shared = {f"hall/{i}": next(hexes) for i in range(2)}

    async def write_batch(na, n: int) -> None:
        for values in (local, zone, shared):
            key = list(values)[n]
            await na.state.put(key, values[key])
        key = list(local_numbers)[n]
        await na.state.put(key, local_numbers[key])

    async def main():
        async with AsyncExitStack() as stack:
            na = await stack.enter_async_context(Node.start(Config.load(a.data_dir), serve_api=False))
            await write_batch(na, 0)  # before B and C exist: their join is a full transfer
            nb = await stack.enter_async_context(Node.start(Config.load(b.data_dir), serve_api=False))
            nc = await stack.enter_async_context(Node.start(Config.load(c.data_dir), serve_api=False))
            first_shared, first_zone = next(iter(shared)), next(iter(zone))
            await wait_until(lambda: nb.state.get(first_shared) and nc.state.get(first_shared)
                             and nb.state.get(first_zone), "first batch synced")
            await write_batch(na, 1)
            await wait_until(lambda: all(nb.state.get(k) and nc.state.get(k) for k in shared)
                             and all(nb.state.get(k) for k in zone), "second batch synced")

            # Cut every connection and let them re-form: a digest exchange from scratch.
            def digests() -> int:
                return sum(n.state.statistics()[part]["core"]["digests_sent"] if part else
                           n.state.statistics()["core"]["digests_sent"]
                           for n in (na, nb, nc) for part in ("", "zone"))

            rounds = digests()
            for peer in (nb.peer_id, nc.peer_id):
                await na.host.disconnect(peer)
            await nb.host.disconnect(nc.peer_id)
            await wait_until(lambda: digests() >= rounds + 20, "sync rounds after reconnecting")
            # The aggregate of the local numbers reaches every node, noisy.
            await wait_until(lambda: nc.state.get("stats/secret-mean") is not None, "aggregate released")
            release = nc.state.get("stats/secret-mean")["value"]
            assert release["noisy"] is True and release["epsilon"] == 1.0

            # Each node holds what its scope allows, and nothing more.
            for key, value in local.items():
                assert na.state.get(key)["value"] == value and na.state.get(key)["scope"] == "local"
                assert nb.state.get(key) is None and nc.state.get(key) is None
            for key, value in zone.items():
                assert nb.state.get(key)["value"] == value and nb.state.get(key)["scope"] == "zone"
                assert nc.state.get(key) is None
            assert nb.state.statistics()["zone"]["peers"] == [na.peer_id]
            assert nc.state.statistics()["zone"]["peers"] == []
            peers = (na.peer_id, nb.peer_id, nc.peer_id)
        return peers

    peer_a, peer_b, peer_c = trio.run(main)

    layers = {layer for layer, _, _ in capture.frames}
    assert {"libp2p", "link"} <= layers, f"the capture missed a layer: {layers}"
    assert {to for layer, to, _ in capture.frames if layer != "raft"} <= {peer_a, peer_b, peer_c}
    every = capture.to()
    # The capture works: shared values (and the noisy aggregate key) are in frames to both peers ...
    for value in shared.values():
        assert leaks(capture.to(peer_b), value) and leaks(capture.to(peer_c), value)
    assert leaks(every, "stats/secret-mean")
    # ... and zone values in frames to B, in its zone.
    for value in zone.values():
        assert leaks(capture.to(peer_b), value)
    # Rule: a local-only key or value never appears in any frame sent to any peer.
    for key, value in [*local.items(), *local_numbers.items()]:
        assert leaks(every, key) == 0, f"local-only key {key} left the node"
        assert leaks(every, value) == 0, f"local-only value of {key} left the node"
    # Rule: a zone-only value never goes to a node of another zone.
    for key, value in zone.items():
        assert leaks(capture.to(peer_c), value) == 0 and leaks(capture.to(peer_c), key) == 0
    # Sensor state never rides the Raft port.
    raft = [data for layer, _, data in capture.frames if layer == "raft"]
    for value in [*shared.values(), *zone.values()]:
        assert leaks(raft, value) == 0
