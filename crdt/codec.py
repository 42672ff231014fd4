"""The wire form of sync messages: plain maps that msgpack (or JSON) carries as is.

Version 2 (written and read) is a list. It names each node once per
message, in ``nodes``, and refers to it by index everywhere else; entries and
dots are flat lists:

    ["digest", 2, nodes, context]
    ["summary", 2, fingerprint]                 # CausalContext.fingerprint(): "in sync, I think"
    ["delta",  2, nodes, entries, superseded, context | None, reply_context | None, deleted]
    nodes      = [node, ...]
    entries    = [key, value, wall_ms, hlc_counter, node_index, dot_counter, ...]
    superseded = [node_index, counter, ...]     # dots a push's entries superseded, or []
    deleted    = [entry_position, ...]          # which entries are tombstones (value nil), or []
    context    = [[node_index, top, ...], [node_index, counter, ...]]   # vector, cloud

A delta whose context is None (a push) accounts for exactly its entries' and
superseded dots.

An entry's timestamp and dot always name the same writer (``Entry``), so one
index serves both. A libp2p peer id is 52 characters: naming it once instead
of twice per entry is most of the difference in size from version 1.

Version 1 (a map: ``{"t", "v": 1, "context"/"delta", "reply_context"}``) is still read, so a mesh can be upgraded one node at a time.

``decode_message`` trusts nothing: any malformed input raises
``RemoteProtocolError`` whose message names the offending field. It checks a
whole message in flat loops and then builds the entries without re-checking
them (the receive path is the sync hot path). Golden vectors in
``tests/vectors/crdt/`` pin both versions; change the format only with a new
``"v"``.
"""

from __future__ import annotations

import math
from itertools import repeat
from typing import Any

from ._checks import MAX_INT, MAX_NODE_LEN, check_fields, json_value, wire_errors
from .causal_context import CausalContext
from .delta import Delta
from .dot import Dot
from .entry import Entry
from .errors import LocalProtocolError, RemoteProtocolError
from .messages import Message, SyncDelta, SyncDigest, SyncSummary
from .timestamp import Timestamp
from .version_vector import VersionVector

_entry = Entry._trusted
_timestamp = Timestamp._trusted
_dot = Dot._trusted

WIRE_VERSION = 2
"""The ``"v"`` this node writes."""

READ_VERSIONS = (1, 2)
"""The ``"v"`` values this node reads."""

