"""Partition placement in the pure state machine (consensus.placement): CAS, refusals, bounds, dropping peers."""

from __future__ import annotations

import msgpack
import pytest

from consensus import (
    ClusterState,
    MemberAdd,
    MemberRemove,
    MemoryLog,
    ModelPlacement,
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
from consensus.state import MAX_PARTITION_PEERS, MAX_PARTITIONS
from crdt.errors import LocalProtocolError, RemoteProtocolError

A = "12D3KooWGzBw2WRxj3tHLdT8wT5sVMwDkbeoX3Hx1Q6wD7HhXX9Z"
B = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5nw1dNBGZ2wEjS9BwHL"
C = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"


def record(name: str = "cnn") -> ModelRecord:
    return ModelRecord(name=name, sha256="a" * 64, size=10, inputs=[], outputs=[], origin=A)


def run(*commands, state=None):
    state = ClusterState() if state is None else state
    results = []
    for command in commands:
        state, result = apply(state, command)
        results.append(result)
    return state, results


def registered(*names: str) -> ClusterState:
    state, _ = run(*(ModelRegister(record=record(n)) for n in names or ("cnn",)))
    return state


def place(partitions, expected=0, model="cnn", request=""):
    return PlacementSet(model=model, partitions=partitions, expected_revision=expected, request=request)


def test_set_with_expected_revision_0_places_a_model_that_has_none():
    state, [r] = run(place({0: [A], 1: [B, A]}), state=registered())
    assert r == {"model": "cnn", "placement_revision": 2, "swapped": True, "exists": True, "revision": 2,
                 "partitions": [{"partition": 0, "peers": [A]}, {"partition": 1, "peers": [B, A]}]}
    assert state.placement["cnn"] == ModelPlacement({0: (A,), 1: (B, A)}, 2)


def test_set_replaces_the_whole_placement_only_at_the_expected_revision():
    # Two planners read revision 2; the first to commit wins, the second must re-plan (module doc).
    state, results = run(place({0: [A], 1: [B]}), place({0: [B]}, expected=2), place({0: [C]}, expected=2),
                         state=registered())
    assert [r["swapped"] for r in results] == [True, True, False]
    assert results[2]["partitions"] == [{"partition": 0, "peers": [B]}] and results[2]["placement_revision"] == 3
    assert dict(state.placement["cnn"].partitions) == {0: (B,)}  # partition 1 is gone: whole placements only
    assert state.revision == 3


def test_a_failed_compare_is_an_answer_and_leaves_the_state_object_alone():
    before, _ = run(place({0: [A]}), state=registered())
    after, r = apply(before, place({0: [B]}, expected=0))
    assert after is before and r["swapped"] is False and r["exists"] is True


def test_a_set_applied_twice_reports_its_own_swap_and_equal_commands_never_both_win():
    state, [first, again] = run(place({0: [A]}, request="r1"), place({0: [A]}, request="r1"), state=registered())
    assert first["swapped"] and again["swapped"] and state.revision == 2
    _, [x, y] = run(place({0: [A]}, request=""), place({0: [A]}, request=""), state=registered())
    assert x["swapped"] and not y["swapped"]


def test_placing_a_model_that_is_not_registered_is_refused():
    state, [r] = run(place({0: [A]}, model="ghost"), state=registered())
    assert isinstance(r, Refusal) and "'ghost': it is not registered" in r.reason and state.revision == 1


def test_with_the_list_on_only_admitted_peers_may_be_placed_voters_or_not():
    state, _ = run(PeerAdmit(peer_id=A), PeerAdmit(peer_id=B), PeerRevoke(peer_id=B), state=registered())
    _, [revoked] = run(place({0: [A, B]}), state=state)
    assert isinstance(revoked, Refusal) and f"on {B}: it is revoked" in revoked.reason
    _, [unknown] = run(place({0: [C]}), state=state)
    assert isinstance(unknown, Refusal) and "not on the admitted-peer list" in unknown.reason
    _, [fine] = run(place({0: [A]}), state=state)  # A is admitted, not a voter: fine
    assert fine["swapped"]


def test_an_open_mesh_places_any_well_formed_peer():
    _, [r] = run(place({0: [C]}), state=registered())
    assert r["swapped"]


@pytest.mark.parametrize("partitions, message", [
    ({}, "places no partition"),
    ({0: []}, "partition 0 lists no peer"),
    ({0: ["not-a-peer"]}, "base58 libp2p peer id"),
    ({0: [A, A]}, "lists a peer twice"),
    ({-1: [A]}, "partition index must be an int"),
    ({MAX_PARTITIONS: [A]}, "partition index must be an int"),
    ({"0": [A]}, "partition index must be an int"),
    ({True: [A]}, "partition index must be an int"),
    ({0: A}, "must list peer ids"),
    ({i: [A] for i in range(MAX_PARTITIONS + 1)}, f"over the limit of {MAX_PARTITIONS}"),
    ({0: [A] * (MAX_PARTITION_PEERS + 1)}, f"over the limit of {MAX_PARTITION_PEERS}"),
])
def test_malformed_placements_are_our_own_misuse_with_a_clear_reason(partitions, message):
    with pytest.raises(LocalProtocolError, match="consensus: ") as info:
        place(partitions)
    assert message in str(info.value)


def test_the_largest_placement_fits_one_command():
    peers = [A[:-2] + f"{i:02d}".replace("0", "z") for i in range(MAX_PARTITION_PEERS)]
    big = place({i: peers for i in range(MAX_PARTITIONS)})
    assert decode_command(encode_command(big)) == big


def test_clear_removes_the_placement_and_counts_as_a_write_even_when_absent():
    state, [_, cleared, again] = run(place({0: [A]}), PlacementClear(model="cnn"), PlacementClear(model="cnn"),
                                     state=registered())
    assert cleared == {"model": "cnn", "cleared": True, "revision": 3}
    assert again == {"model": "cnn", "cleared": False, "revision": 4}
    assert "cnn" not in state.placement
    _, [r] = run(place({0: [B]}, expected=0), state=state)  # after a clear, 0 places it again
    assert r["swapped"]


def test_get_and_list_read_without_writing():
    state, _ = run(place({0: [A]}), place({1: [B]}, model="vad"), state=registered("cnn", "vad"))
    after, got = apply(state, PlacementGet(model="cnn"))
    assert after is state and got == {"model": "cnn", "placement_revision": 3,
                                      "partitions": [{"partition": 0, "peers": [A]}]}
    assert apply(state, PlacementGet(model="none"))[1] is None
    _, listed = apply(state, PlacementList())
    assert listed["revision"] == 4 and [p["model"] for p in listed["placements"]] == ["cnn", "vad"]


def test_a_removed_member_drops_out_of_every_placement_and_the_revision_moves():
    # Rule (consensus.placement): a placement never names a peer the mesh has dropped.
    state, _ = run(MemberAdd(peer_id=A, raft_addr="10.0.0.1:4000"), place({0: [A, B], 1: [A]}),
                   place({0: [B]}, model="vad"), state=registered("cnn", "vad"))
    vad_before = state.placement["vad"]
    state, [r] = run(MemberRemove(peer_id=A), state=state)
    assert r["removed"] and dict(state.placement["cnn"].partitions) == {0: (B,), 1: ()}
    assert state.placement["cnn"].revision == state.revision  # a pending planner compare now fails
    assert state.placement["vad"] is vad_before  # untouched placements are shared, not rewritten


def test_a_revoked_peer_drops_out_of_every_placement():
    state, _ = run(PeerAdmit(peer_id=A), PeerAdmit(peer_id=B), place({0: [B, A]}), state=registered())
    state, [r] = run(PeerRevoke(peer_id=B), state=state)
    assert r["revoked"] and dict(state.placement["cnn"].partitions) == {0: (A,)}


def test_turning_the_list_on_drops_placed_peers_it_does_not_admit():
    state, _ = run(place({0: [A, C]}), state=registered())
    state, [r] = run(PeerAdmit(peer_id=A, members={B: "b"}), state=state)
    assert r["also_admitted"] == [B] and dict(state.placement["cnn"].partitions) == {0: (A,)}


def test_snapshot_round_trip_keeps_placement_and_refuses_one_for_an_unknown_model():
    state, _ = run(place({0: [A], 3: [B, C]}, request="q"), state=registered())
    assert decode_state(encode_state(state)) == state
    raw = msgpack.unpackb(encode_state(state))
    raw["placement"]["ghost"] = raw["placement"]["cnn"]
    with pytest.raises(RemoteProtocolError, match="not a registered model"):
        decode_state(msgpack.packb(raw))


def test_a_version_3_snapshot_reads_with_no_placement():
    raw = msgpack.unpackb(encode_state(registered()))
    del raw["placement"]
    raw["v"] = 3
    assert dict(decode_state(msgpack.packb(raw)).placement) == {}


@pytest.mark.parametrize("partitions", [
    [[0, [A]], [0, [B]]],          # a repeated index would silently collapse
    [[0, [A]], ["1", [B]]],
    {"0": [A]},
    [[0, [A, A]]],
])
def test_a_malformed_placement_from_a_peer_is_refused_on_decode(partitions):
    data = msgpack.packb({"v": 1, "t": "placement.set", "model": "cnn", "partitions": partitions,
                          "expected_revision": 0, "request": ""})
    with pytest.raises(RemoteProtocolError, match="consensus: "):
        decode_command(data)


def test_memory_log_commits_placement_through_the_codec():
    log = MemoryLog()
    log.submit(ModelRegister(record=record()), timeout=1)
    assert log.submit(place({0: [A]}), timeout=1)["swapped"]
    assert log.submit(PlacementGet(model="cnn"), timeout=1)["partitions"] == [{"partition": 0, "peers": [A]}]
