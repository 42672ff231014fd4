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
    PeerAdmit,
    PeerRevoke,
    apply,
    decode_state,
    encode_state,
)
from crdt.errors import RemoteProtocolError

RECORD = ModelRecord(
    name="demo", sha256="0" * 64, size=7, inputs=[{"name": "x"}], outputs=[{"name": "y"}], origin="p1"
)


PEER = "12D3KooWGzBw2WRxj3tHLdT8wT5sVMwDkbeoX3Hx1Q6wD7HhXX9Z"
OTHER = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"


def busy_state() -> ClusterState:
    state = ClusterState()
    for command in [
        ConfigSet(key="threshold", value=0.5),
        ConfigSet(key="blob", value={"b": b"\x00\xff", "l": [1, None, True]}),
        ModelRegister(record=RECORD),
        MemberAdd(peer_id="p1", raft_addr="10.0.0.1:4000"),
        PeerAdmit(peer_id=PEER, name="cam-1"),
        PeerAdmit(peer_id=OTHER),
        PeerRevoke(peer_id=OTHER),
    ]:
        state, _ = apply(state, command)
    return state


def test_public_api_is_pinned():
    assert sorted(consensus.__all__) == sorted(
        [
            "AdmittedPeer", "COMMAND_VERSION", "ClusterState", "Command", "ConfigEntry", "ConfigGet", "ConfigSet",
            "ConsensusError", "ConsensusUnavailable", "Log", "MemberAdd", "MemberRemove", "MemoryLog",
            "ModelRecord", "ModelRegister", "PeerAdmit", "PeerRevoke", "RaftLog", "RaftStatus", "Refusal", "apply",
            "decode_command", "decode_state", "discard_journal", "encode_command", "encode_state",
            "ConfigCas", "ConfigDelete", "ConfigList", "Fence", "TaskAcquire", "TaskCheck", "TaskLease",
            "TaskList", "TaskRelease", "TaskRenew",
            "ModelPlacement", "PlacementClear", "PlacementGet", "PlacementList", "PlacementSet",
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


def test_snapshot_round_trip_keeps_the_admitted_list():
    state = decode_state(encode_state(busy_state()))
    assert state.admission_enforced
    assert state.admitted[PEER].name == "cam-1" and not state.admitted[PEER].revoked
    assert state.admitted[OTHER].revoked
    assert state.is_admitted(PEER) and not state.is_admitted(OTHER) and not state.is_admitted("p1")


def test_a_version_1_snapshot_still_reads_as_an_open_mesh():
    """Journals written before the admitted-peer list must keep loading."""
    old = msgpack.packb(
        {"v": 1, "revision": 3, "config": {}, "models": {}, "members": {"p1": "10.0.0.1:4000"}}
    )
    state = decode_state(old)
    assert state.revision == 3 and dict(state.admitted) == {}
    assert not state.admission_enforced and state.is_admitted("anyone")


def test_model_record_wire_round_trip():
    assert ModelRecord.from_wire(RECORD.to_wire()) == RECORD


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",
        msgpack.packb([1]),
        msgpack.packb({"v": 3, "revision": 0, "config": {}, "models": {}, "members": {}, "admitted": {}}),
        msgpack.packb({"v": 2, "revision": 0, "config": {}, "models": {}, "members": {}}),
        msgpack.packb({"v": 1, "revision": 0, "config": {}, "models": {}, "members": {}, "admitted": {}}),
        msgpack.packb(
            {"v": 2, "revision": 0, "config": {}, "models": {}, "members": {},
             "admitted": {"not a peer id": {"name": "", "revoked": False, "revision": 1}}}
        ),
        msgpack.packb(
            {"v": 2, "revision": 0, "config": {}, "models": {}, "members": {},
             "admitted": {PEER: {"name": "", "revoked": 1, "revision": 1}}}
        ),
        msgpack.packb(
            {"v": 2, "revision": 0, "config": {}, "models": {}, "members": {}, "admitted": {PEER: {"name": ""}}}
        ),
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
        "not-msgpack", "not-a-map", "version-3", "v2-without-admitted", "v1-with-admitted",
        "admitted-bad-peer-id", "admitted-revoked-not-bool", "admitted-entry-fields", "missing-members", "negative-revision",
        "config-not-a-map", "entry-without-revision", "model-under-wrong-name", "bad-member-addr",
    ],
)
def test_corrupt_snapshots_are_refused(data):
    with pytest.raises(RemoteProtocolError, match="^consensus: "):
        decode_state(data)
