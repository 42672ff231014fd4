"""The command codec: versioned msgpack, strict decoding (consensus.commands)."""

from __future__ import annotations

import msgpack
import pytest

from consensus import (
    COMMAND_VERSION,
    ConfigGet,
    ConfigSet,
    MemberAdd,
    MemberRemove,
    ModelRecord,
    ModelRegister,
    PeerAdmit,
    PeerRevoke,
    decode_command,
    encode_command,
)
from consensus.commands import MAX_COMMAND_BYTES
from crdt.errors import LocalProtocolError, RemoteProtocolError

RECORD = ModelRecord(
    name="demo",
    sha256="ab" * 32,
    size=1024,
    inputs=[{"name": "x", "dtype": "float32", "shape": [1, 3]}],
    outputs=[{"name": "y", "dtype": "float32", "shape": [1, 2]}],
    origin="12D3KooA",
)

PEER = "12D3KooWGzBw2WRxj3tHLdT8wT5sVMwDkbeoX3Hx1Q6wD7HhXX9Z"  # ed25519, identity multihash
OTHER = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"  # sha256 multihash (RSA keys)

# Golden bytes of version 1: a change here breaks every journal and every older peer.
GOLDEN = [
    (
        ConfigSet(key="threshold", value=0.5),
        "84a17601a174aa636f6e6669672e736574a36b6579a97468726573686f6c64a576616c7565cb3fe0000000000000",
    ),
    (ConfigGet(key="threshold"), "83a17601a174aa636f6e6669672e676574a36b6579a97468726573686f6c64"),
    (
        MemberAdd(peer_id="12D3KooA", raft_addr="10.0.0.2:4321"),
        "84a17601a174aa6d656d6265722e616464a7706565725f6964a8313244334b6f6f41a9726166745f61646472"
        "ad31302e302e302e323a34333231",
    ),
    (
        MemberRemove(peer_id="12D3KooA"),
        "83a17601a174ad6d656d6265722e72656d6f7665a7706565725f6964a8313244334b6f6f41",
    ),
    (
        ModelRegister(record=RECORD),
        "83a17601a174ae6d6f64656c2e7265676973746572a67265636f726486a46e616d65a464656d6fa6736861323536"
        "d940" + "6162" * 32 + "a473697a65cd0400a6696e707574739183a46e616d65a178a56474797065a7666c6f617433"
        "32a57368617065920103a76f7574707574739183a46e616d65a179a56474797065a7666c6f61743332a573686170"
        "65920102a66f726967696ea8313244334b6f6f41",
    ),
    (
        PeerAdmit(peer_id=PEER, name="cam-1", members={OTHER: "gw"}),
        "85a17601a174aa706565722e61646d6974a7706565725f6964d934" + PEER.encode().hex()
        + "a46e616d65a563616d2d31a76d656d6265727381d92e" + OTHER.encode().hex() + "a26777",
    ),
    (
        PeerRevoke(peer_id=OTHER),
        "84a17601a174ab706565722e7265766f6b65a7706565725f6964d92e" + OTHER.encode().hex()
        + "a76d656d6265727380",
    ),
]


@pytest.mark.parametrize("command, golden", GOLDEN, ids=[type(c).__name__ for c, _ in GOLDEN])
def test_encoding_matches_the_golden_bytes(command, golden):
    assert encode_command(command).hex() == golden
    assert decode_command(bytes.fromhex(golden)) == command


def test_the_wire_map_is_versioned_and_tagged():
    raw = msgpack.unpackb(encode_command(ConfigSet(key="k", value=[1, "x", None])))
    assert raw == {"v": COMMAND_VERSION, "t": "config.set", "key": "k", "value": [1, "x", None]}


def pack(**fields) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


