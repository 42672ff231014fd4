"""A follower that loads its leader's snapshot keeps talking to that leader (real pysyncobj cluster).

A leader passes on the snapshot it was itself given, whose voter set can predate
the leader. pysyncobj took that set as is and hung up on the leader.
"""

from __future__ import annotations

import pytest

from consensus import ConfigSet

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(90)]


def test_a_node_added_by_a_leader_younger_than_its_snapshot_joins(nodes):
    a_addr, b_addr, c_addr = (nodes.free_addr() for _ in range(3))
    a = nodes.start(a_addr, [], "a", compact_after=50)  # compacts soon: its snapshot names only itself
    nodes.wait_for(lambda: a.status().role == "leader", 5, "a to lead alone")
    for i in range(200):
        a.submit(ConfigSet(key=f"k{i}", value=i), timeout=5)
    nodes.wait_for(lambda: (a._data_dir / "raft.snapshot").exists(), 20, "a to write a snapshot")

    b = nodes.start(b_addr, [a_addr], "b", compact_after=1_000_000)  # keeps the snapshot a sends it
    a.add_voter(b_addr, timeout=10)
    nodes.wait_for(lambda: b.status().last_applied >= a.status().commit_index, 10, "b to catch up from a's snapshot")
    assert b.transfer_leadership(1.0) is None and a.transfer_leadership(5.0) == b_addr
    nodes.wait_for(lambda: b.status().role == "leader", 5, "b to lead")
    b.remove_voter(a_addr, timeout=10)  # b alone now; its snapshot file is still a's, naming only a
    a.close()
    nodes.wait_for(lambda: b.status().role == "leader" and b.status().voters == [b_addr], 10, "b to lead alone")

    c = nodes.start(c_addr, [b_addr], "c")
    b.add_voter(c_addr, timeout=15)  # never committed while c hung up on b

    assert sorted(c.status().voters) == sorted([b_addr, c_addr])
    assert b.submit(ConfigSet(key="after", value=1), timeout=5)["value"] == 1
    nodes.wait_for(lambda: "after" in c.state().config and "k199" in c.state().config, 10, "c to hold every write")
