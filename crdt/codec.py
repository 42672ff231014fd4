"""The wire form of sync messages: plain maps that msgpack (or JSON) carries as is.

    {"t": "digest", "v": 1, "context": {"vv": {node: n}, "cloud": [[node, n], ...]}}
    {"t": "delta",  "v": 1, "delta": {"entries": [[key, value, [wall_ms, counter, node], [node, n]], ...],
                                      "context": {...}},
                    "reply_context": {...} | None}

``decode_message`` trusts nothing: any malformed input raises
``RemoteProtocolError`` whose message names the offending field. Golden
vectors in ``tests/vectors/crdt/`` pin this format; change it only with a
new ``"v"``.
"""

from __future__ import annotations

from typing import Any

from ._checks import check_fields, wire_errors
from .causal_context import CausalContext
from .delta import Delta
from .errors import LocalProtocolError, RemoteProtocolError
from .messages import Message, SyncDelta, SyncDigest

WIRE_VERSION = 1
"""The ``"v"`` this node writes and the only one it reads."""

_FIELDS = {"digest": ("t", "v", "context"), "delta": ("t", "v", "delta", "reply_context")}


def encode_message(msg: Message) -> dict:
    """``msg`` as a plain map with a ``"t"`` type tag and ``"v"`` version."""
    if isinstance(msg, SyncDigest):
        return {"t": "digest", "v": WIRE_VERSION, "context": msg.context.to_wire()}
    if isinstance(msg, SyncDelta):
        reply = None if msg.reply_context is None else msg.reply_context.to_wire()
        return {"t": "delta", "v": WIRE_VERSION, "delta": msg.delta.to_wire(), "reply_context": reply}
    raise LocalProtocolError(f"crdt: cannot encode a {type(msg).__name__}; expected SyncDigest or SyncDelta")


def decode_message(obj: Any) -> Message:
    """Validate and read a message a peer sent; raises ``RemoteProtocolError`` naming what is wrong."""
    try:
        return _decode(obj)
    except RemoteProtocolError:
        raise
    except (LocalProtocolError, TypeError, ValueError, KeyError, RecursionError) as exc:
        # Every check above should have caught it first; refuse rather than crash either way.
        raise RemoteProtocolError(f"crdt: malformed sync message ({type(exc).__name__}: {exc})") from None


def _decode(obj: Any) -> Message:
    with wire_errors("message"):
        if not isinstance(obj, dict):
            raise LocalProtocolError(f"crdt: expected a map, got {type(obj).__name__}")
        if "v" not in obj:
            raise LocalProtocolError("crdt: missing field 'v' (the wire version)")
        version = obj["v"]
        if isinstance(version, bool) or not isinstance(version, int) or version != WIRE_VERSION:
            raise LocalProtocolError(f"crdt: wire version {version!r} is not supported; this node speaks {WIRE_VERSION}")
        if "t" not in obj:
            raise LocalProtocolError("crdt: missing field 't' (the message type)")
        kind = obj["t"]
        if not isinstance(kind, str) or kind not in _FIELDS:
            raise LocalProtocolError(f"crdt: unknown message type {kind!r}; expected 'digest' or 'delta'")
    with wire_errors(f"{kind} message"):
        check_fields(obj, _FIELDS[kind])
    if kind == "digest":
        return SyncDigest(context=CausalContext.from_wire(obj["context"], where="context"))
    delta = Delta.from_wire(obj["delta"], where="delta")
    reply = obj["reply_context"]
    reply_context = None if reply is None else CausalContext.from_wire(reply, where="reply_context")
    return SyncDelta(delta=delta, reply_context=reply_context)