MALFORMED = {
    "not-msgpack": b"\xc1",
    "truncated": encode_command(ConfigSet(key="k", value="v"))[:-2],
    "trailing-bytes": encode_command(ConfigGet(key="k")) + b"\x00",
    "not-a-map": msgpack.packb([1, "config.get", "k"]),
    "no-version": pack(t="config.get", key="k"),
    "version-2": pack(v=2, t="config.get", key="k"),
    "version-true": pack(v=True, t="config.get", key="k"),
    "version-float": pack(v=1.0, t="config.get", key="k"),
    "unknown-type": pack(v=1, t="config.truncate", key="k"),
    "no-type": pack(v=1, key="k"),
    "missing-field": pack(v=1, t="config.set", key="k"),
    "extra-field": pack(v=1, t="config.get", key="k", ttl=5),
    "empty-key": pack(v=1, t="config.get", key=""),
    "long-key": pack(v=1, t="config.get", key="k" * 257),
    "int-key": pack(v=1, t="config.get", key=5),
    "bad-addr": pack(v=1, t="member.add", peer_id="p", raft_addr="10.0.0.1"),
    "port-zero": pack(v=1, t="member.add", peer_id="p", raft_addr="10.0.0.1:0"),
    "record-not-a-map": pack(v=1, t="model.register", record=[1, 2]),
    "record-short-sha": pack(v=1, t="model.register", record={**RECORD.to_wire(), "sha256": "ab"}),
    "record-negative-size": pack(v=1, t="model.register", record={**RECORD.to_wire(), "size": -1}),
    "record-inputs-not-dicts": pack(v=1, t="model.register", record={**RECORD.to_wire(), "inputs": [1]}),
    "record-extra-field": pack(v=1, t="model.register", record={**RECORD.to_wire(), "x": 1}),
    "value-ext-type": msgpack.packb(
        {"v": 1, "t": "config.set", "key": "k", "value": msgpack.ExtType(5, b"x")}
    ),
    "value-int-map-key": msgpack.packb(
        {"v": 1, "t": "config.set", "key": "k", "value": {1: 2}}, strict_types=False
    ),
    "oversized": b"\x00" * (MAX_COMMAND_BYTES + 1),
    "admit-version-2": pack(v=2, t="peer.admit", peer_id=PEER, name="", members={}),
    "admit-malformed-peer-id": pack(v=1, t="peer.admit", peer_id="12D3KooW0OIl", name="", members={}),
    "admit-peer-id-with-space": pack(v=1, t="peer.admit", peer_id=PEER[:-1] + " ", name="", members={}),
    "admit-peer-id-bytes": pack(v=1, t="peer.admit", peer_id=PEER.encode(), name="", members={}),
    "admit-no-members": pack(v=1, t="peer.admit", peer_id=PEER, name=""),
    "admit-members-list": pack(v=1, t="peer.admit", peer_id=PEER, name="", members=[OTHER]),
    "admit-member-bad-id": pack(v=1, t="peer.admit", peer_id=PEER, name="", members={"nope": "x"}),
    "admit-name-int": pack(v=1, t="peer.admit", peer_id=PEER, name=5, members={}),
    "admit-name-control-chars": pack(v=1, t="peer.admit", peer_id=PEER, name="a\nb", members={}),
    "admit-name-too-long": pack(v=1, t="peer.admit", peer_id=PEER, name="n" * 257, members={}),
    "revoke-with-name": pack(v=1, t="peer.revoke", peer_id=PEER, name="x", members={}),
    "revoke-empty-peer-id": pack(v=1, t="peer.revoke", peer_id="", members={}),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_bytes_raise_remote_protocol_error(data):
    """Unknown commands are refused, never guessed; a peer's garbage is its fault."""
    with pytest.raises(RemoteProtocolError, match="^consensus: "):
        decode_command(data)


def test_decode_refuses_non_bytes():
    with pytest.raises(RemoteProtocolError, match="must be bytes"):
        decode_command({"v": 1, "t": "config.get", "key": "k"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build",
    [
        lambda: ConfigSet(key="", value=1),
        lambda: ConfigSet(key="k", value=float("nan")),
        lambda: ConfigSet(key="k", value={1: "int key"}),
        lambda: ConfigSet(key="k", value=object()),
        lambda: ConfigSet(key="k", value=2**64),
        lambda: ConfigGet(key=None),
        lambda: MemberAdd(peer_id="p", raft_addr="host"),
        lambda: MemberAdd(peer_id="p", raft_addr="host:70000"),
        lambda: MemberAdd(peer_id="p", raft_addr="my host:1"),
        lambda: ModelRegister(record={"name": "demo"}),
        lambda: ModelRecord(name="m", sha256="A" * 64, size=1, inputs=[], outputs=[], origin="p"),
        lambda: ModelRecord(name="m", sha256="a" * 64, size=True, inputs=[], outputs=[], origin="p"),
        lambda: PeerAdmit(peer_id="peer-1"),
        lambda: PeerAdmit(peer_id=PEER, name=None),
        lambda: PeerAdmit(peer_id=PEER, members={PEER: 7}),
        lambda: PeerAdmit(peer_id=PEER, members={f"{PEER[:-3]}{i:03d}": "" for i in range(1025)}),
        lambda: PeerRevoke(peer_id="0" * 52),  # 0 is not in the base58 alphabet
        lambda: PeerRevoke(peer_id="1" * 200),
    ],
)
def test_our_own_misuse_raises_local_protocol_error(build):
    with pytest.raises(LocalProtocolError, match="^consensus: "):
        build()


def test_commands_are_keyword_only():
    with pytest.raises(TypeError):
        ConfigSet("k", 1)  # type: ignore[misc]


def test_encode_refuses_a_non_command():
    with pytest.raises(LocalProtocolError, match="not a command"):
        encode_command({"t": "config.set"})  # type: ignore[arg-type]


def test_encode_refuses_a_command_over_the_entry_limit():
    with pytest.raises(LocalProtocolError, match="byte limit"):
        encode_command(ConfigSet(key="big", value=b"\x00" * MAX_COMMAND_BYTES))


def test_admit_members_are_a_private_sorted_copy():
    members = {PEER: "b", OTHER: "a"}
    command = PeerAdmit(peer_id=PEER, members=members)
    members["x"] = "y"
    assert list(command.members) == sorted([PEER, OTHER])
    with pytest.raises(TypeError):
        command.members[OTHER] = "z"  # type: ignore[index]
    assert decode_command(encode_command(command)) == command


def test_tuples_become_lists_so_a_round_trip_is_exact():
    command = ConfigSet(key="k", value=(1, (2, 3)))
    assert command.value == [1, [2, 3]]
    assert decode_command(encode_command(command)) == command
