"""``RaftKeys``: pysyncobj's encryptor with a key set that can change under open connections."""

from __future__ import annotations

import pytest
from cryptography.fernet import InvalidToken
from pysyncobj.encryptor import getEncryptor

from consensus.raft import RaftKeys
from crdt.errors import LocalProtocolError

OLD, NEW = "old-secret", "new-secret"


def test_a_single_key_reads_and_writes_like_pysyncobj_with_that_password():
    keys = RaftKeys(OLD)
    theirs = getEncryptor(OLD)  # what a SyncObj with password=OLD uses
    frame = keys.encrypt_at_time(b"append_entries", 1234)
    assert theirs.extract_timestamp(frame) == 1234 and theirs.decrypt(frame) == b"append_entries"
    reply = theirs.encrypt_at_time(b"ok", 1235)
    assert keys.extract_timestamp(reply) == 1235 and keys.decrypt(reply) == b"ok"
    assert keys.keys() == (OLD, (OLD,))


def test_the_three_phases_never_leave_two_holders_unable_to_read_each_other():
    a, b = RaftKeys(OLD), RaftKeys(OLD)
    a.set(OLD, [NEW])  # accept: still writes under OLD
    b.set(OLD, [NEW])
    assert getEncryptor(OLD).decrypt(a.encrypt_at_time(b"x", 1)) == b"x"
    a.set(NEW, [OLD])  # use, on a first: b (not yet there) reads it, and a reads b
    assert b.decrypt(a.encrypt_at_time(b"x", 2)) == b"x" and a.decrypt(b.encrypt_at_time(b"y", 3)) == b"y"
    b.set(NEW, [OLD])
    a.set(NEW)  # drop
    b.set(NEW)
    assert a.keys() == (NEW, (NEW,))
    assert b.decrypt(a.encrypt_at_time(b"x", 4)) == b"x"


def test_a_frame_under_a_dropped_key_is_refused_as_pysyncobj_expects():
    keys = RaftKeys(OLD)
    keys.set(NEW)
    stale = getEncryptor(OLD).encrypt_at_time(b"x", 5)
    with pytest.raises(InvalidToken):
        keys.extract_timestamp(stale)  # tcp_connection.py reads the timestamp first: it must verify
    with pytest.raises(InvalidToken):
        keys.decrypt(stale)


def test_an_empty_key_is_refused():
    with pytest.raises(LocalProtocolError, match="^consensus: "):
        RaftKeys("")
    keys = RaftKeys(OLD)
    with pytest.raises(LocalProtocolError, match="^consensus: "):
        keys.set(OLD, [""])
    assert keys.keys() == (OLD, (OLD,))
