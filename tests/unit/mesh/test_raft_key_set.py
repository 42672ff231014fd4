"""``KeySet``: the versioned Raft key set and its three phases (mesh/raft_keys.py)."""

from __future__ import annotations

import stat

import pytest

from crdt.errors import LocalProtocolError, RemoteProtocolError
from mesh.raft_keys import KeySet, load, rotation_due, save

OLD, NEW = "o" * 64, "n" * 64


def test_a_rotation_is_accept_then_use_then_done_each_newer_than_the_last():
    start = KeySet.initial(OLD)
    accept = start.begin(NEW, covers=7)
    use = accept.advance()
    done = use.advance()
    assert (accept.current, accept.accepted) == (OLD, (OLD, NEW))  # nobody writes under NEW yet
    assert (use.current, use.accepted) == (NEW, (NEW, OLD))  # a voter still on accept reads this
    assert (done.current, done.accepted) == (NEW, (NEW,))  # the old key is dead
    assert start.version < accept.version < use.version < done.version
    assert done.covers == 7 and done.key_id != start.key_id and OLD not in start.key_id
    with pytest.raises(LocalProtocolError, match="^raft keys: "):
        accept.begin(NEW, covers=8)  # one rotation at a time
    with pytest.raises(LocalProtocolError, match="^raft keys: "):
        done.advance()


def test_a_malformed_set_from_a_peer_is_a_remote_error():
    good = KeySet.initial(OLD).begin(NEW, covers=1).to_wire()
    assert KeySet.from_wire(good).to_wire() == good
    for bad in (None, {**good, "phase": "later"}, {**good, "accepted": [NEW, OLD]}, {**good, "accepted": [OLD]},
                {**good, "current": "short"}, {**good, "epoch": -1}, {**good, "extra": 1}):
        with pytest.raises(RemoteProtocolError, match="^mesh: "):
            KeySet.from_wire(bad)


def test_the_set_is_saved_owner_only_and_read_back(tmp_path):
    assert load(tmp_path, OLD) == KeySet.initial(OLD)  # never rotated: the mesh-key password
    keys = KeySet.initial(OLD).begin(NEW, covers=3).advance()
    save(tmp_path, keys)
    assert load(tmp_path, OLD) == keys
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600


def test_the_leader_rotates_after_a_new_revoke_once_no_refused_peer_holds_a_seat():
    done = KeySet.initial(OLD).begin(NEW, covers=5).advance().advance()
    assert not rotation_due(done, revoked_revision=5, seated_refused=False)  # this revoke was covered
    assert not rotation_due(done, revoked_revision=9, seated_refused=True)  # it still votes: remove it first
    assert rotation_due(done, revoked_revision=9, seated_refused=False)
    assert rotation_due(done.begin(OLD, covers=9), revoked_revision=9, seated_refused=True)  # finish what began
