"""Frames and envelopes of the mesh RPC protocol (sans-IO).

A frame is a 4-byte big-endian length followed by that many bytes of msgpack.
py-libp2p's own ``read_exactly`` gives up after 100 partial reads, so frames are
reassembled here from whatever chunks the stream hands us.

Every frame holds one envelope, a msgpack map:

* request: ``{"k": "q", "id": int, "m": method, "b": body}``
* reply:   ``{"k": "r", "id": int, "ok": True, "b": body}`` or
  ``{"k": "r", "id": int, "ok": False, "e": message}``
* note (one-way, no reply): ``{"k": "n", "m": method, "b": body}``

Anything else from a peer raises ``RemoteProtocolError``; the stream that
carried it is closed and the node keeps running.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from crdt.errors import LocalProtocolError, RemoteProtocolError

PROTOCOL_ID = "/meshnode/rpc/1.0.0"
MAX_FRAME = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")
MAX_METHOD_LEN = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A call that expects a reply with the same id."""

    id: int
    method: str
    body: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """The answer to a request: a body, or an error message."""

    id: int
    ok: bool
    body: Any = None
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """A one-way message."""

    method: str
    body: Any


Envelope = Request | Reply | Note


def pack(obj: Any) -> bytes:
    """msgpack with bin types kept apart from strings."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """Strict msgpack decode: raises RemoteProtocolError on anything malformed."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise RemoteProtocolError(f"mesh: frame is not valid msgpack ({exc})") from exc


def encode_envelope(env: Envelope, max_frame: int = MAX_FRAME) -> bytes:
    """One frame holding ``env``; refuses frames over ``max_frame``."""
    if isinstance(env, Request):
        obj = {"k": "q", "id": env.id, "m": env.method, "b": env.body}
    elif isinstance(env, Reply):
        obj = {"k": "r", "id": env.id, "ok": env.ok}
        if env.ok:
            obj["b"] = env.body
        else:
            obj["e"] = env.error
    elif isinstance(env, Note):
        obj = {"k": "n", "m": env.method, "b": env.body}
    else:
        raise LocalProtocolError(f"mesh: cannot encode {type(env).__name__} as an envelope")
    body = pack(obj)
    if len(body) > max_frame:
        raise LocalProtocolError(
            f"mesh: message of {len(body)} bytes exceeds the {max_frame}-byte frame limit"
        )
    return _HEADER.pack(len(body)) + body


def _method(obj: dict) -> str:
    method = obj.get("m")
    if not isinstance(method, str) or not method or len(method) > MAX_METHOD_LEN:
        raise RemoteProtocolError("mesh: envelope has no valid method name")
    return method


def decode_envelope(obj: Any) -> Envelope:
    """Validate a decoded frame and build its envelope."""
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"mesh: envelope must be a map, got {type(obj).__name__}")
    kind = obj.get("k")
    if kind == "n":
        return Note(method=_method(obj), body=obj.get("b"))
    ident = obj.get("id")
    if not isinstance(ident, int) or isinstance(ident, bool) or ident < 0:
        raise RemoteProtocolError("mesh: envelope has no valid request id")
    if kind == "q":
        return Request(id=ident, method=_method(obj), body=obj.get("b"))
    if kind == "r":
        ok = obj.get("ok")
        if ok is True:
            return Reply(id=ident, ok=True, body=obj.get("b"))
        if ok is False:
            error = obj.get("e")
            if not isinstance(error, str):
                raise RemoteProtocolError("mesh: error reply carries no message")
            return Reply(id=ident, ok=False, error=error)
        raise RemoteProtocolError("mesh: reply has no ok flag")
    raise RemoteProtocolError(f"mesh: unknown envelope kind {kind!r}")


class FrameDecoder:
    """Reassembles length-prefixed frames from arbitrary chunks."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[Envelope]:
        """Add bytes; return every complete envelope they finish."""
        self._buf += data
        out: list[Envelope] = []
        while len(self._buf) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buf)
            if length > self._max:
                raise RemoteProtocolError(
                    f"mesh: peer announced a {length}-byte frame, over the {self._max}-byte limit"
                )
            end = _HEADER.size + length
            if len(self._buf) < end:
                break
            payload = bytes(self._buf[_HEADER.size : end])
            del self._buf[:end]
            out.append(decode_envelope(unpack(payload)))
        return out

    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf)
