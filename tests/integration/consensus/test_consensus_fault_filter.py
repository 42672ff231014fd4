"""The test-only fault filter on pysyncobj's transport: a voter it names is cut off both ways, and comes back."""

from __future__ import annotations

import pytest

from consensus import ConfigSet

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60)]


def test_a_cut_off_leader_is_replaced_misses_writes_and_catches_up_when_the_cut_ends(nodes):
    isolated: set[str] = set()  # every node cuts these voters (the isolated one is refused both ways)
    logs = nodes.cluster(3, cut_off=lambda addr: addr in isolated)
    leader = next(log for log in logs if log.status().role == "leader")
    rest = [log for log in logs if log is not leader]
    isolated.add(leader.status().self_addr)

    def new_leader():
        views = {log.status().leader for log in rest}
        return len(views) == 1 and None not in views and leader.status().self_addr not in views

    nodes.wait_for(new_leader, 15, "the two connected voters to elect a leader without the cut-off one")
    rest[0].submit(ConfigSet(key="while-cut", value=1), timeout=5)
    nodes.wait_for(lambda: all("while-cut" in log.state().config for log in rest), 5, "both to apply it")
    assert "while-cut" not in leader.state().config  # nothing reached it

    isolated.clear()
    nodes.wait_for(lambda: "while-cut" in leader.state().config, 15, "the healed voter to catch up")
    assert leader.state() == rest[0].state()


def test_without_a_filter_nothing_is_cut(nodes):
    logs = nodes.cluster(3)
    logs[0].submit(ConfigSet(key="k", value=1), timeout=5)
    nodes.wait_for(lambda: all("k" in log.state().config for log in logs), 5, "every node to apply it")
    assert all(log.messages_sent() > 0 for log in logs)  # appends and heartbeats went out, and were counted
