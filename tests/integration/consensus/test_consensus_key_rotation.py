"""Rotating the Raft key on real RaftLogs: three phases, no write lost, the old key shut out.

Issue 4: "only admitted mesh members can speak Raft" — a revoked peer still
knows the mesh-derived password, so the key changes, in three phases (accept,
use, drop) so that no two nodes are ever unable to read each other.
"""

from __future__ import annotations

import threading

import pytest

from consensus import ConfigGet, ConfigSet, ConsensusError
from consensus.raft import raft_key_works

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60)]

NEW = "rotated-raft-key-0123456789abcdef"


def test_a_cluster_rotates_its_key_in_three_phases_without_losing_a_write(nodes):
    logs = nodes.cluster(3)
    addrs = [log.status().self_addr for log in logs]
    assert all(raft_key_works(addr, nodes.password) for addr in addrs)  # the probe sees a working key
    assert not any(raft_key_works(addr, NEW) for addr in addrs)

    acked: list[int] = []
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            try:
                logs[i % 3].submit(ConfigSet(key=f"w{i}", value=i), timeout=5)
            except ConsensusError as exc:
                pytest.fail(f"a write failed during the rotation: {exc}")
            acked.append(i)
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        nodes.wait_for(lambda: len(acked) >= 20, 10, "writes before the rotation")
        for phase in ((nodes.password, [NEW]), (NEW, [nodes.password]), (NEW, [])):  # accept, use, drop
            seen = len(acked)
            for log in logs:
                log.set_raft_keys(*phase)
            nodes.wait_for(lambda seen=seen: len(acked) >= seen + 20, 10, f"writes after phase {phase[0][:8]}")
    finally:
        stop.set()
        writer.join()
    for log in logs:
        assert log.raft_keys() == (NEW, (NEW,))
        got = log.submit(ConfigGet(key=f"w{acked[-1]}"), timeout=5)
        assert got["value"] == acked[-1]
    state = logs[0].state()
    assert all(state.config[f"w{i}"].value == i for i in acked)  # every acknowledged write survived

    # The old key no longer opens a connection to any voter; the new one does.
    for addr in addrs:
        assert not raft_key_works(addr, nodes.password), addr
        assert raft_key_works(addr, NEW), addr


def test_a_node_left_on_the_old_key_is_shut_out_until_it_learns_the_new_one(nodes):
    logs = nodes.cluster(3)
    behind = next(log for log in logs if log.status().role != "leader")
    others = [log for log in logs if log is not behind]
    for phase in ((nodes.password, [NEW]), (NEW, [nodes.password]), (NEW, [])):
        for log in others:
            log.set_raft_keys(*phase)
    others[0].submit(ConfigSet(key="while.behind", value=1), timeout=5)  # the two are a majority
    # Nothing the others send opens under its key, and nothing it sends opens under theirs.
    assert "while.behind" not in behind.state().config
    assert not raft_key_works(behind.status().self_addr, NEW)
    assert not any(raft_key_works(log.status().self_addr, nodes.password) for log in others)
    behind.set_raft_keys(NEW)  # what the mesh hands it (mesh/raft_keys.py)
    nodes.wait_for(lambda: "while.behind" in behind.state().config, 10, "the caught-up node to replicate")
