"""Codec round trips for every message, and decode_message on junk (STYLE §5, §17)."""

from __future__ import annotations

import json

import msgpack
from crdt_strategies import contexts, deltas
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import (
    CausalContext,
    Delta,
    Dot,
    Entry,
    RemoteProtocolError,
    SyncDelta,
    SyncDigest,
    Timestamp,
    VersionVector,
    decode_message,
    encode_message,
)

codec = settings(max_examples=80, deadline=None)

messages = st.builds(SyncDigest, context=contexts) | st.builds(
    SyncDelta, delta=deltas(), reply_context=st.none() | contexts
)


@codec
@given(messages)
def test_every_message_round_trips_through_msgpack(msg):
    assert decode_message(msgpack.unpackb(msgpack.packb(encode_message(msg)))) == msg


@codec
@given(messages)
def test_every_message_round_trips_through_json(msg):
    assert decode_message(json.loads(json.dumps(encode_message(msg)))) == msg


@codec
@given(contexts)
def test_parts_round_trip(ctx):
    assert CausalContext.from_wire(ctx.to_wire()) == ctx
    assert VersionVector.from_wire(ctx.vv.to_wire()) == ctx.vv
    for dot in ctx.cloud:
        assert Dot.from_wire(dot.to_wire()) == dot


@codec
@given(deltas())
def test_delta_and_entries_round_trip(delta):
    assert Delta.from_wire(delta.to_wire()) == delta
    for entry in delta.entries:
        assert Entry.from_wire(entry.to_wire()) == entry
        assert Timestamp.from_wire(entry.ts.to_wire()) == entry.ts


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4) | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=4),
    max_leaves=12,
)


@codec
@given(junk)
def test_junk_is_refused_with_remote_protocol_error_only(obj):
    try:
        decode_message(obj)
    except RemoteProtocolError as exc:
        assert str(exc).startswith("crdt: ")


def mutate(obj, data, depth=0):
    """Replace one node somewhere in a wire object with junk."""
    if depth > 6 or not isinstance(obj, (list, dict)) or not obj or data.draw(st.integers(0, 3)) == 0:
        return data.draw(junk)
    if isinstance(obj, list):
        i = data.draw(st.integers(0, len(obj) - 1))
        return obj[:i] + [mutate(obj[i], data, depth + 1)] + obj[i + 1 :]
    key = data.draw(st.sampled_from(sorted(obj, key=repr)))
    return {**obj, key: mutate(obj[key], data, depth + 1)}


@codec
@given(messages, st.data())
def test_damaged_messages_decode_or_are_refused_with_remote_protocol_error_only(msg, data):
    damaged = mutate(encode_message(msg), data)
    try:
        decoded = decode_message(damaged)
    except RemoteProtocolError as exc:
        assert str(exc).startswith("crdt: ")
    else:
        assert encode_message(decoded) is not None  # whatever decodes is a well-formed message
