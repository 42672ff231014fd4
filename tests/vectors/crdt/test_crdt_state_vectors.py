"""Golden wire vectors for the delta-state types: their encoding cannot drift silently (STYLE §5).

``crdt_states.json`` holds ``encode_state`` output for the fixed values below.
If a change here is intended, it is a wire change: bump
``crdt.STATE_WIRE_VERSION``, then regenerate with
``PYTHONPATH=. python tests/vectors/crdt/test_crdt_state_vectors.py > tests/vectors/crdt/crdt_states.json``
and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crdt import (
    STATE_WIRE_VERSION,
    GCounter,
    LWWRegister,
    ORMap,
    ORSet,
    PNCounter,
    TimeSeriesWindow,
    Timestamp,
    VersionVector,
    decode_state,
    encode_state,
)

VECTORS = Path(__file__).with_name("crdt_states.json")

A, B = "12D3KooWNodeA", "12D3KooWNodeB"


def _fold(state, *mutations):
    for mutate in mutations:
        state = state.apply_delta(mutate(state))
    return state


TAGS = _fold(
    ORSet(),
    lambda s: s.add(A, "north"),
    lambda s: s.add(B, "calibrated"),
    lambda s: s.remove(A, "north"),
    lambda s: s.add(B, "übergang"),
)
DEVICES = _fold(
    ORMap(),
    lambda m: m.put("cam-1/status", "online", Timestamp(1_700_000_000_123, 0, A)),
    lambda m: m.put("cam-1/status", {"state": "offline", "code": -3}, Timestamp(1_700_000_000_200, 1, B)),
    lambda m: m.put("hub/fw", [1, 4, None], Timestamp(1_700_000_000_300, 0, A)),
    lambda m: m.remove(B, "hub/fw"),
)
KITCHEN = _fold(
    TimeSeriesWindow(window_ms=60_000, max_count=3),
    lambda w: w.record(A, 1_700_000_000_000, 21.5),
    lambda w: w.record(B, 1_700_000_030_000, 21.75),
    lambda w: w.record(A, 1_700_000_030_000, {"c": 22.0, "ok": True}),
    lambda w: w.record(B, 1_700_000_050_000, 23),
)

VALUES = {
    "g_counter": _fold(GCounter(), lambda c: c.increment(A, 3), lambda c: c.increment(B)),
    "g_counter_empty": GCounter(),
    "pn_counter": _fold(PNCounter(), lambda c: c.increment(A, 5), lambda c: c.decrement(B, 2)),
    "lww_register": _fold(
        LWWRegister(),
        lambda r: r.set("online", Timestamp(1_700_000_000_123, 0, A)),
        lambda r: r.set({"temp": 21.5, "tags": ["north", None]}, Timestamp(1_700_000_000_123, 1, B)),
    ),
    "lww_register_empty": LWWRegister(),
    "or_set": TAGS,
    "or_set_remove_delta": TAGS.remove(B, "calibrated"),
    "or_map": DEVICES,
    "or_map_put_delta": DEVICES.put("cam-1/status", "online", Timestamp(1_700_000_000_400, 0, A)),
    "time_series": KITCHEN,
    "time_series_delta_since": KITCHEN.delta_since(VersionVector({A: 1, B: 1})),
}


def canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True)


def golden() -> dict:
    return json.loads(VECTORS.read_text())


def test_the_vector_file_covers_exactly_these_values():
    assert sorted(golden()) == sorted(VALUES)


@pytest.mark.parametrize("name", sorted(VALUES))
def test_encoding_matches_the_golden_vector(name):
    assert canonical(encode_state(VALUES[name])) == canonical(golden()[name])


@pytest.mark.parametrize("name", sorted(VALUES))
def test_the_golden_vector_decodes_to_the_value(name):
    assert decode_state(golden()[name]) == VALUES[name]


def test_every_vector_carries_the_current_state_wire_version():
    assert {vector["v"] for vector in golden().values()} == {STATE_WIRE_VERSION}


if __name__ == "__main__":
    print(json.dumps({name: encode_state(value) for name, value in VALUES.items()}, sort_keys=True, indent=2))
