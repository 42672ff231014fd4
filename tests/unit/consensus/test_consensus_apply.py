"""apply(): the pure state machine, one command at a time (consensus.machine)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from consensus import (
    ClusterState,
    ConfigEntry,
    ConfigGet,
    ConfigSet,
    MemberAdd,
    MemberRemove,
    ModelRecord,
    ModelRegister,
    Refusal,
    apply,
)

SHA_A = "a" * 64
SHA_B = "b" * 64


def record(name: str = "demo", sha256: str = SHA_A, origin: str = "peer-1") -> ModelRecord:
    return ModelRecord(
        name=name,
        sha256=sha256,
        size=1024,
        inputs=[{"name": "x", "dtype": "float32", "shape": [1, 3]}],
        outputs=[{"name": "y", "dtype": "float32", "shape": [1, 2]}],
        origin=origin,
    )


def run(*commands, state: ClusterState | None = None):
    """Apply commands in order; returns the final state and every result."""
    state = ClusterState() if state is None else state
    results = []
    for command in commands:
        state, result = apply(state, command)
        results.append(result)
    return state, results


def forged(cls, **fields):
    """A command built around its constructor's checks (what a buggy peer version could log)."""
    obj = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


# -- config ------------------------------------------------------------------------


def test_config_set_stores_the_value_and_bumps_the_revision():
    state, [result] = run(ConfigSet(key="threshold", value=0.5))
    assert result == {"key": "threshold", "value": 0.5, "revision": 1}
    assert state.revision == 1
    assert state.config["threshold"] == ConfigEntry(value=0.5, revision=1)


def test_config_set_overwrites_and_every_write_bumps_the_revision():
    state, results = run(
        ConfigSet(key="a", value=1), ConfigSet(key="b", value=2), ConfigSet(key="a", value=3)
    )
    assert [r["revision"] for r in results] == [1, 2, 3]
    assert state.config["a"] == ConfigEntry(value=3, revision=3)
    assert state.config["b"] == ConfigEntry(value=2, revision=2)


def test_setting_the_same_value_again_still_counts_as_a_write():
    state, results = run(ConfigSet(key="a", value=1), ConfigSet(key="a", value=1))
    assert state.revision == 2
    assert state.config["a"].revision == 2


def test_config_get_returns_the_entry_as_a_dict_and_changes_nothing():
    before, _ = run(ConfigSet(key="mode", value={"fast": True}))
    after, result = apply(before, ConfigGet(key="mode"))
    assert result == {"value": {"fast": True}, "revision": 1}
    assert after is before


def test_config_get_of_an_unset_key_is_none():
    state = ClusterState()
    after, result = apply(state, ConfigGet(key="missing"))
    assert result is None
    assert after is state and after.revision == 0


# -- models ------------------------------------------------------------------------


def test_model_register_adds_the_record():
    state, [result] = run(ModelRegister(record=record()))
    assert result == {"name": "demo", "sha256": SHA_A, "revision": 1}
    assert state.models["demo"] == record()


def test_model_register_refuses_a_known_name_with_another_hash():
    """The registry rule: a name stays bound to its content hash."""
    before, _ = run(ModelRegister(record=record(sha256=SHA_A)))
    after, result = apply(before, ModelRegister(record=record(sha256=SHA_B)))
    assert isinstance(result, Refusal)
    assert result.reason.startswith("consensus: model 'demo' is already registered")
    assert after is before
    assert after.models["demo"].sha256 == SHA_A and after.revision == 1


def test_model_register_with_the_same_hash_is_accepted_and_takes_the_new_origin():
    state, results = run(
        ModelRegister(record=record(origin="peer-1")), ModelRegister(record=record(origin="peer-2"))
    )
    assert not any(isinstance(r, Refusal) for r in results)
    assert state.models["demo"].origin == "peer-2"
    assert state.revision == 2


# -- members -----------------------------------------------------------------------


def test_member_add_and_remove():
    state, results = run(
        MemberAdd(peer_id="p1", raft_addr="10.0.0.1:4321"),
        MemberAdd(peer_id="p2", raft_addr="10.0.0.2:4321"),
        MemberRemove(peer_id="p1"),
    )
    assert dict(state.members) == {"p2": "10.0.0.2:4321"}
    assert results[0] == {"peer_id": "p1", "raft_addr": "10.0.0.1:4321", "replaced": None, "revision": 1}
    assert results[2] == {"peer_id": "p1", "removed": True, "revision": 3}


def test_member_add_moves_an_address_to_its_newest_owner():
    """One Raft address is one pysyncobj voter, so it belongs to one peer id."""
    state, results = run(
        MemberAdd(peer_id="old", raft_addr="10.0.0.1:4321"),
        MemberAdd(peer_id="new", raft_addr="10.0.0.1:4321"),
    )
    assert dict(state.members) == {"new": "10.0.0.1:4321"}
    assert results[1]["replaced"] == "old"


def test_removing_an_unknown_member_is_an_accepted_no_op():
    state, [result] = run(MemberRemove(peer_id="ghost"))
    assert result == {"peer_id": "ghost", "removed": False, "revision": 1}
    assert dict(state.members) == {}


# -- never raises, never mutates ---------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        forged(ConfigSet, key="", value=1),
        forged(ConfigSet, key="k" * 257, value=1),
        forged(ConfigGet, key=7),
        forged(MemberAdd, peer_id="p", raft_addr="no-port"),
        forged(MemberRemove, peer_id=""),
        "config.set",
        None,
    ],
    ids=["empty-key", "long-key", "int-key", "bad-addr", "empty-peer", "a-str", "none"],
)
def test_apply_refuses_bad_commands_instead_of_raising(command):
    """A raising apply would wedge the replicated log on every replica."""
    state = ClusterState()
    after, result = apply(state, command)
    assert isinstance(result, Refusal)
    assert result.reason.startswith("consensus: ")
    assert after is state


def test_apply_never_changes_the_state_it_was_given():
    before, _ = run(ConfigSet(key="a", value=[1, 2]))
    snapshot = (before.revision, dict(before.config))
    run(ConfigSet(key="a", value=[3]), MemberAdd(peer_id="p", raft_addr="h:1"), state=before)
    assert (before.revision, dict(before.config)) == snapshot


def test_cluster_state_is_read_only():
    state, _ = run(ConfigSet(key="a", value=1))
    with pytest.raises(TypeError):
        state.config["b"] = ConfigEntry(value=2, revision=2)  # type: ignore[index]
    with pytest.raises(FrozenInstanceError):
        state.revision = 5  # type: ignore[misc]


def test_a_stored_value_is_a_private_copy():
    value = {"list": [1, 2]}
    state, _ = run(ConfigSet(key="a", value=value))
    value["list"].append(3)
    assert state.config["a"].value == {"list": [1, 2]}
