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
from crdt.codec import encode_message_v1

ENTRY = Entry(key="temp", value={"c": 21.5}, ts=Timestamp(1000, 0, "a"), dot=Dot("a", 1))
DELTA = SyncDelta(delta=Delta(entries=(ENTRY,), context=CausalContext(VersionVector({"a": 1}))))
DIGEST = SyncDigest(context=CausalContext(VersionVector({"a": 1})))


def delta_with(**changes) -> dict:
    """The version-1 encoding of DELTA with fields changed or (``KeyError``) removed."""
    return _changed(encode_message_v1(DELTA), changes)


def v2_with(**changes) -> list:
    """The version-2 encoding of DELTA (explicit context) with fields changed or removed."""
    return _changed(encode_message(DELTA), changes)


def _changed(msg: dict | list, changes: dict) -> dict | list:
    msg = copy.deepcopy(msg)
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
        (None, "message: expected a list .or a version-1 map., got NoneType"),
        (b"\x81", "message: expected a list .or a version-1 map., got bytes"),
        ({"t": "digest", "context": {"vv": {}, "cloud": []}}, "missing field 'v'"),
        ({"t": "digest", "v": 3, "context": {"vv": {}, "cloud": []}}, "wire version 3 is not supported"),
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
        # version 2: ["delta", 2, nodes, entries, superseded, context, reply_context]
        ([], r"message: expected \[type, version, ...\]"),
        (["digest"], r"message: expected \[type, version, ...\]"),
        (["digest", 3, [], [[], []]], "wire version 3 is not supported"),
        (["digest", 1, [], [[], []]], "wire version 1 is not supported"),
        (["gossip", 2], "unknown message type 'gossip'"),
        (["digest", 2, []], r"digest message: expected \["),
        (["digest", 2, [], [[], []], 1], r"digest message: expected \["),
        (["digest", 2, "a", [[], []]], "nodes: expected a list of node ids"),
        (["digest", 2, ["a", 7], [[], []]], r"nodes\[1\]: node id must be a string"),
        (["digest", 2, ["a", ""], [[], []]], r"nodes\[1\]: node id must be a string of 1 to"),
        (["digest", 2, ["a", "a"], [[], []]], "nodes: names a node twice"),
        (["digest", 2, ["a"], [[0, 1]]], r"context: expected a context \[vector, cloud\]"),
        (["digest", 2, ["a"], [[0], []]], "context.vector: expected a flat list"),
        (["digest", 2, ["a"], [[1, 1], []]], r"context.vector\[0\]: node index 1 is not in"),
        (["digest", 2, ["a"], [[0, -1], []]], r"context.vector\[1\]: counter must be an int"),
        (["digest", 2, ["a"], [[0, 1, 0, 2], []]], "context.vector: names node 'a' twice"),
        (["digest", 2, ["a"], [[], [0, 0]]], r"context.cloud\[1\]: counter must be an int between 1"),
        (["summary", 2], r"summary message: expected \["),
        (["summary", 2, "ab"], "summary message: SyncSummary.fingerprint must be 32 hex digits"),
        (["summary", 2, "Z" * 32], "summary message: SyncSummary.fingerprint must be 32 hex digits"),
        (["summary", 2, 7], "summary message: SyncSummary.fingerprint must be 32 hex digits"),
        (v2_with(**{"7": KeyError}), r"delta message: expected \[.*got 7 items"),
        (v2_with(**{"7": "x"}), "deleted: expected a list of entry positions"),
        (v2_with(**{"7": [1]}), r"deleted\[0\]: 1 is not the position of an entry"),
        (v2_with(**{"7": [0]}), r"entries\[0\].value: the tombstone of 'temp' must have the value nil"),
        (v2_with(**{"7": [0, 0], "3__1": None}), "deleted: names entry 0 twice"),
        (v2_with(**{"6": []}), r"reply_context: expected a context"),
        (v2_with(**{"3": "x"}), "entries: expected a flat list of"),
        (v2_with(**{"3": ["temp", 1, 1000, 0, 0]}), "entries: expected a flat list of"),
        (v2_with(**{"3__0": 5}), r"entries\[0\].key: must be a string"),
        (v2_with(**{"3__1": {"s": {1}}}), r"entries\[0\].value: value of 'temp' holds a set"),
        (v2_with(**{"3__1": {1: 1}}), r"entries\[0\].value: value of 'temp' holds a dict key"),
        (v2_with(**{"3__1": float("nan")}), r"entries\[0\].value: holds nan; only finite numbers"),
        (v2_with(**{"3__1": b"raw"}), r"entries\[0\].value: value of 'temp' holds a bytes"),
        (v2_with(**{"3__1": 2**70}), r"entries\[0\].value: holds an integer outside the 64-bit range"),
        (v2_with(**{"3__2": -5}), r"entries\[0\].wall_ms: must be an int"),
        (v2_with(**{"3__2": True}), r"entries\[0\].wall_ms: must be an int"),
        (v2_with(**{"3__3": 1.5}), r"entries\[0\].counter: must be an int"),
        (v2_with(**{"3__4": 3}), r"entries\[0\].node: node index 3 is not in"),
        (v2_with(**{"3__5": 0}), r"entries\[0\].dot: must be an int between 1"),
        (v2_with(**{"3__5": 2}), "entry 'temp' has dot .* outside the delta's context"),
        (v2_with(**{"4": [0, 1]}), "superseded: superseded dots travel only in a delta without a context"),
        (v2_with(**{"5": None, "4": [0]}), "superseded: expected a flat list of"),
        (v2_with(**{"5": None, "4": [5, 1]}), r"superseded\[0\]: node index 5"),
    ],
)
def test_malformed_messages_are_refused_with_a_named_reason(obj, words):
    with pytest.raises(RemoteProtocolError, match=words) as info:
        decode_message(obj)
    assert str(info.value).startswith("crdt: ")


