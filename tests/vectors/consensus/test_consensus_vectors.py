"""Golden byte vectors of the state-model commands and the version 3 and 4 snapshots (STYLE §5).

``consensus_commands.json`` maps a name to the hex of ``encode_command`` (or
``encode_state``) for the fixed values below. A change here is a wire change:
every journal and every older voter reads these bytes. If it is intended,
regenerate with
``PYTHONPATH=. python tests/vectors/consensus/test_consensus_vectors.py > tests/vectors/consensus/consensus_commands.json``
and review the diff. ``snapshot_v3`` is frozen: this code writes version 4, so the
version 3 bytes are carried over from the file, to prove they still read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensus import (
    ClusterState,
    ConfigCas,
    ConfigDelete,
    ConfigList,
    ModelRecord,
    ModelRegister,
    PeerAdmit,
    PlacementClear,
    PlacementGet,
    PlacementList,
    PlacementSet,
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

VECTORS = Path(__file__).with_name("consensus_commands.json")
HOLDER = "12D3KooWGzBw2WRxj3tHLdT8wT5sVMwDkbeoX3Hx1Q6wD7HhXX9Z"
NOW = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z
SERVER = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"

COMMANDS = {
    "config_cas_create": ConfigCas(key="site/lock", expected_revision=0, value={"owner": "n1"}, request="9f2c1e"),
    "config_cas_swap": ConfigCas(key="threshold", expected_revision=41, value=0.75, request=""),
    "config_delete": ConfigDelete(key="threshold"),
    "config_list": ConfigList(prefix="site/"),
    "task_acquire": TaskAcquire(task="cam-3/transcode", holder=HOLDER, lease=10.0, now=NOW),
    "task_renew": TaskRenew(task="cam-3/transcode", holder=HOLDER, token=7, lease=10.0, now=NOW + 4),
    "task_release": TaskRelease(task="cam-3/transcode", holder=HOLDER, token=7, now=NOW + 5),
    "task_check": TaskCheck(task="cam-3/transcode", token=7, now=NOW + 6),
    "task_list": TaskList(),
    "placement_set": PlacementSet(model="ocr-det", partitions={0: [HOLDER], 1: [SERVER, HOLDER]},
                                  expected_revision=0, request="5e1d0a"),
    "placement_clear": PlacementClear(model="ocr-det"),
    "placement_get": PlacementGet(model="ocr-det"),
    "placement_list": PlacementList(),
}
RECORD = ModelRecord(name="ocr-det", sha256="ab" * 32, size=4_400_000,
                     inputs=[{"name": "x", "dtype": "float32", "shape": [1, 3, -1, -1]}],
                     outputs=[{"name": "y", "dtype": "float32", "shape": [1, 1, -1, -1]}], origin=HOLDER)


def snapshot_state() -> ClusterState:
    """A small state reached through every kind of new write."""
    state = ClusterState()
    for command in (
        COMMANDS["config_cas_create"],
        TaskAcquire(task="a", holder=HOLDER, lease=5.0, now=NOW),
        COMMANDS["task_acquire"],
    ):
        state, _ = apply(state, command)
    return state


def snapshot_state_v4() -> ClusterState:
    """The version 3 state, plus a model placed on two partitions with the admitted-peer list on."""
    state = snapshot_state()
    for command in (
        ModelRegister(record=RECORD),
        PeerAdmit(peer_id=HOLDER, name="gw", members={SERVER: "cloud"}),
        COMMANDS["placement_set"],
    ):
        state, _ = apply(state, command)
    return state


def vectors() -> dict[str, str]:
    """Name -> hex bytes, as the JSON file holds them."""
    out = {name: encode_command(command).hex() for name, command in COMMANDS.items()}
    out["snapshot_v3"] = golden()["snapshot_v3"]  # frozen: written by the version 3 code
    out["snapshot_v4"] = encode_state(snapshot_state_v4()).hex()
    return out


def golden() -> dict[str, str]:
    return json.loads(VECTORS.read_text())


def test_the_vector_file_covers_exactly_these_commands():
    assert sorted(golden()) == sorted([*COMMANDS, "snapshot_v3", "snapshot_v4"])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_encoding_matches_the_golden_vector(name):
    assert encode_command(COMMANDS[name]).hex() == golden()[name]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_golden_vector_decodes_to_the_command(name):
    assert decode_command(bytes.fromhex(golden()[name])) == COMMANDS[name]


def test_the_version_3_snapshot_still_reads_with_no_placement():
    state = decode_state(bytes.fromhex(golden()["snapshot_v3"]))
    assert state == snapshot_state() and dict(state.placement) == {}


def test_the_version_4_snapshot_matches_and_reads_back():
    assert encode_state(snapshot_state_v4()).hex() == golden()["snapshot_v4"]
    state = decode_state(bytes.fromhex(golden()["snapshot_v4"]))
    assert state == snapshot_state_v4()
    assert state.placement["ocr-det"].partitions == {0: (HOLDER,), 1: (SERVER, HOLDER)}


if __name__ == "__main__":
    print(json.dumps(vectors(), indent=2, sort_keys=True))
