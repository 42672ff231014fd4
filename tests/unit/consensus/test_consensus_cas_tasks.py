"""Compare-and-set, delete, list and task leases in the pure state machine (consensus.machine, consensus.leases)."""

from __future__ import annotations

import msgpack
import pytest

from consensus import (
    ClusterState,
    ConfigCas,
    ConfigDelete,
    ConfigEntry,
    ConfigGet,
    ConfigList,
    ConfigSet,
    Fence,
    MemoryLog,
    TaskAcquire,
    TaskCheck,
    TaskLease,
    TaskList,
    TaskRelease,
    TaskRenew,
    apply,
    decode_command,
    decode_state,
    encode_command,
    encode_state,
)
from consensus.commands import MAX_LEASE
from crdt.errors import LocalProtocolError, RemoteProtocolError


def run(*commands, state=None):
    state = ClusterState() if state is None else state
    results = []
    for command in commands:
        state, result = apply(state, command)
        results.append(result)
    return state, results


# -- compare-and-set -----------------------------------------------------------------


def test_cas_with_expected_revision_0_creates_a_missing_key():
    state, [r] = run(ConfigCas(key="lock", expected_revision=0, value="n1"))
    assert r == {"key": "lock", "swapped": True, "exists": True, "value": "n1", "entry_revision": 1, "revision": 1}
    assert state.config["lock"] == ConfigEntry("n1", 1)


def test_cas_with_expected_revision_0_fails_when_the_key_exists_and_writes_nothing():
    state, [_, r] = run(ConfigSet(key="lock", value="n1"), ConfigCas(key="lock", expected_revision=0, value="n2"))
    assert r == {"key": "lock", "swapped": False, "exists": True, "value": "n1", "entry_revision": 1, "revision": 1}
    assert state.revision == 1 and state.config["lock"].value == "n1"


def test_cas_swaps_only_at_the_expected_revision():
    state, results = run(
        ConfigSet(key="n", value=1),                          # rev 1
        ConfigCas(key="n", expected_revision=1, value=2),     # rev 2: swaps
        ConfigCas(key="n", expected_revision=1, value=3),     # stale: fails
        ConfigCas(key="n", expected_revision=2, value=3),     # rev 3: swaps
    )
    assert [r["swapped"] for r in results[1:]] == [True, False, True]
    assert results[2]["value"] == 2 and results[2]["entry_revision"] == 2
    assert state.config["n"] == ConfigEntry(3, 3)


def test_a_failed_cas_is_an_answer_not_a_refusal_and_leaves_the_state_object_alone():
    before, _ = run(ConfigSet(key="k", value=1))
    after, result = apply(before, ConfigCas(key="k", expected_revision=7, value=2))
    assert after is before
    assert isinstance(result, dict) and result["swapped"] is False


def test_cas_on_a_missing_key_with_a_revision_fails_and_says_it_does_not_exist():
    _, [r] = run(ConfigCas(key="k", expected_revision=3, value=1))
    assert r["swapped"] is False and r["exists"] is False and r["value"] is None and r["entry_revision"] == 0


def test_a_cas_applied_twice_reports_its_own_swap_both_times():
    """Rule: commands stay idempotent in effect (the Raft adapter may apply a retried write twice)."""
    cas = ConfigCas(key="k", expected_revision=0, value={"owner": "n1"}, request="r1")
    state, [first, second] = run(cas, cas)
    assert first["swapped"] and second["swapped"]
    assert state.revision == 1 and state.config["k"].request == "r1"


def test_two_callers_with_equal_commands_never_both_win():
    # Two counters read 5 at revision 1 and both want 6: the second must fail (no lost update).
    state, [_, a, b] = run(
        ConfigSet(key="n", value=5),
        ConfigCas(key="n", expected_revision=1, value=6, request="a"),
        ConfigCas(key="n", expected_revision=1, value=6, request="b"),
    )
    assert a["swapped"] and b["swapped"] is False
    _, [again] = run(ConfigCas(key="n", expected_revision=1, value=6), state=state)
    assert again["swapped"] is False  # no request id: never taken for a retry


# -- delete and list ------------------------------------------------------------------


def test_delete_removes_the_key_and_counts_as_a_write_even_when_absent():
    state, [_, d1, d2] = run(ConfigSet(key="k", value=1), ConfigDelete(key="k"), ConfigDelete(key="k"))
    assert d1 == {"key": "k", "deleted": True, "revision": 2}
    assert d2 == {"key": "k", "deleted": False, "revision": 3}
    assert "k" not in state.config
    _, get = apply(state, ConfigGet(key="k"))
    assert get is None


def test_after_a_delete_cas_with_0_creates_the_key_again():
    state, [*_, r] = run(ConfigSet(key="k", value=1), ConfigDelete(key="k"), ConfigCas(key="k", expected_revision=0, value=2))
    assert r["swapped"] and state.config["k"] == ConfigEntry(2, 3)


