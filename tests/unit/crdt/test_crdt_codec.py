"""decode_message refuses every malformed message with a RemoteProtocolError naming the fault."""

from __future__ import annotations

import copy

import msgpack
import pytest

from crdt import (
    CausalContext,
    Delta,
    Dot,
    Entry,
    LocalProtocolError,
    RemoteProtocolError,
    SyncDelta,
    SyncDigest,
    Timestamp,
    VersionVector,
    decode_message,
    encode_message,
)

ENTRY = Entry(key="temp", value={"c": 21.5}, ts=Timestamp(1000, 0, "a"), dot=Dot("a", 1))
DELTA = SyncDelta(delta=Delta(entries=(ENTRY,), context=CausalContext(VersionVector({"a": 1}))))
DIGEST = SyncDigest(context=CausalContext(VersionVector({"a": 1})))


def delta_with(**changes) -> dict:
    msg = copy.deepcopy(encode_message(DELTA))
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = msg
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is KeyError:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return msg


@pytest.mark.parametrize(
    "obj, words",
    [
        ([], "message: expected a map, got list"),
        (None, "message: expected a map, got NoneType"),
        (b"\x81", "message: expected a map, got bytes"),
        ({"t": "digest", "context": {"vv": {}, "cloud": []}}, "missing field 'v'"),
        ({"t": "digest", "v": 2, "context": {"vv": {}, "cloud": []}}, "wire version 2 is not supported"),
        ({"t": "digest", "v": "1", "context": {"vv": {}, "cloud": []}}, "wire version '1' is not supported"),
        ({"t": "digest", "v": True, "context": {"vv": {}, "cloud": []}}, "wire version True"),
        ({"v": 1, "context": {}}, "missing field 't'"),
        ({"t": "gossip", "v": 1}, "unknown message type 'gossip'"),
        ({"t": ["digest"], "v": 1}, "unknown message type"),
        ({"t": "digest", "v": 1}, "digest message: missing field 'context'"),
        ({"t": "digest", "v": 1, "context": {"vv": {}, "cloud": []}, "x": 1}, "unexpected field"),
        ({"t": "digest", "v": 1, "context": {"vv": {"a": -3}, "cloud": []}}, r"context\.vv: counter for 'a'"),
        ({"t": "digest", "v": 1, "context": {"vv": {7: 1}, "cloud": []}}, r"context\.vv: version vector node"),
        ({"t": "digest", "v": 1, "context": [1]}, "context: expected a map"),
        (delta_with(reply_context=KeyError), "delta message: missing field 'reply_context'"),
        (delta_with(reply_context=[]), "reply_context: expected a map"),
        (delta_with(delta__entries="x"), "delta: expected a list of entries"),
        (delta_with(delta__entries__0=["temp", 1, [1, 0, "a"]]), r"delta\.entries\[0\]: expected a list"),
        (delta_with(delta__entries__0__0=5), r"delta\.entries\[0\]: Entry\.key must be a string"),
        (delta_with(delta__entries__0__1={"s": {1}}), r"delta\.entries\[0\]: value of 'temp' holds a set"),
        (delta_with(delta__entries__0__1={1: 1}), r"delta\.entries\[0\]: value of 'temp' holds a dict key"),
        (delta_with(delta__entries__0__1=float("nan")), "only finite numbers"),
        (delta_with(delta__entries__0__2=[1000, -1, "a"]), r"delta\.entries\[0\]\.ts: Timestamp\.counter"),
        (delta_with(delta__entries__0__2=[1000, 0, "b"]), "both must name the writer"),
        (delta_with(delta__entries__0__3=["a", -1]), r"delta\.entries\[0\]\.dot: Dot\.counter"),
        (delta_with(delta__entries__0__3=["a", 2]), "outside the delta's context"),
        (delta_with(delta__context__cloud=[["a", "2"]]), r"delta\.context\.cloud\[0\]: Dot\.counter must be an int"),
        (delta_with(delta__context=KeyError), "delta: missing field 'context'"),
    ],
)
def test_malformed_messages_are_refused_with_a_named_reason(obj, words):
    with pytest.raises(RemoteProtocolError, match=words) as info:
        decode_message(obj)
    assert str(info.value).startswith("crdt: ")


def test_two_entries_for_one_key_are_refused():
    msg = encode_message(DELTA)
    msg["delta"]["entries"].append(msg["delta"]["entries"][0])
    with pytest.raises(RemoteProtocolError, match="two entries for key 'temp'"):
        decode_message(msg)


@pytest.mark.parametrize("msg", [DIGEST, DELTA, SyncDelta(delta=DELTA.delta, reply_context=DIGEST.context)])
def test_messages_survive_msgpack(msg):
    assert decode_message(msgpack.unpackb(msgpack.packb(encode_message(msg)))) == msg


def test_encoding_something_else_is_a_local_error():
    with pytest.raises(LocalProtocolError, match="^crdt: cannot encode a dict"):
        encode_message({"t": "digest"})  # type: ignore[arg-type]
