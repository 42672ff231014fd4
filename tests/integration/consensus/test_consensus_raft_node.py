"""One real RaftLog: its files, its port, its thread (the pysyncobj gotchas, each pinned)."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import threading
import time
import zlib

import pytest

from consensus import ConfigGet, ConfigSet, ConsensusError, MemberAdd
from crdt.errors import LocalProtocolError

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60)]


def leader(nodes, name="n1", addr=None, **kwargs):
    log = nodes.start(addr or nodes.free_addr(), [], name, **kwargs)
    nodes.wait_for(lambda: log.status().role == "leader", 5, "the single node to lead")
    return log


class _MakeDir:
    """A pickle that runs os.mkdir when unpickled: what an attacker would send."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_stranger_cannot_run_a_pickle_through_the_raft_port(nodes, tmp_path):
    """DEPENDENCY-NOTES: with no password pysyncobj unpickles whatever reaches its port.

    The frame below is pysyncobj's own (4-byte length + zlib(pickle)); without
    a password it makes the node create the directory (checked by hand when
    this test was written).
    """
    log = leader(nodes)
    marker = tmp_path / "pwned"
    host, port = log.status().self_addr.rsplit(":", 1)
    data = zlib.compress(pickle.dumps(_MakeDir(str(marker)), 2), 3)
    with socket.create_connection((host, int(port))) as s:
        s.sendall(struct.pack("i", len(data)) + data)
        s.settimeout(2)
        try:
            assert s.recv(1024) == b""  # the node hangs up on a frame it cannot decrypt
        except (ConnectionResetError, socket.timeout):
            pass
    assert not marker.exists()
    assert log.submit(ConfigGet(key="k"), timeout=5) is None  # and keeps working


def test_it_keeps_running_after_the_thread_that_built_it_exits(nodes):
    """pysyncobj stops ticking when its building thread exits; trio.to_thread workers do exit."""
    addr = nodes.free_addr()
    built = []
    worker = threading.Thread(target=lambda: built.append(nodes.start(addr, [], "n1")))
    worker.start()
    worker.join()
    log = built[0]
    # electing itself takes 0.3-0.6 s: many ticks after the builder exited
    nodes.wait_for(lambda: log.status().role == "leader", 5, "the node to elect itself")
    assert log._node.tick_thread_alive()
    assert log.submit(ConfigSet(key="k", value=1), timeout=5)["value"] == 1


def test_a_compacted_log_restarts_from_its_snapshot(nodes):
    addr = nodes.free_addr()
    log = leader(nodes, addr=addr)
    for i in range(20):
        log.submit(ConfigSet(key=f"k{i}", value=i), timeout=5)
    log._node.forceLogCompaction()  # the adapter's own pysyncobj object: no public way to force it
    nodes.wait_for(lambda: log._node._getRaftLogSize() <= 3, 5, "the journal to be compacted")
    log.submit(ConfigSet(key="after", value=True), timeout=5)
    state, term = log.state(), log.status().term
    log.close()

    again = nodes.start(addr, [], "n1")
    assert again.state() == state  # the first 20 writes can only come from the snapshot
    assert again.status().term >= term


def test_a_corrupt_snapshot_is_reported_not_used(nodes):
    addr = nodes.free_addr()
    log = leader(nodes, addr=addr)
    log.submit(ConfigSet(key="k", value=1), timeout=5)
    log._node.forceLogCompaction()
    nodes.wait_for(lambda: (nodes.root / "n1" / "raft.snapshot").exists(), 5, "a snapshot file")
    log.close()
    (nodes.root / "n1" / "raft.snapshot").write_bytes(b"not a snapshot")
    with pytest.raises(ConsensusError, match="snapshot .* could not be read"):
        nodes.start(addr, [], "n1")


def test_a_taken_port_fails_the_constructor(nodes):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ConsensusError, match="cannot listen for Raft"):
            nodes.start(addr, [], "n1")
        assert time.monotonic() - started < 3


def test_on_applied_runs_for_each_write(nodes):
    seen = []
    log = leader(nodes, on_applied=seen.append)
    log.submit(ConfigSet(key="k", value=1), timeout=5)
    log.submit(ConfigGet(key="k"), timeout=5)
    log.submit(MemberAdd(peer_id="p", raft_addr=log.status().self_addr), timeout=5)
    assert [s.revision for s in seen] == [1, 2]


def test_close_is_idempotent_and_final(nodes):
    log = leader(nodes)
    log.submit(ConfigSet(key="k", value=1), timeout=5)
    log.close()
    log.close()
    with pytest.raises(LocalProtocolError, match="closed"):
        log.submit(ConfigGet(key="k"), timeout=1)
    assert log.state().config["k"].value == 1
    assert not log._node.tick_thread_alive()
