"""ClusterState, its records and the snapshot codec (consensus.state)."""

from __future__ import annotations

import msgpack
import pytest

import consensus
from consensus import (
    ClusterState,
    ConfigSet,
    MemberAdd,
    ModelRecord,
    ModelRegister,
    apply,
    decode_state,
    encode_state,
)
from crdt.errors import RemoteProtocolError

RECORD = ModelRecord(
    name="demo", sha256="0" * 64, size=7, inputs=[{"name": "x"}], outputs=[{"name": "y"}], origin="p1"
)


def busy_state() -> ClusterState:
    state = ClusterState()
    for command in [
        ConfigSet(key="threshold", value=0.5),
        ConfigSet(key="blob", value={"b": b"\x00\xff", "l": [1, None, True]}),
        ModelRegister(record=RECORD),
        MemberAdd(peer_id="p1", raft_addr="10.0.0.1:4000"),
    ]:
        state, _ = apply(state, command)
    return state


def test_public_api_is_pinned():
    assert sorted(consensus.__all__) == sorted(
        [
            "COMMAND_VERSION", "ClusterState", "Command", "ConfigEntry", "ConfigGet", "ConfigSet",
            "ConsensusError", "ConsensusUnavailable", "Log", "MemberAdd", "MemberRemove", "MemoryLog",
            "ModelRecord", "ModelRegister", "RaftLog", "RaftStatus", "Refusal", "apply",
            "decode_command", "decode_state", "encode_command", "encode_state",
        ]
    )


def test_errors_are_mesh_errors():
    from crdt.errors import MeshError

    assert issubclass(consensus.ConsensusUnavailable, consensus.ConsensusError)
    assert issubclass(consensus.ConsensusError, MeshError)


def test_an_empty_state_is_revision_zero_with_empty_maps():
    state = ClusterState()
    assert (state.revision, dict(state.config), dict(state.models), dict(state.members)) == (0, {}, {}, {})


def test_states_built_from_the_same_writes_are_equal():
    assert busy_state() == busy_state()
    assert busy_state() != ClusterState()


def test_snapshot_round_trip():
    state = busy_state()
    assert decode_state(encode_state(state)) == state


def test_model_record_wire_round_trip():
    assert ModelRecord.from_wire(RECORD.to_wire()) == RECORD


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",
        msgpack.packb([1]),
        msgpack.packb({"v": 2, "revision": 0, "config": {}, "models": {}, "members": {}}),
        msgpack.packb({"v": 1, "revision": 0, "config": {}, "models": {}}),
        msgpack.packb({"v": 1, "revision": -1, "config": {}, "models": {}, "members": {}}),
        msgpack.packb({"v": 1, "revision": 0, "config": [], "models": {}, "members": {}}),
        msgpack.packb({"v": 1, "revision": 0, "config": {"k": {"value": 1}}, "models": {}, "members": {}}),
        msgpack.packb(
            {"v": 1, "revision": 0, "config": {}, "models": {"other": RECORD.to_wire()}, "members": {}}
        ),
        msgpack.packb({"v": 1, "revision": 0, "config": {}, "models": {}, "members": {"p": "nowhere"}}),
    ],
    ids=[
        "not-msgpack", "not-a-map", "version-2", "missing-members", "negative-revision",
        "config-not-a-map", "entry-without-revision", "model-under-wrong-name", "bad-member-addr",
    ],
)
def test_corrupt_snapshots_are_refused(data):
    with pytest.raises(RemoteProtocolError, match="^consensus: "):
        decode_state(data)
