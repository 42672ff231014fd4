"""Field checks shared by the CRDT types (private).

Constructors raise ``LocalProtocolError`` (we built something wrong); the
``from_wire`` readers run the same checks inside ``wire_errors`` so a peer's
malformed data surfaces as ``RemoteProtocolError`` naming where it was found.
One set of rules, two blame assignments (h11 draws the same line).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator

from .errors import LocalProtocolError, RemoteProtocolError

MAX_INT = 2**63 - 1  # counters and clocks must survive msgpack and SQLite INTEGER
MAX_NODE_LEN = 256
MAX_VALUE_DEPTH = 64
_JSON_INT_MIN = -(2**63)
_JSON_INT_MAX = 2**64 - 1  # the widest integer msgpack carries


def check_int(value: Any, what: str, *, minimum: int = 0) -> int:
    """``value`` as an int in ``[minimum, MAX_INT]``; bools are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalProtocolError(f"crdt: {what} must be an int, got {type(value).__name__}")
    if not minimum <= value <= MAX_INT:
        raise LocalProtocolError(f"crdt: {what} must be between {minimum} and {MAX_INT}, got {value}")
    return int(value)


def check_node(value: Any, what: str = "node id") -> str:
    """``value`` as a node id: a non-empty string of at most ``MAX_NODE_LEN`` characters."""
    if not isinstance(value, str):
        raise LocalProtocolError(f"crdt: {what} must be a string, got {type(value).__name__}")
    if not 0 < len(value) <= MAX_NODE_LEN:
        raise LocalProtocolError(f"crdt: {what} must be 1 to {MAX_NODE_LEN} characters, got {len(value)}")
    return str(value)


def check_now(value: Any, what: str = "now") -> float:
    """``value`` as monotonic seconds: a finite int or float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LocalProtocolError(f"crdt: {what} must be finite monotonic seconds, got {value!r}")
    return value


def json_value(value: Any, what: str) -> Any:
    """A private, canonical copy of a JSON value (tuples become lists).

    Refuses anything JSON cannot carry faithfully: non-string dict keys, NaN and
    infinities (NaN != NaN would stop replicas from ever agreeing), integers
    msgpack cannot hold, and nesting deeper than ``MAX_VALUE_DEPTH``.
    """
    return _copy(value, what, 0)


def _copy(value: Any, what: str, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        if not _JSON_INT_MIN <= value <= _JSON_INT_MAX:
            raise LocalProtocolError(f"crdt: {what} holds an integer outside the 64-bit range")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LocalProtocolError(f"crdt: {what} holds {value}; only finite numbers are allowed")
        return float(value)
    if depth >= MAX_VALUE_DEPTH:
        raise LocalProtocolError(f"crdt: {what} is nested deeper than {MAX_VALUE_DEPTH} levels")
    if isinstance(value, (list, tuple)):
        return [_copy(item, what, depth + 1) for item in value]
    if isinstance(value, dict):
        copy = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise LocalProtocolError(f"crdt: {what} holds a dict key of type {type(key).__name__}; keys must be strings")
            copy[str(key)] = _copy(item, what, depth + 1)
        return copy
    raise LocalProtocolError(
        f"crdt: {what} holds a {type(value).__name__}; values must be JSON "
        "(None, bool, int, float, str, list, dict with string keys)"
    )


def check_sequence(obj: Any, shape: str, length: int | None = None) -> list | tuple:
    """``obj`` as a wire list (msgpack gives lists; tuples are accepted), optionally of ``length``.

    ``shape`` describes the expected form for the error, e.g. ``"[node, counter]"``.
    """
    if not isinstance(obj, (list, tuple)):
        raise LocalProtocolError(f"crdt: expected a list {shape}, got {type(obj).__name__}")
    if length is not None and len(obj) != length:
        raise LocalProtocolError(f"crdt: expected a list {shape} of {length} items, got {len(obj)} items")
    return obj


def check_fields(obj: Any, fields: tuple[str, ...]) -> dict:
    """``obj`` as a wire map holding exactly ``fields``."""
    if not isinstance(obj, dict):
        raise LocalProtocolError(f"crdt: expected a map with {', '.join(fields)}, got {type(obj).__name__}")
    for name in fields:
        if name not in obj:
            raise LocalProtocolError(f"crdt: missing field {name!r}")
    extra = [key for key in obj if key not in fields]
    if extra:
        names = ", ".join(sorted(repr(key) for key in extra))
        raise LocalProtocolError(f"crdt: unexpected field(s) {names}")
    return obj


@contextmanager
def wire_errors(where: str) -> Iterator[None]:
    """Re-raise our validation errors as the peer's fault, prefixed with where they were found."""
    try:
        yield
    except LocalProtocolError as exc:
        detail = str(exc).removeprefix("crdt: ")
        raise RemoteProtocolError(f"crdt: {where}: {detail}") from None
