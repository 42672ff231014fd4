"""Laws of partition placement (Hypothesis): codec round trip, CAS, dropped peers never stay placed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import (
    ClusterState,
    MemberAdd,
    MemberRemove,
    ModelRecord,
    ModelRegister,
    PeerAdmit,
    PeerRevoke,
    PlacementClear,
    PlacementGet,
    PlacementList,
    PlacementSet,
    Refusal,
    apply,
    decode_command,
    decode_state,
    encode_command,
    encode_state,
)

PEERS = [
    "12D3KooWGzBw2WRxj3tHLdT8wT5sVMwDkbeoX3Hx1Q6wD7HhXX9Z",
    "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5nw1dNBGZ2wEjS9BwHL",
    "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
    "16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY",
]
# Tiny pools: the interesting cases are collisions (same model, same peer, same revision).
models = st.sampled_from(["cnn", "vad", "ghost"])  # "ghost" is never registered
peers = st.sampled_from(PEERS)
partitions = st.dictionaries(st.integers(0, 3), st.lists(peers, min_size=1, max_size=3, unique=True),
                             min_size=1, max_size=3)
sets = st.builds(PlacementSet, model=models, partitions=partitions, expected_revision=st.integers(0, 10),
                 request=st.sampled_from(["", "r1", "r2"]))
commands = st.one_of(
    sets,
    st.builds(PlacementClear, model=models),
    st.builds(PlacementGet, model=models),
    st.builds(PlacementList),
    st.builds(MemberAdd, peer_id=peers, raft_addr=st.sampled_from(["10.0.0.1:4000", "10.0.0.2:4000"])),
    st.builds(MemberRemove, peer_id=peers),
    st.builds(PeerAdmit, peer_id=peers),
    st.builds(PeerRevoke, peer_id=peers),
)


def registered() -> ClusterState:
    state = ClusterState()
    for name in ("cnn", "vad"):
        record = ModelRecord(name=name, sha256="a" * 64, size=1, inputs=[], outputs=[], origin=PEERS[0])
        state, _ = apply(state, ModelRegister(record=record))
    return state


@given(st.one_of(sets, st.builds(PlacementClear, model=models), st.builds(PlacementGet, model=models),
                 st.builds(PlacementList)))
def test_every_placement_command_round_trips_through_the_codec(command):
    assert decode_command(encode_command(command)) == command


@settings(max_examples=200)
@given(st.lists(commands, max_size=25))
def test_a_removed_or_revoked_peer_never_remains_placed_and_snapshots_round_trip(sequence):
    state = registered()
    for command in sequence:
        state, _ = apply(state, command)
        placed = {p for m in state.placement.values() for p in m.peers()}
        if isinstance(command, MemberRemove):
            assert command.peer_id not in placed
        assert all(state.is_admitted(p) for p in placed)  # a revoked peer serves nothing
        assert set(state.placement) <= set(state.models)
        for placement in state.placement.values():
            assert placement.revision <= state.revision
    assert decode_state(encode_state(state)) == state


@given(st.lists(commands, max_size=25), sets)
def test_set_swaps_exactly_when_the_placement_is_at_the_expected_revision(sequence, command):
    state = registered()
    for c in sequence:
        state, _ = apply(state, c)
    current = state.placement.get(command.model)
    after, result = apply(state, command)
    if isinstance(result, Refusal):
        assert after is state
        return
    at = 0 if current is None else current.revision
    if at == command.expected_revision:
        assert result["swapped"] and after.revision == state.revision + 1
        assert after.placement[command.model].partitions == command.partitions
    else:
        assert after is state and result["placement_revision"] == at
        assert result["swapped"] == (command.request != "" and current is not None
                                     and current.request == command.request)
