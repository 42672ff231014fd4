"""The admitted-peer list in the pure state machine: PeerAdmit / PeerRevoke (consensus.machine)."""

from __future__ import annotations

import msgpack
import pytest

from consensus import (
    AdmittedPeer,
    ClusterState,
    MemberAdd,
    PeerAdmit,
    PeerRevoke,
    Refusal,
    apply,
    decode_command,
)
from crdt.errors import RemoteProtocolError

A = "12D3KooWGzBw2WRxj3tHLdT8wT5sVMwDkbeoX3Hx1Q6wD7HhXX9Z"
B = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5nw1dNBGZ2wEjS9BwHL"
C = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
D = "16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY"


def run(*commands, state: ClusterState | None = None):
    """Apply commands in order; returns the final state and every result."""
    state = ClusterState() if state is None else state
    results = []
    for command in commands:
        state, result = apply(state, command)
        results.append(result)
    return state, results


def forged(cls, **fields):
    """A command built around its constructor's checks (what a buggy peer version could log)."""
    obj = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


def test_an_empty_list_is_an_open_mesh():
    """Empty list: anyone with the mesh key may join."""
    state = ClusterState()
    assert not state.admission_enforced
    assert state.is_admitted(A) and state.is_admitted("anything at all")


def test_the_first_admit_turns_the_list_on_and_brings_the_running_mesh_along():
    """Turning the list on must not lock the running members out."""
    state, [result] = run(PeerAdmit(peer_id=C, name="new-cam", members={A: "n0", B: "n1"}))
    assert state.admission_enforced
    assert result == {
        "peer_id": C, "name": "new-cam", "revoked": False, "changed": True,
        "also_admitted": sorted([A, B]), "revision": 1,
    }
    assert state.admitted[A] == AdmittedPeer("n0", False, 1)
    assert state.is_admitted(A) and state.is_admitted(B) and state.is_admitted(C)
    assert not state.is_admitted(D)


def test_the_first_admit_also_keeps_every_recorded_voter():
    """A voter the submitter did not see (or a command built without members) still stays in."""
    state, results = run(MemberAdd(peer_id=A, raft_addr="10.0.0.1:4000"), PeerAdmit(peer_id=C))
    assert results[1]["also_admitted"] == [A]
    assert state.is_admitted(A) and state.admitted[A].name == ""


def test_voters_recorded_under_non_peer_ids_are_not_copied_onto_the_list():
    state, [_, result] = run(MemberAdd(peer_id="p1", raft_addr="10.0.0.1:4000"), PeerAdmit(peer_id=C))
    assert result["also_admitted"] == []
    assert set(state.admitted) == {C}


def test_members_are_ignored_once_the_list_is_on():
    """Later commands' members never admit anyone, or a revoked peer could ride back in."""
    state, results = run(
        PeerAdmit(peer_id=A, members={B: "n1"}),
        PeerRevoke(peer_id=B),
        PeerAdmit(peer_id=C, members={B: "n1", D: "n3"}),
    )
    assert results[2]["also_admitted"] == []
    assert state.admitted[B].revoked and not state.is_admitted(B)
    assert D not in state.admitted


def test_revoke_keeps_the_peer_listed_as_revoked():
    state, results = run(PeerAdmit(peer_id=A, members={B: "n1"}), PeerRevoke(peer_id=B))
    assert results[1] == {
        "peer_id": B, "name": "n1", "revoked": True, "changed": True, "also_admitted": [], "revision": 2,
    }
    assert state.admitted[B] == AdmittedPeer("n1", True, 2)
    assert not state.is_admitted(B)


def test_a_revoked_peer_comes_back_only_through_an_explicit_admit():
    state, results = run(
        PeerAdmit(peer_id=A, members={B: "n1"}), PeerRevoke(peer_id=B), PeerAdmit(peer_id=B)
    )
    assert results[2]["changed"] is True
    assert state.admitted[B] == AdmittedPeer("n1", False, 3)  # the name is kept when none is given
    assert state.is_admitted(B)