_FIELDS_V1 = {"digest": ("t", "v", "context"), "delta": ("t", "v", "delta", "reply_context")}
_SHAPE_V2 = {
    "digest": '["digest", 2, nodes, context]',
    "delta": '["delta", 2, nodes, entries, superseded, context, reply_context, deleted]',
    "summary": '["summary", 2, fingerprint]',
}
_SCALARS = (str, float, int, bool, type(None))
_PLAIN = set(_SCALARS)
_INT = {int}
_tuple_new = tuple.__new__
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def encode_message(msg: Message) -> list:
    """``msg`` in the current wire form: a list led by its type and version."""
    if isinstance(msg, SyncDigest):
        nodes = _Nodes()
        context = nodes.context(msg.context)
        return ["digest", WIRE_VERSION, nodes.names, context]
    if isinstance(msg, SyncDelta):
        nodes = _Nodes()
        index = nodes.index
        delta = msg.delta
        flat: list = []
        deleted: list[int] = []
        for entry in delta.entries:
            ts = entry.ts
            if entry[4]:
                deleted.append(len(flat) // 6)
            flat += (entry.key, entry.value, ts.wall_ms, ts.counter, index(ts.node), entry.dot.counter)
        if delta.implicit:
            extra = [item for dot in delta.superseded for item in (index(dot.node), dot.counter)]
            context = None
        else:
            extra = []
            context = nodes.context(delta.context)
        reply = None if msg.reply_context is None else nodes.context(msg.reply_context)
        return ["delta", WIRE_VERSION, nodes.names, flat, extra, context, reply, deleted]
    if isinstance(msg, SyncSummary):
        return ["summary", WIRE_VERSION, msg.fingerprint]
    raise LocalProtocolError(
        f"crdt: cannot encode a {type(msg).__name__}; expected SyncDigest, SyncSummary or SyncDelta"
    )


def encode_message_v1(msg: Message) -> dict:
    """``msg`` in the version-1 form (for tests of mixed-version meshes)."""
    if isinstance(msg, SyncDigest):
        return {"t": "digest", "v": 1, "context": msg.context.to_wire()}
    if isinstance(msg, SyncDelta):
        reply = None if msg.reply_context is None else msg.reply_context.to_wire()
        return {"t": "delta", "v": 1, "delta": msg.delta.to_wire(), "reply_context": reply}
    raise LocalProtocolError(f"crdt: cannot encode a {type(msg).__name__}; expected SyncDigest or SyncDelta")


def decode_message(obj: Any) -> Message:
    """Validate and read a message a peer sent; raises ``RemoteProtocolError`` naming what is wrong."""
    try:
        return _decode(obj)
    except RemoteProtocolError:
        raise
    except (LocalProtocolError, TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
        # Every check should have caught it first; refuse rather than crash either way.
        raise RemoteProtocolError(f"crdt: malformed sync message ({type(exc).__name__}: {exc})") from None


class _Nodes:
    """Node ids of one message being encoded, in order of first use."""

    __slots__ = ("names", "_index")

    def __init__(self) -> None:
        self.names: list[str] = []
        self._index: dict[str, int] = {}

    def index(self, node: str) -> int:
        i = self._index.get(node)
        if i is None:
            i = self._index[node] = len(self.names)
            self.names.append(node)
        return i

    def context(self, context: CausalContext) -> list:
        index = self.index
        vv = [item for node in sorted(context.vv) for item in (index(node), context.vv[node])]
        cloud = [item for dot in sorted(context.cloud) for item in (index(dot.node), dot.counter)]
        return [vv, cloud]


def _remote(where: str, problem: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"crdt: {where}: {problem}")


def _decode(obj: Any) -> Message:
    if type(obj) is list:
        if len(obj) < 2:
            raise _remote("message", "expected [type, version, ...]")
        kind, version = obj[0], obj[1]
        if type(version) is not int or version not in READ_VERSIONS or version == 1:
            raise _unsupported(version)
        if kind == "delta":
            if len(obj) != 8:
                raise _remote("delta message", f"expected {_SHAPE_V2['delta']}, got {len(obj)} items")
            return _decode_delta(obj)
        if kind == "digest":
            if len(obj) != 4:
                raise _remote("digest message", f"expected {_SHAPE_V2['digest']}, got {len(obj)} items")
            return SyncDigest(context=_context(obj[3], obj[2], _nodes(obj[2]), "context"))
        if kind == "summary":
            if len(obj) != 3:
                raise _remote("summary message", f"expected {_SHAPE_V2['summary']}, got {len(obj)} items")
            with wire_errors("summary message"):
                return SyncSummary(fingerprint=obj[2])
        raise _remote("message", f"unknown message type {kind!r}; expected 'digest', 'summary' or 'delta'")
    if not isinstance(obj, dict):
        raise _remote("message", f"expected a list (or a version-1 map), got {type(obj).__name__}")
    if "v" not in obj:
        raise _remote("message", "missing field 'v' (the wire version)")
    version = obj["v"]
    if type(version) is not int or version != 1:
        raise _unsupported(version)
    if "t" not in obj:
        raise _remote("message", "missing field 't' (the message type)")
    kind = obj["t"]
    if kind != "digest" and kind != "delta":
        raise _remote("message", f"unknown message type {kind!r}; expected 'digest' or 'delta'")
    return _decode_v1(obj, kind)


def _unsupported(version: Any) -> RemoteProtocolError:
    readable = ", ".join(map(str, READ_VERSIONS))
    return _remote("message", f"wire version {version!r} is not supported; this node reads {readable}")


def _nodes(nodes: Any) -> int:
    """Check the node table; return its length."""
    if type(nodes) is list and len(nodes) == 1 and type(nodes[0]) is str and 0 < len(nodes[0]) <= MAX_NODE_LEN:
        return 1  # a push from one writer
    if type(nodes) is not list:
        raise _remote("nodes", f"expected a list of node ids, got {type(nodes).__name__}")
    for i, node in enumerate(nodes):
        if type(node) is not str or not 0 < len(node) <= MAX_NODE_LEN:
            what = f"a {type(node).__name__}" if type(node) is not str else f"{len(node)} characters"
            raise _remote(f"nodes[{i}]", f"node id must be a string of 1 to {MAX_NODE_LEN} characters, got {what}")
    if len(set(nodes)) != len(nodes):
        raise _remote("nodes", "names a node twice")
    return len(nodes)


def _flat_pairs(items: Any, n_nodes: int, where: str, minimum: int) -> list:
    """Check ``[node_index, counter, ...]``."""
    if type(items) is not list or len(items) % 2:
        raise _remote(where, "expected a flat list of [node_index, counter] pairs")
    for i in range(0, len(items), 2):
        node, counter = items[i], items[i + 1]
        if type(node) is not int or not 0 <= node < n_nodes:
            raise _remote(f"{where}[{i}]", f"node index {node!r} is not in the message's node table")
        if type(counter) is not int or not minimum <= counter <= MAX_INT:
            raise _remote(f"{where}[{i + 1}]", f"counter must be an int between {minimum} and {MAX_INT}, got {counter!r}")
    return items


def _context(obj: Any, nodes: list, n_nodes: int, where: str) -> CausalContext:
    if type(obj) is not list or len(obj) != 2:
        raise _remote(where, "expected a context [vector, cloud]")
    flat_vv = _flat_pairs(obj[0], n_nodes, f"{where}.vector", 0)
    flat_cloud = _flat_pairs(obj[1], n_nodes, f"{where}.cloud", 1)
    counters: dict[str, int] = {}
    for i in range(0, len(flat_vv), 2):
        node = nodes[flat_vv[i]]
        if node in counters:
            raise _remote(f"{where}.vector", f"names node {node!r} twice")
        if flat_vv[i + 1]:
            counters[node] = flat_vv[i + 1]
    vv = VersionVector._trusted(counters)
    if not flat_cloud:
        return CausalContext._trusted(vv, frozenset())
    # A cloud that is not compacted names the same set of dots: compact it.
    return CausalContext(vv, [_dot(nodes[flat_cloud[i]], flat_cloud[i + 1]) for i in range(0, len(flat_cloud), 2)])


def _decode_delta(obj: list) -> SyncDelta:
    _, _, nodes, flat, extra, context, reply, deleted = obj
    if type(nodes) is list and len(nodes) == 1 and type(nodes[0]) is str and 0 < len(nodes[0]) <= MAX_NODE_LEN:
        n_nodes = 1  # a push from one writer
    else:
        n_nodes = _nodes(nodes)
    if type(flat) is not list or len(flat) % 6:
        raise _remote("entries", "expected a flat list of [key, value, wall_ms, counter, node_index, dot_counter] entries")
    if len(flat) == 6:
        # One reading, the common push: the checks of _check_entry/_check_value in one expression
        # (``v - v == 0.0`` is false exactly for nan and the infinities); any doubt goes through them.
        key, value, wall, hlc, writer, counter = flat
        kind = type(value)
        if not (type(key) is str and type(wall) is int and 0 <= wall <= MAX_INT and type(hlc) is int
                and 0 <= hlc <= MAX_INT and type(writer) is int and 0 <= writer < n_nodes
                and type(counter) is int and 1 <= counter <= MAX_INT
                and (kind is float and value - value == 0.0 or kind is str or kind is bool or value is None
                     or kind is int and _INT_MIN <= value <= _INT_MAX)):
            values = [value]
            _check_entry(0, key, wall, hlc, writer, counter, n_nodes)
            _check_value(0, key, values)
            value = values[0]
        node = nodes[writer]
        entries: tuple[Entry, ...] = (_tuple_new(Entry, (
            key, value, _tuple_new(Timestamp, (wall, hlc, node)), _tuple_new(Dot, (node, counter)), False,
        )),)
    else:
        keys = flat[0::6]
        values = flat[1::6]
        walls = flat[2::6]
        hlcs = flat[3::6]
        writers = flat[4::6]
        counters = flat[5::6]
        if set(map(type, keys)) - {str} or len(set(keys)) != len(keys):
            _explain_keys(keys)
        if not _columns_ok(walls, hlcs, writers, counters, values, n_nodes):
            # Something is off (or a value is a container): entry by entry, naming the first fault.
            for i, wall in enumerate(walls):
                _check_entry(i, keys[i], wall, hlcs[i], writers[i], counters[i], n_nodes)
                _check_value(i, keys[i], values)
        # Built column-wise in C (map + zip + tuple.__new__): the named tuples' fields are checked above.
        writer_ids = list(map(nodes.__getitem__, writers))
        stamps = map(_tuple_new, repeat(Timestamp), zip(walls, hlcs, writer_ids))
        dots = map(_tuple_new, repeat(Dot), zip(writer_ids, counters))
        entries = tuple(map(_tuple_new, repeat(Entry), zip(keys, values, stamps, dots, repeat(False))))
    if deleted != []:
        entries = _tombstones(entries, deleted)
    if context is None:
        if extra == []:
            delta = Delta._implicit(entries, ())
        else:
            flat_extra = _flat_pairs(extra, n_nodes, "superseded", 1)
            superseded = tuple(_dot(nodes[flat_extra[i]], flat_extra[i + 1]) for i in range(0, len(flat_extra), 2))
            delta = Delta._implicit(entries, superseded)
    else:
        if extra != []:
            raise _remote("superseded", "superseded dots travel only in a delta without a context")
        ctx = _context(context, nodes, n_nodes, "context")
        for entry in entries:
            if not ctx.contains(entry.dot):
                raise _remote("delta", f"entry {entry.key!r} has dot {entry.dot.to_wire()} outside the delta's context")
        delta = Delta._explicit(entries, ctx)
    reply_context = None if reply is None else _context(reply, nodes, n_nodes, "reply_context")
    return _tuple_new(SyncDelta, (delta, reply_context))


def _tombstones(entries: tuple[Entry, ...], deleted: Any) -> tuple[Entry, ...]:
    """``entries`` with those at the positions in ``deleted`` made tombstones (their value must be nil)."""
    if type(deleted) is not list:
        raise _remote("deleted", f"expected a list of entry positions, got {type(deleted).__name__}")
    out = list(entries)
    for i, position in enumerate(deleted):
        if type(position) is not int or not 0 <= position < len(out):
            raise _remote(f"deleted[{i}]", f"{position!r} is not the position of an entry in this delta")
        entry = out[position]
        if entry[4]:
            raise _remote("deleted", f"names entry {position} twice")
        if entry.value is not None:
            raise _remote(f"entries[{position}].value", f"the tombstone of {entry.key!r} must have the value nil")
        out[position] = _entry(entry.key, None, entry.ts, entry.dot, True)
    return tuple(out)


def _columns_ok(walls: list, hlcs: list, writers: list, counters: list, values: list, n_nodes: int) -> bool:
    """Whether whole columns pass the checks of ``_check_entry``/``_check_value`` (numbers and plain values).

    Column-wise in C (``set(map(type, ...))``, ``min``, ``max``); False sends the caller
    entry by entry, for the exact error or for values that are containers.
    """
    if not (set(map(type, walls)) == set(map(type, hlcs)) == set(map(type, writers)) == set(map(type, counters)) == _INT):
        return False
    if min(walls) < 0 or max(walls) > MAX_INT or min(hlcs) < 0 or max(hlcs) > MAX_INT:
        return False
    if min(writers) < 0 or max(writers) >= n_nodes or min(counters) < 1 or max(counters) > MAX_INT:
        return False
    kinds = set(map(type, values))
    if not kinds <= _PLAIN:
        return False
    if float in kinds and not all(map(math.isfinite, [v for v in values if type(v) is float])):
        return False
    if int in kinds:
        ints = [v for v in values if type(v) is int]
        return _INT_MIN <= min(ints) and max(ints) <= _INT_MAX
    return True


def _check_entry(i: int, key: Any, wall: Any, hlc: Any, writer: Any, dot: Any, n_nodes: int) -> None:
    if type(key) is not str:
        raise _remote(f"entries[{i}].key", f"must be a string, got {type(key).__name__}")
    if type(wall) is not int or not 0 <= wall <= MAX_INT:
        raise _remote(f"entries[{i}].wall_ms", f"must be an int between 0 and {MAX_INT}, got {wall!r}")
    if type(hlc) is not int or not 0 <= hlc <= MAX_INT:
        raise _remote(f"entries[{i}].counter", f"must be an int between 0 and {MAX_INT}, got {hlc!r}")
    if type(writer) is not int or not 0 <= writer < n_nodes:
        raise _remote(f"entries[{i}].node", f"node index {writer!r} is not in the message's node table")
    if type(dot) is not int or not 1 <= dot <= MAX_INT:
        raise _remote(f"entries[{i}].dot", f"must be an int between 1 and {MAX_INT}, got {dot!r}")


def _check_value(i: int, key: str, values: list) -> None:
    """Check ``values[i]``; a container is replaced by its private canonical copy."""
    value = values[i]
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise _remote(f"entries[{i}].value", f"holds {value}; only finite numbers are allowed")
    elif kind is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise _remote(f"entries[{i}].value", "holds an integer outside the 64-bit range")
    elif kind not in _SCALARS:
        with wire_errors(f"entries[{i}].value"):
            values[i] = json_value(value, f"value of {key!r}")


def _explain_keys(keys: list) -> None:
    """Raise naming the first key that is not a string or repeats one before it."""
    seen = set()
    for i, key in enumerate(keys):
        if type(key) is not str:
            raise _remote(f"entries[{i}].key", f"must be a string, got {type(key).__name__}")
        if key in seen:
            raise _remote("entries", f"holds two entries for key {key!r}")
        seen.add(key)


def _decode_v1(obj: dict, kind: str) -> Message:
    with wire_errors(f"{kind} message"):
        check_fields(obj, _FIELDS_V1[kind])
    if kind == "digest":
        return SyncDigest(context=CausalContext.from_wire(obj["context"], where="context"))
    delta = Delta.from_wire(obj["delta"], where="delta")
    reply = obj["reply_context"]
    reply_context = None if reply is None else CausalContext.from_wire(reply, where="reply_context")
    return SyncDelta(delta=delta, reply_context=reply_context)
