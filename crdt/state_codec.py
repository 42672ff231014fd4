"""The wire form of the CRDT values (states and deltas alike): plain maps that msgpack or JSON carry.

    {"t": "g_counter",    "v": 1, "state": {node: count}}
    {"t": "pn_counter",   "v": 1, "state": {node: [p, n]}}
    {"t": "lww_register", "v": 1, "state": {"value": value, "ts": [wall_ms, counter, node] | None, "vv": {...}}}
    {"t": "or_set",       "v": 1, "state": {"dots": [[element, [node, n]], ...], "context": {...}}}
    {"t": "or_map",       "v": 1, "state": {"entries": [[key, value, ts, dot], ...], "context": {...}}}
    {"t": "time_series",  "v": 1, "state": {"window_ms": w, "max_count": n | None,
                                            "samples": [[t_ms, value, dot], ...], "context": {...}}}

Separate from the sync messages of ``codec.py`` (their ``"v"`` moves on its
own). ``decode_state`` trusts nothing: malformed input raises
``RemoteProtocolError`` naming the offending field, and collections are
bounded (``MAX_ITEMS``). Golden vectors in ``tests/vectors/crdt/`` pin this
format; change it only with a new ``"v"``.
"""

from __future__ import annotations

from typing import Any

from ._checks import check_fields, wire_errors
from .errors import LocalProtocolError, RemoteProtocolError
from .g_counter import GCounter
from .lww_register import LWWRegister
from .or_map import ORMap
from .or_set import ORSet
from .pn_counter import PNCounter
from .time_series import TimeSeriesWindow

STATE_WIRE_VERSION = 1
"""The ``"v"`` this node writes for CRDT values and the only one it reads."""

CRDTValue = GCounter | PNCounter | LWWRegister | ORSet | ORMap | TimeSeriesWindow
"""Any value ``encode_state`` carries."""

_TYPES: dict[str, type] = {
    "g_counter": GCounter,
    "pn_counter": PNCounter,
    "lww_register": LWWRegister,
    "or_set": ORSet,
    "or_map": ORMap,
    "time_series": TimeSeriesWindow,
}
_TAGS = {cls: tag for tag, cls in _TYPES.items()}


def encode_state(value: CRDTValue) -> dict:
    """``value`` as a plain map with a ``"t"`` type tag and ``"v"`` version."""
    tag = _TAGS.get(type(value))
    if tag is None:
        raise LocalProtocolError(f"crdt: cannot encode a {type(value).__name__}; expected one of {', '.join(_TYPES)}")
    return {"t": tag, "v": STATE_WIRE_VERSION, "state": value.to_wire()}


def decode_state(obj: Any) -> CRDTValue:
    """Validate and read a CRDT value a peer sent; raises ``RemoteProtocolError`` naming what is wrong."""
    try:
        with wire_errors("state"):
            if not isinstance(obj, dict):
                raise LocalProtocolError(f"crdt: expected a map, got {type(obj).__name__}")
            check_fields(obj, ("t", "v", "state"))
            version = obj["v"]
            if isinstance(version, bool) or not isinstance(version, int) or version != STATE_WIRE_VERSION:
                raise LocalProtocolError(
                    f"crdt: state wire version {version!r} is not supported; this node speaks {STATE_WIRE_VERSION}"
                )
            kind = obj["t"]
            if not isinstance(kind, str) or kind not in _TYPES:
                raise LocalProtocolError(f"crdt: unknown state type {kind!r}; expected one of {', '.join(_TYPES)}")
        return _TYPES[kind].from_wire(obj["state"], where=kind)
    except RemoteProtocolError:
        raise
    except (LocalProtocolError, TypeError, ValueError, KeyError, RecursionError) as exc:
        # Every check should have caught it first; refuse rather than crash either way.
        raise RemoteProtocolError(f"crdt: malformed state ({type(exc).__name__}: {exc})") from None