def test_two_entries_for_one_key_are_refused():
    msg = encode_message_v1(DELTA)
    msg["delta"]["entries"].append(msg["delta"]["entries"][0])
    with pytest.raises(RemoteProtocolError, match="two entries for key 'temp'"):
        decode_message(msg)
    msg = encode_message(DELTA)
    msg[3] += msg[3]
    with pytest.raises(RemoteProtocolError, match="entries: holds two entries for key 'temp'"):
        decode_message(msg)


def test_a_push_names_each_writer_once_and_carries_its_context_implicitly():
    push = SyncDelta(delta=Delta.of_writes([ENTRY], superseded=[Dot("b", 3)]))
    wire = encode_message(push)
    assert wire[2] == ["a", "b"] and wire[5] is None and wire[4] == [1, 3]
    decoded = decode_message(msgpack.unpackb(msgpack.packb(wire)))
    assert decoded == push
    assert decoded.delta.implicit and decoded.delta.context == CausalContext.from_dots([Dot("a", 1), Dot("b", 3)])


def test_a_tombstone_travels_as_a_deleted_position():
    gone = Entry(key="old", value=None, ts=Timestamp(1001, 0, "a"), dot=Dot("a", 2), deleted=True)
    push = SyncDelta(delta=Delta.of_writes([ENTRY, gone]))
    wire = encode_message(push)
    assert wire[7] == [1]
    decoded = decode_message(msgpack.unpackb(msgpack.packb(wire)))
    assert decoded == push and decoded.delta.entries[1].deleted and not decoded.delta.entries[0].deleted


def test_version_1_messages_are_still_read():
    for msg in (DIGEST, DELTA, SyncDelta(delta=DELTA.delta, reply_context=DIGEST.context)):
        assert decode_message(encode_message_v1(msg)) == msg


def test_a_container_value_is_copied_not_shared_with_the_wire_object():
    wire = encode_message(DELTA)
    decoded = decode_message(wire)
    wire[3][1]["c"] = -1
    assert decoded.delta.entries[0].value == {"c": 21.5}


@pytest.mark.parametrize("msg", [DIGEST, DELTA, SyncDelta(delta=DELTA.delta, reply_context=DIGEST.context)])
def test_messages_survive_msgpack(msg):
    assert decode_message(msgpack.unpackb(msgpack.packb(encode_message(msg)))) == msg


def test_encoding_something_else_is_a_local_error():
    with pytest.raises(LocalProtocolError, match="^crdt: cannot encode a dict"):
        encode_message({"t": "digest"})  # type: ignore[arg-type]
