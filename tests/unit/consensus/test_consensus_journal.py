"""DurableJournal: pysyncobj's journal interface with checksums, fsync and atomic compaction."""

from __future__ import annotations

import os

import pytest

from consensus.journal import MAGIC, DurableJournal


def filled(path, n=5, term=1):
    journal = DurableJournal(path)
    for i in range(1, n + 1):
        journal.add(b"cmd-%d" % i, i, term)
    return journal


def test_entries_term_vote_and_commit_index_survive_a_reopen(tmp_path):
    path = tmp_path / "raft.wal"
    journal = filled(path)
    journal.setCurrentTerm(7, "127.0.0.1:4001")
    journal.setRaftCommitIndex(4)
    journal.sync()
    journal._destroy()

    again = DurableJournal(path)
    assert len(again) == 5 and again[0] == (b"cmd-1", 1, 1) and again[-1] == (b"cmd-5", 5, 1)
    assert again[1:3] == [(b"cmd-2", 2, 1), (b"cmd-3", 3, 1)]
    assert (again.getCurrentTerm(), again.getVotedForNodeId(), again.getRaftCommitIndex()) == (7, "127.0.0.1:4001", 4)
    again._destroy()


def test_a_fresh_journal_has_defaults(tmp_path):
    journal = DurableJournal(tmp_path / "raft.wal")
    assert len(journal) == 0
    assert (journal.getCurrentTerm(), journal.getVotedForNodeId(), journal.getRaftCommitIndex()) == (0, None, 1)
    journal._destroy()


def test_one_sync_covers_many_entries(tmp_path):
    journal = filled(tmp_path / "raft.wal", n=100)
    assert journal.syncs == 0
    journal.sync()
    journal.sync()  # nothing new: no second fsync
    assert journal.syncs == 1
    journal._destroy()


def test_a_torn_tail_is_cut_and_everything_before_it_kept(tmp_path):
    path = tmp_path / "raft.wal"
    filled(path)._destroy()
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # a crash in the middle of the last record
        fh.truncate(size - 3)
    journal = DurableJournal(path)
    assert [e[1] for e in journal] == [1, 2, 3, 4]
    journal.add(b"cmd-5b", 5, 2)  # appends after the cut, not after the garbage
    journal._destroy()
    assert [e[0] for e in DurableJournal(path)] == [b"cmd-1", b"cmd-2", b"cmd-3", b"cmd-4", b"cmd-5b"]


def test_a_flipped_byte_is_detected_by_the_checksum(tmp_path):
    path = tmp_path / "raft.wal"
    filled(path)._destroy()
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01  # inside the last command
    path.write_bytes(bytes(data))
    journal = DurableJournal(path)
    assert [e[1] for e in journal] == [1, 2, 3, 4]
    journal._destroy()


def test_delete_from_and_to(tmp_path):
    path = tmp_path / "raft.wal"
    journal = filled(path, n=6)
    journal.deleteEntriesFrom(4)  # a conflicting suffix
    assert [e[1] for e in journal] == [1, 2, 3, 4]
    journal.add(b"x", 5, 2)
    journal.deleteEntriesTo(2)  # compaction after a snapshot
    assert [e[1] for e in journal] == [3, 4, 5]
    journal.add(b"y", 6, 2)
    journal._destroy()
    assert [(e[1], e[2]) for e in DurableJournal(path)] == [(3, 1), (4, 1), (5, 2), (6, 2)]
    assert not (tmp_path / "raft.wal.tmp").exists()


def test_clear(tmp_path):
    path = tmp_path / "raft.wal"
    journal = filled(path)
    journal.clear()
    journal.add(b"a", 10, 3)
    journal._destroy()
    assert list(DurableJournal(path)) == [(b"a", 10, 3)]


def test_a_file_that_is_not_a_journal_is_refused(tmp_path):
    path = tmp_path / "raft.wal"
    path.write_bytes(b"something else entirely")
    with pytest.raises(OSError, match="not a meshnode Raft journal"):
        DurableJournal(path)


def test_a_damaged_meta_file_is_refused(tmp_path):
    path = tmp_path / "raft.wal"
    (tmp_path / "raft.wal.meta").write_bytes(b"\xc1\xc1")
    with pytest.raises(OSError, match="damaged"):
        DurableJournal(path)


def test_the_file_starts_with_the_magic_and_is_private(tmp_path):
    path = tmp_path / "raft.wal"
    DurableJournal(path)._destroy()
    assert path.read_bytes() == MAGIC
    assert os.stat(path).st_mode & 0o077 == 0


def test_the_snapshot_is_made_durable_before_entries_leave_the_journal(tmp_path, monkeypatch):
    snapshot = tmp_path / "raft.snapshot"
    snapshot.write_bytes(b"state up to entry 3")
    journal = DurableJournal(tmp_path / "raft.wal", snapshot=snapshot)
    for i in range(1, 6):
        journal.add(b"c", i, 1)
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    journal.deleteEntriesTo(3)
    assert synced[0] == str(snapshot) and synced[1] == str(tmp_path)  # before the journal is rewritten
    synced.clear()
    journal.clear()
    assert synced[:2] == [str(snapshot), str(tmp_path)]
    journal._destroy()
