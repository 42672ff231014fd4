"""Raft durability rules on real RaftLogs: nothing leaves a node before its journal is synced."""

from __future__ import annotations

import threading

from pysyncobj.transport import TCPTransport

from consensus import ConfigSet
from consensus.journal import DurableJournal


def test_no_message_leaves_a_node_while_its_journal_has_unsynced_entries(nodes, monkeypatch):
    """A follower's ack and the leader's own copy count towards a majority only once on disk (Raft §5.3)."""
    violations: list[str] = []
    sends = [0]
    original = TCPTransport.send

    def checked_send(self, node, message):
        journal = getattr(self._syncObj, "_SyncObj__raftLog", None)
        if isinstance(journal, DurableJournal):
            sends[0] += 1
            if journal._dirty:
                violations.append(f"{type(message).__name__} sent with unsynced journal entries")
        return original(self, node, message)

    monkeypatch.setattr(TCPTransport, "send", checked_send)
    logs = nodes.cluster(3)
    leader = next(log for log in logs if log.status().role == "leader")

    def writer(i: int) -> None:
        for n in range(100):
            leader.submit(ConfigSet(key=f"w{i}-{n}", value=n), timeout=5)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sends[0] > 400 and violations == []
    # Group commit: under concurrent writes the leader needs fewer fsyncs than entries.
    assert logs[0].journal_syncs() > 0
    assert sum(log.journal_syncs() for log in logs) < 3 * 400 * 2


def test_a_lone_voter_syncs_before_it_acknowledges(nodes, monkeypatch):
    """With no other voter nothing is sent, so submit itself must sync before returning."""
    log = nodes.start(nodes.free_addr(), [], "solo")
    nodes.wait_for(lambda: log.status().role == "leader", 5, "the lone voter to lead")
    journal = log._node._SyncObj__raftLog
    for n in range(20):
        log.submit(ConfigSet(key=f"k{n}", value=n), timeout=5)
        assert not journal._dirty


def test_a_journal_pysyncobj_wrote_is_migrated_once(tmp_path):
    from pysyncobj.journal import FileJournal

    from consensus.raft import JOURNAL_FILE, OLD_JOURNAL_FILE, _create_journal

    old = FileJournal(str(tmp_path / OLD_JOURNAL_FILE))
    for i in range(1, 6):
        old.add(b"entry-%d" % i, i, 2)
    old.setCurrentTerm(3, "127.0.0.1:9")
    old.setRaftCommitIndex(4)
    old.onOneSecondTimer()
    old._destroy()

    journal = _create_journal(str(tmp_path / JOURNAL_FILE))
    assert isinstance(journal, DurableJournal)
    assert [journal[i] for i in range(len(journal))] == [(b"entry-%d" % i, i, 2) for i in range(1, 6)]
    assert (journal.getCurrentTerm(), journal.getVotedForNodeId(), journal.getRaftCommitIndex()) == (3, "127.0.0.1:9", 4)
    journal._destroy()
    assert not (tmp_path / OLD_JOURNAL_FILE).exists() and (tmp_path / (OLD_JOURNAL_FILE + ".migrated")).exists()
    again = _create_journal(str(tmp_path / JOURNAL_FILE))  # nothing left to migrate: opens as is
    assert len(again) == 5
    again._destroy()


def test_snapshots_keep_the_journal_bounded_and_a_restart_keeps_everything(nodes):
    logs = nodes.cluster(3, compact_after=100)
    leader = next(log for log in logs if log.status().role == "leader")
    for n in range(600):
        leader.submit(ConfigSet(key=f"k{n % 50}", value=n), timeout=5)
    for log in logs:
        nodes.wait_for(lambda log=log: log.journal_length() <= 200, 10, f"compaction to shorten {log}'s journal")
    assert all((nodes.root / name / "raft.snapshot").exists() for name in ("n1", "n2", "n3"))
    before = leader.state()
    addrs = [log.status().self_addr for log in logs]
    for log in logs:
        log.close()
    again = [nodes.start(addr, [a for a in addrs if a != addr], f"n{i}", compact_after=100)
             for i, addr in enumerate(addrs, start=1)]
    nodes.wait_for(lambda: any(log.status().role == "leader" for log in again), 10, "a leader after the restart")
    for log in again:
        nodes.wait_for(lambda log=log: log.state().revision == before.revision, 10, f"{log} to replay everything")
        assert log.state().config == before.config


def test_utility_commands_and_read_only_observers_are_refused_even_with_the_password(nodes):
    """Holding the password (a revoked member may) must not allow syncobj_admin's add/remove/status."""
    import pytest
    from pysyncobj.utility import TcpUtility, UtilityException

    logs = nodes.cluster(2)
    voters = logs[0].status().voters
    for command in (["status"], ["add", nodes.free_addr()], ["remove", voters[1]]):
        with pytest.raises(UtilityException):
            TcpUtility(nodes.password, timeout=2).executeCommand(voters[0], command)
    assert logs[0].status().voters == voters
    leader = next(log for log in logs if log.status().role == "leader")
    leader.submit(ConfigSet(key="still", value="fine"), timeout=5)