def test_list_returns_the_keys_under_a_prefix_sorted_and_changes_nothing():
    state, _ = run(ConfigSet(key="site/b", value=2), ConfigSet(key="site/a", value=1), ConfigSet(key="other", value=0))
    after, result = apply(state, ConfigList(prefix="site/"))
    assert after is state
    assert result == {"revision": 3, "entries": [
        {"key": "site/a", "value": 1, "revision": 2}, {"key": "site/b", "value": 2, "revision": 1},
    ]}
    assert [e["key"] for e in apply(state, ConfigList())[1]["entries"]] == ["other", "site/a", "site/b"]


def test_a_prefix_may_be_empty_but_not_too_long():
    ConfigList(prefix="")
    with pytest.raises(LocalProtocolError, match="^consensus: a key prefix"):
        ConfigList(prefix="x" * 257)


# -- task leases ------------------------------------------------------------------------


def acquire(holder, now, lease=10.0, task="t"):
    return TaskAcquire(task=task, holder=holder, lease=lease, now=now)


def test_acquire_grants_a_free_task_with_the_next_fencing_token():
    state, [r] = run(acquire("a", 100))
    assert r == {"task": "t", "holder": "a", "token": 1, "acquired_at": 100.0, "expires_at": 110.0,
                 "acquired": True, "revision": 1}
    assert state.tasks["t"] == TaskLease("a", 1, 100.0, 110.0)
    assert state.fence == 1 and state.clock == 100.0


def test_a_live_lease_keeps_others_out_and_the_answer_names_the_holder():
    state, [_, r] = run(acquire("a", 100), acquire("b", 109.9))
    assert r["acquired"] is False and r["holder"] == "a" and r["token"] == 1 and r["revision"] == 1
    assert state.revision == 1 and state.clock == 100.0


def test_once_the_lease_ran_out_another_holder_gets_the_task_with_a_higher_token():
    _, [_, r] = run(acquire("a", 100), acquire("b", 110))  # expires_at is exclusive
    assert r["acquired"] and r["holder"] == "b" and r["token"] == 2


def test_the_holder_acquiring_again_keeps_its_token_and_extends_the_lease():
    """A retried acquire must not hand the holder a new token (idempotent in effect)."""
    state, [first, again] = run(acquire("a", 100), acquire("a", 105))
    assert again["acquired"] and again["token"] == first["token"] == 1
    assert state.tasks["t"].expires_at == 115.0 and state.fence == 1


def test_renew_extends_only_the_live_lease_of_the_right_holder_and_token():
    state, [_, ok, wrong_token, wrong_holder] = run(
        acquire("a", 100),
        TaskRenew(task="t", holder="a", token=1, lease=30, now=105),
        TaskRenew(task="t", holder="a", token=9, lease=30, now=106),
        TaskRenew(task="t", holder="b", token=1, lease=30, now=106),
    )
    assert ok["renewed"] and ok["expires_at"] == 135.0
    assert not wrong_token["renewed"] and not wrong_holder["renewed"]
    assert state.tasks["t"].expires_at == 135.0


def test_a_lease_that_ran_out_cannot_be_renewed_even_if_nobody_took_it():
    state, [_, r] = run(acquire("a", 100), TaskRenew(task="t", holder="a", token=1, lease=10, now=111))
    assert r["renewed"] is False and r["holder"] is None
    _, again = apply(state, acquire("a", 112))
    assert again["token"] == 2  # it must acquire afresh, under a new token


def test_release_frees_the_task_and_a_stale_release_cannot_touch_the_next_holder():
    state, [_, released, _, stale] = run(
        acquire("a", 100),
        TaskRelease(task="t", holder="a", token=1, now=101),
        acquire("b", 102),
        TaskRelease(task="t", holder="a", token=1, now=103),
    )
    assert released["released"] and released["holder"] is None
    assert stale["released"] is False and stale["holder"] == "b"
    assert state.tasks["t"].holder == "b" and state.tasks["t"].token == 2


def test_cluster_time_never_runs_back_when_a_voter_clock_does():
    # A voter with a slow clock stamps 50 after another stamped 100: leases are judged at 100.
    state, [_, r] = run(acquire("a", 100, lease=5), acquire("b", 50))
    assert r["acquired"] is False
    state, [r] = run(acquire("b", 104), state=state)
    assert r["acquired"] is False
    state, [r] = run(acquire("b", 20, task="u"), state=state)
    assert r["acquired_at"] == 100.0 and state.clock == 100.0


