"""The mesh side of the admitted-peer list: peer id parsing, the forwarded list, who is refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from consensus import AdmittedPeer
from crdt.errors import MeshError, RemoteProtocolError
from mesh.admission import NOT_LISTED, REVOKED, Admission, _read_list, check_peer_id

ME = "12D3KooWGzBw2WRxj3tHLdT8wT5sVMwDkbeoX3Hx1Q6wD7HhXX9Z"
FRIEND = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
OUTSIDER = "16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY"
BANNED = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5nw1dNBGZ2wEjS9BwHL"


@pytest.mark.parametrize("peer_id", [ME, FRIEND, OUTSIDER])
def test_real_peer_ids_parse(peer_id):
    assert check_peer_id(peer_id) == peer_id


@pytest.mark.parametrize(
    "bad",
    ["", "not-a-peer", "0OIl", "abcdefghijkmnopqrstuvwxyzabcdefghijkmnopqrstuvwxyz", ME[:-4], 42],
    ids=["empty", "dashes", "non-base58", "base58-not-a-multihash", "truncated", "int"],
)
def test_malformed_peer_ids_fail_with_one_mesh_line(bad):
    with pytest.raises(MeshError, match="^mesh: .*peer id"):
        check_peer_id(bad)


def admission_with(entries: dict[str, AdmittedPeer]) -> Admission:
    adm = Admission(SimpleNamespace(peer_id=ME))  # reason() needs only our own id
    adm._list = entries
    return adm


def test_an_open_mesh_refuses_nobody():
    adm = admission_with({})
    assert not adm.enforced and adm.admits(OUTSIDER) and adm.reason(BANNED) is None


def test_an_enforced_list_refuses_the_unlisted_and_the_revoked():
    adm = admission_with({FRIEND: AdmittedPeer("f", False, 1), BANNED: AdmittedPeer("b", True, 2)})
    assert adm.enforced
    assert adm.admits(FRIEND)
    assert adm.reason(OUTSIDER) == NOT_LISTED
    assert adm.reason(BANNED) == REVOKED
    assert adm.admits(ME)  # a node never refuses itself (it learns its revocation otherwise)
    with pytest.raises(MeshError, match="cannot join Raft"):
        adm.check_raft_member(BANNED)
    adm.check_raft_member(FRIEND)


def test_a_voters_list_is_read_strictly():
    good = {FRIEND: {"name": "f", "revoked": False, "revision": 3}}
    assert _read_list(good) == {FRIEND: AdmittedPeer("f", False, 3)}
    for bad in (
        [FRIEND],
        {FRIEND: {"name": "f", "revoked": False}},
        {FRIEND: {"name": "f", "revoked": "no", "revision": 3}},
        {"nope": {"name": "", "revoked": False, "revision": 1}},
    ):
        with pytest.raises(MeshError):
            _read_list(bad)
    with pytest.raises(RemoteProtocolError):
        _read_list("not a map")


def refusals_node(voter_peers: list[str]):
    """A voter whose Raft knows ``voter_peers`` (plus itself) and nothing of its own revocation."""
    addrs = {p: f"127.0.0.1:{7000 + i}" for i, p in enumerate([ME, *voter_peers])}
    raft = SimpleNamespace(status=lambda: SimpleNamespace(voters=sorted(addrs.values())),
                           state=lambda: SimpleNamespace(members=addrs))
    node = SimpleNamespace(peer_id=ME, raft=raft, peers=SimpleNamespace(records=lambda: [], get=lambda _p: None))
    return Admission(node)


@pytest.mark.parametrize(
    ("refusers", "reason", "stops"),
    [
        ([FRIEND], REVOKED, False),  # one of three voters: one member cannot make a voter stop
        ([FRIEND, BANNED], REVOKED, True),  # both other voters: a majority of three
        ([FRIEND, BANNED], NOT_LISTED, True),
        ([FRIEND, OUTSIDER], REVOKED, False),  # OUTSIDER does not vote: only one voter refuses
        ([FRIEND, BANNED], "cut off for 60 s: it flooded the mesh", False),  # not about admission
    ],
)
def test_a_voter_stops_only_when_a_majority_of_voters_refuse_it(refusers, reason, stops):
    adm = refusals_node([FRIEND, BANNED])
    for peer in refusers:
        trio.run(adm.on_refused, peer, {"reason": reason})
    assert adm.notice  # every refusal is reported in status
    assert adm._refused_by_voters() is stops