def test_revoking_a_peer_never_admitted_bans_it_in_advance():
    state, [_, result] = run(PeerAdmit(peer_id=A), PeerRevoke(peer_id=D))
    assert result["changed"] is True
    assert state.admitted[D].revoked and not state.is_admitted(D)


def test_revoking_on_an_open_mesh_turns_the_list_on_with_everyone_else():
    state, [result] = run(PeerRevoke(peer_id=B, members={A: "n0", B: "n1", C: "n2"}))
    assert result["also_admitted"] == sorted([A, C])
    assert state.is_admitted(A) and state.is_admitted(C) and not state.is_admitted(B)


@pytest.mark.parametrize(
    "commands",
    [
        [PeerRevoke(peer_id=A)],
        [PeerRevoke(peer_id=A, members={A: "only-me"})],
        [PeerAdmit(peer_id=A), PeerRevoke(peer_id=A)],
        [PeerAdmit(peer_id=A, members={B: ""}), PeerRevoke(peer_id=B), PeerRevoke(peer_id=A)],
    ],
    ids=["open-mesh-nobody-else", "open-mesh-only-itself", "the-only-admitted", "the-last-admitted"],
)
def test_a_revoke_that_would_leave_nobody_admitted_is_refused(commands):
    """Every node would refuse every other: refuse the command instead."""
    *before, last = commands
    state, _ = run(*before)
    after, result = apply(state, last)
    assert isinstance(result, Refusal)
    assert result.reason.startswith("consensus: cannot revoke") and "admit another peer first" in result.reason
    assert after is state


def test_admit_renames_and_repeats_are_accepted_writes():
    state, results = run(PeerAdmit(peer_id=A, name="old"), PeerAdmit(peer_id=A, name="new"), PeerAdmit(peer_id=A))
    assert [r["changed"] for r in results] == [True, True, False]
    assert state.admitted[A] == AdmittedPeer("new", False, 3)
    assert state.revision == 3


def test_applying_the_same_commands_gives_equal_states():
    """Every replica applies the same log: the result must not depend on dict order."""
    one, _ = run(PeerAdmit(peer_id=A, members={B: "1", C: "2", D: "3"}), PeerRevoke(peer_id=C))
    two, _ = run(PeerAdmit(peer_id=A, members={D: "3", C: "2", B: "1"}), PeerRevoke(peer_id=C))
    assert one == two
    assert list(one.admitted) == list(two.admitted)


@pytest.mark.parametrize(
    "command",
    [
        forged(PeerAdmit, peer_id="not-a-peer-id", name="", members={}),
        forged(PeerAdmit, peer_id=A, name="", members=[B]),
        forged(PeerAdmit, peer_id=A, name="", members={"bad id": ""}),
        forged(PeerAdmit, peer_id=A, name=7, members={}),
        forged(PeerRevoke, peer_id=None, members={}),
    ],
    ids=["bad-peer-id", "members-list", "member-bad-id", "name-int", "no-peer-id"],
)
def test_forged_admission_commands_are_refused_not_raised(command):
    """A raising apply would wedge the replicated log on every replica."""
    state = ClusterState()
    after, result = apply(state, command)
    assert isinstance(result, Refusal) and result.reason.startswith("consensus: ")
    assert after is state


def test_an_unknown_command_version_is_refused_on_decode():
    data = msgpack.packb({"v": 2, "t": "peer.revoke", "peer_id": A, "members": {}})
    with pytest.raises(RemoteProtocolError, match="^consensus: command version 2 is not supported"):
        decode_command(data)


def test_a_malformed_peer_id_is_blamed_on_the_sender():
    data = msgpack.packb({"v": 1, "t": "peer.admit", "peer_id": "12D3KooW:nope", "name": "", "members": {}})
    with pytest.raises(RemoteProtocolError, match="^consensus: malformed peer.admit: peer id must be a base58"):
        decode_command(data)