def test_check_says_whether_a_token_is_the_live_one():
    state, _ = run(acquire("a", 100), acquire("b", 111))
    assert apply(state, TaskCheck(task="t", token=2, now=112))[1]["valid"] is True
    assert apply(state, TaskCheck(task="t", token=1, now=112))[1]["valid"] is False  # the fenced-out holder
    assert apply(state, TaskCheck(task="t", token=2, now=200))[1]["valid"] is False  # expired
    assert apply(state, TaskCheck(task="nope", token=2, now=112))[1]["valid"] is False
    after, _ = apply(state, TaskCheck(task="t", token=2, now=500))
    assert after is state  # a check is a read: not even the clock moves


def test_list_shows_every_lease_sorted():
    state, _ = run(acquire("a", 100, task="z"), acquire("b", 100, task="m"))
    _, r = apply(state, TaskList())
    assert r["fence"] == 2 and r["clock"] == 100.0 and r["revision"] == 2
    assert [(t["task"], t["holder"], t["token"]) for t in r["tasks"]] == [("m", "b", 2), ("z", "a", 1)]


def test_a_resource_fence_refuses_a_token_lower_than_one_it_has_seen():
    fence = Fence()
    assert fence.admit("t", 1) and fence.admit("t", 1)  # one holder, many writes
    assert fence.admit("t", 3)
    assert not fence.admit("t", 2)  # the holder that lost its lease
    assert fence.admit("u", 2)  # tasks are fenced separately


@pytest.mark.parametrize("build", [
    lambda: acquire("a", 100, lease=0),
    lambda: acquire("a", 100, lease=MAX_LEASE + 1),
    lambda: acquire("a", float("nan")),
    lambda: acquire("a", -1),
    lambda: acquire("", 100),
    lambda: TaskRenew(task="t", holder="a", token=-1, lease=1, now=1),
    lambda: TaskRelease(task="t", holder="a", token=True, now=1),
    lambda: ConfigCas(key="k", expected_revision=-1, value=1),
])
def test_malformed_task_and_cas_commands_are_our_own_misuse(build):
    with pytest.raises(LocalProtocolError, match="^consensus: "):
        build()


def test_integer_times_become_floats_so_encoding_is_canonical():
    command = acquire("a", 100, lease=10)
    assert command.now == 100.0 and isinstance(command.now, float) and isinstance(command.lease, float)
    assert encode_command(decode_command(encode_command(command))) == encode_command(command)


def test_a_task_command_with_a_missing_field_is_refused_on_decode():
    data = msgpack.packb({"v": 1, "t": "task.acquire", "task": "t", "holder": "a", "lease": 1.0})
    with pytest.raises(RemoteProtocolError, match="needs exactly the fields"):
        decode_command(data)


# -- snapshots ------------------------------------------------------------------------


def test_snapshot_round_trip_keeps_tasks_fence_clock_and_previous_revisions():
    state, _ = run(ConfigSet(key="k", value=1), ConfigCas(key="k", expected_revision=1, value=2, request="q"),
                   acquire("a", 100),
                   acquire("b", 100, task="u"), TaskRelease(task="u", holder="b", token=2, now=101))
    back = decode_state(encode_state(state))
    assert back == state
    assert back.config["k"].request == "q" and back.fence == 2 and back.clock == 101.0


def test_a_version_2_snapshot_still_reads_with_no_tasks():
    v2 = msgpack.packb({
        "v": 2, "revision": 4, "config": {"k": {"value": 1, "revision": 4}}, "models": {}, "members": {},
        "admitted": {},
    })
    state = decode_state(v2)
    assert state.config["k"] == ConfigEntry(1, 4)
    assert dict(state.tasks) == {} and state.fence == 0 and state.clock == 0.0


def test_a_version_3_snapshot_with_a_malformed_lease_is_refused():
    state, _ = run(acquire("a", 100))
    raw = msgpack.unpackb(encode_state(state))
    raw["tasks"]["t"]["token"] = "one"
    with pytest.raises(RemoteProtocolError, match="^consensus: malformed snapshot"):
        decode_state(msgpack.packb(raw))


# -- the in-memory log ----------------------------------------------------------------


def test_memory_log_state_age_is_zero_with_quorum_and_counts_from_the_loss():
    now = [10.0]
    log = MemoryLog(clock=lambda: now[0])
    assert log.state_age() == 0.0
    log.set_quorum(False)
    now[0] = 13.5
    assert log.state_age() == 3.5
    log.set_quorum(True)
    assert log.state_age() == 0.0


def test_memory_log_commits_task_and_cas_commands_through_the_codec():
    log = MemoryLog()
    assert log.submit(acquire("a", 100), timeout=1)["token"] == 1
    assert log.submit(ConfigCas(key="k", expected_revision=0, value=1, request="r"), timeout=1)["swapped"]
    assert log.submit(ConfigCas(key="k", expected_revision=0, value=1, request="r"), timeout=1)["swapped"]  # retry
    assert log.state().revision == 2
