"""Every delta-state value round-trips through ``encode_state``; damaged ones are refused, never crash (STYLE §5, §17)."""

from __future__ import annotations

import json

import msgpack
import pytest
from crdt_type_specs import SPECS, histories
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import RemoteProtocolError, decode_state, encode_state

codec = settings(max_examples=30, deadline=None)
TYPES = sorted(SPECS)

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4) | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=4),
    max_leaves=12,
)


def mutate(obj, data, depth=0):
    """Replace one node somewhere in a wire object with junk."""
    if depth > 6 or not isinstance(obj, (list, dict)) or not obj or data.draw(st.integers(0, 3)) == 0:
        return data.draw(junk)
    if isinstance(obj, list):
        i = data.draw(st.integers(0, len(obj) - 1))
        return obj[:i] + [mutate(obj[i], data, depth + 1)] + obj[i + 1 :]
    key = data.draw(st.sampled_from(sorted(obj, key=repr)))
    return {**obj, key: mutate(obj[key], data, depth + 1)}


@pytest.mark.parametrize("name", TYPES)
@codec
@given(data=st.data())
def test_states_and_deltas_round_trip_through_msgpack_and_json(name, data):
    """Rule: decode(encode(x)) == x, for states and deltas, over both carriers."""
    history = data.draw(histories(SPECS[name]))
    for value in [*history.writers.values(), *history.deltas]:
        wire = encode_state(value)
        assert decode_state(msgpack.unpackb(msgpack.packb(wire))) == value
        assert decode_state(json.loads(json.dumps(wire))) == value


@pytest.mark.parametrize("name", TYPES)
@codec
@given(data=st.data())
def test_damaged_states_decode_or_are_refused_with_remote_protocol_error_only(name, data):
    """Rule: a peer's malformed value raises RemoteProtocolError and nothing else."""
    history = data.draw(histories(SPECS[name]))
    damaged = mutate(encode_state(data.draw(st.sampled_from(list(history.writers.values())))), data)
    try:
        decoded = decode_state(damaged)
    except RemoteProtocolError as exc:
        assert str(exc).startswith("crdt: ")
    else:
        assert encode_state(decoded) is not None


@codec
@given(junk)
def test_junk_is_refused_with_remote_protocol_error_only(obj):
    try:
        decode_state(obj)
    except RemoteProtocolError as exc:
        assert str(exc).startswith("crdt: ")
