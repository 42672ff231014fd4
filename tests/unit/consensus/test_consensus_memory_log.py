"""MemoryLog: the deterministic twin of RaftLog behind the Log port (consensus.memory)."""

from __future__ import annotations

import pytest

from consensus import (
    ClusterState,
    ConfigGet,
    ConfigSet,
    ConsensusError,
    ConsensusUnavailable,
    Log,
    MemberAdd,
    MemoryLog,
    ModelRecord,
    ModelRegister,
)
from crdt.errors import LocalProtocolError


def record(sha: str) -> ModelRecord:
    return ModelRecord(name="m", sha256=sha * 64, size=1, inputs=[], outputs=[], origin="p")


def test_memory_log_satisfies_the_log_protocol_by_shape():
    for name in ("submit", "state", "status", "add_voter", "remove_voter", "close"):
        assert callable(getattr(MemoryLog, name)), name
        assert hasattr(Log, name)


def test_submit_commits_applies_and_returns_the_result():
    log = MemoryLog("10.0.0.1:4000")
    assert log.submit(ConfigSet(key="a", value=1), timeout=1) == {"key": "a", "value": 1, "revision": 1}
    assert log.submit(ConfigGet(key="a"), timeout=1) == {"value": 1, "revision": 1}
    assert log.state().config["a"].value == 1
    assert log.committed == [ConfigSet(key="a", value=1), ConfigGet(key="a")]
    status = log.status()
    assert (status.role, status.leader, status.self_addr) == ("leader", "10.0.0.1:4000", "10.0.0.1:4000")
    assert status.commit_index == status.last_applied == 3  # no-op + two commands


def test_a_refused_command_raises_consensus_error_and_changes_nothing():
    log = MemoryLog()
    log.submit(ModelRegister(record=record("a")), timeout=1)
    with pytest.raises(ConsensusError, match="already registered") as info:
        log.submit(ModelRegister(record=record("b")), timeout=1)
    assert not isinstance(info.value, ConsensusUnavailable)
    assert log.state().models["m"].sha256 == "a" * 64
    assert log.state().revision == 1


def test_without_quorum_writes_fail_and_nothing_applies():
    log = MemoryLog()
    log.submit(ConfigSet(key="a", value=1), timeout=1)
    log.set_quorum(False)
    with pytest.raises(ConsensusUnavailable, match="^consensus: no majority"):
        log.submit(ConfigSet(key="a", value=2), timeout=1)
    with pytest.raises(ConsensusUnavailable):
        log.add_voter("10.0.0.9:1", timeout=1)
    assert log.state().config["a"].value == 1
    assert log.status().leader is None and log.status().role == "follower"


def test_regaining_quorum_starts_a_new_term():
    log = MemoryLog()
    term = log.status().term
    log.set_quorum(False)
    log.set_quorum(True)
    assert log.status().term == term + 1
    assert log.submit(ConfigSet(key="a", value=2), timeout=1)["revision"] == 1


def test_voters_change_through_add_and_remove():
    log = MemoryLog("10.0.0.1:1")
    log.add_voter("10.0.0.2:1", timeout=1)
    log.add_voter("10.0.0.2:1", timeout=1)  # idempotent
    log.add_voter("10.0.0.3:1", timeout=0)
    assert log.status().voters == ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]
    log.remove_voter("10.0.0.2:1", timeout=1)
    assert log.status().voters == ["10.0.0.1:1", "10.0.0.3:1"]
    with pytest.raises(LocalProtocolError, match="cannot remove itself"):
        log.remove_voter("10.0.0.1:1", timeout=1)


def test_on_applied_sees_each_new_state_but_not_reads_or_refusals():
    seen: list[ClusterState] = []
    log = MemoryLog(on_applied=seen.append)
    log.submit(ConfigSet(key="a", value=1), timeout=1)
    log.submit(ConfigGet(key="a"), timeout=1)
    log.submit(MemberAdd(peer_id="p", raft_addr="h:1"), timeout=1)
    assert [s.revision for s in seen] == [1, 2]
    assert seen[-1] is log.state()


def test_it_goes_through_the_real_codec():
    log = MemoryLog()
    with pytest.raises(LocalProtocolError):
        log.submit("config.set", timeout=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), "1"])
def test_submit_needs_a_positive_finite_timeout(timeout):
    with pytest.raises(LocalProtocolError, match="timeout"):
        MemoryLog().submit(ConfigGet(key="a"), timeout=timeout)


def test_a_closed_log_refuses_commands_but_keeps_its_state():
    log = MemoryLog()
    log.submit(ConfigSet(key="a", value=1), timeout=1)
    log.close()
    with pytest.raises(LocalProtocolError, match="closed"):
        log.submit(ConfigGet(key="a"), timeout=1)
    assert log.state().config["a"].value == 1
