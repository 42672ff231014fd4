"""Laws of compare-and-set and task leases (Hypothesis): codec round trips, fencing, one holder, CAS."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import (
    ClusterState,
    ConfigCas,
    ConfigDelete,
    ConfigGet,
    ConfigList,
    ConfigSet,
    Refusal,
    TaskAcquire,
    TaskCheck,
    TaskList,
    TaskRelease,
    TaskRenew,
    apply,
    decode_command,
    decode_state,
    encode_command,
    encode_state,
)
from consensus.commands import WRITES

# Tiny pools: the interesting cases are collisions (same key, task, holder, token).
keys = st.sampled_from(["a", "b", "site/c"])
tasks = st.sampled_from(["t", "u"])
holders = st.sampled_from(["h1", "h2", "h3"])
tokens = st.integers(0, 6)
revisions = st.integers(0, 8)
requests = st.sampled_from(["", "r1", "r2"])
values = st.integers(-3, 3) | st.text(max_size=3) | st.none()
leases = st.floats(0.5, 20, allow_nan=False)
# Voter clocks: mostly moving forward, sometimes behind (a slow voter).
nows = st.floats(0, 100, allow_nan=False)

config_commands = st.one_of(
    st.builds(ConfigSet, key=keys, value=values),
    st.builds(ConfigGet, key=keys),
    st.builds(ConfigCas, key=keys, expected_revision=revisions, value=values, request=requests),
    st.builds(ConfigDelete, key=keys),
    st.builds(ConfigList, prefix=st.sampled_from(["", "site/", "a"])),
)
task_commands = st.one_of(
    st.builds(TaskAcquire, task=tasks, holder=holders, lease=leases, now=nows),
    st.builds(TaskRenew, task=tasks, holder=holders, token=tokens, lease=leases, now=nows),
    st.builds(TaskRelease, task=tasks, holder=holders, token=tokens, now=nows),
    st.builds(TaskCheck, task=tasks, token=tokens, now=nows),
    st.builds(TaskList),
)
commands = config_commands | task_commands


def run(sequence, state=None):
    state = ClusterState() if state is None else state
    states, results = [state], []
    for command in sequence:
        state, result = apply(state, command)
        states.append(state)
        results.append(result)
    return states, results


FAILED = ("swapped", "acquired", "renewed", "released")


def wrote(before, command, result) -> bool:
    """Whether a write was accepted (not refused, not a compare that failed, not a CAS meeting its own write)."""
    if not isinstance(command, WRITES) or isinstance(result, Refusal):
        return False
    if isinstance(command, ConfigCas):
        entry = before.config.get(command.key)
        return (0 if entry is None else entry.revision) == command.expected_revision
    return not any(result.get(flag) is False for flag in FAILED)


@given(commands)
def test_codec_round_trip_and_canonical_bytes(command):
    data = encode_command(command)
    assert decode_command(data) == command
    assert encode_command(decode_command(data)) == data


@settings(max_examples=200)
@given(st.lists(commands, max_size=40))
def test_nothing_is_ever_refused_and_replicas_agree(sequence):
    """Failed compares are answers; and the same log gives the same state on every replica."""
    states, results = run(sequence)
    assert not any(isinstance(r, Refusal) for r in results)
    there, there_results = run([decode_command(encode_command(c)) for c in sequence])
    assert there[-1] == states[-1] and there_results == results
    assert decode_state(encode_state(states[-1])) == states[-1]


@settings(max_examples=200)
@given(st.lists(commands, max_size=40))
def test_revision_counts_accepted_writes_and_failed_compares_change_nothing(sequence):
    states, results = run(sequence)
    assert states[-1].revision == sum(wrote(b, c, r) for b, c, r in zip(states, sequence, results))
    for before, after, command, result in zip(states, states[1:], sequence, results):
        if not wrote(before, command, result):
            assert after is before


@settings(max_examples=200)
@given(st.lists(task_commands, max_size=40))
def test_fencing_tokens_never_go_backwards_and_each_grant_gets_a_new_one(sequence):
    states, results = run(sequence)
    assert [s.fence for s in states] == sorted(s.fence for s in states)
    assert [s.clock for s in states] == sorted(s.clock for s in states)
    issued = []
    for before, after, result in zip(states, states[1:], results):
        for task, lease in after.tasks.items():
            old = before.tasks.get(task)
            if old is None or old.token != lease.token:
                issued.append(lease.token)
                assert lease.token == after.fence  # the counter's next value, never an old one
                assert old is None or lease.token > old.token
    assert issued == sorted(set(issued))  # strictly increasing across every task


@settings(max_examples=200)
@given(st.lists(task_commands, max_size=40))
def test_a_task_has_at_most_one_live_holder(sequence):
    """Rule: a task is granted to another holder only when its lease is not live at cluster time."""
    states, _ = run(sequence)
    for before, after, command in zip(states, states[1:], sequence):
        if isinstance(command, TaskAcquire):
            old, new = before.tasks.get(command.task), after.tasks.get(command.task)
            t = max(before.clock, command.now)
            if old is not None and old.live_at(t) and old.holder != command.holder:
                assert new == old
            if new is not None and new != old and old is not None and old.token != new.token:
                assert not old.live_at(new.acquired_at)  # the old lease had run out when the new began


@settings(max_examples=200)
@given(st.lists(task_commands, max_size=40))
def test_a_token_that_was_fenced_out_never_checks_valid_again(sequence):
    states, _ = run(sequence)
    for i, state in enumerate(states):
        for task, lease in state.tasks.items():
            for later in states[i + 1:]:
                newer = later.tasks.get(task)
                if newer is not None and newer.token > lease.token:
                    _, check = apply(later, TaskCheck(task=task, token=lease.token, now=later.clock))
                    assert check["valid"] is False


@settings(max_examples=200)
@given(st.lists(config_commands, max_size=40))
def test_cas_matches_a_reference_model(sequence):
    """CAS against a plain dict of key -> (value, revision, request)."""
    model: dict[str, tuple] = {}
    revision = 0
    state = ClusterState()
    for command in sequence:
        state, result = apply(state, command)
        if isinstance(command, ConfigSet):
            revision += 1
            model[command.key] = (command.value, revision, "")
        elif isinstance(command, ConfigDelete):
            revision += 1
            model.pop(command.key, None)
        elif isinstance(command, ConfigCas):
            current = model.get(command.key)
            at = 0 if current is None else current[1]
            if at == command.expected_revision:
                revision += 1
                model[command.key] = (command.value, revision, command.request)
                assert result["swapped"] is True
            else:
                retry = current is not None and command.request and current[2] == command.request
                assert result["swapped"] is bool(retry)
                assert result["entry_revision"] == at
        assert state.revision == revision
        assert {k: (e.value, e.revision, e.request) for k, e in state.config.items()} == model
