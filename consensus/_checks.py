"""Field checks shared by the state, the commands and the codec (private).

Constructors raise ``LocalProtocolError`` (we built something wrong); the codec
runs the same checks inside ``wire_errors`` so bytes from a peer surface as
``RemoteProtocolError``. One set of rules, two blame assignments (h11 draws the
same line).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator

from crdt.errors import LocalProtocolError, RemoteProtocolError

MAX_KEY_CHARS = 256
# libp2p peer ids as the mesh prints them: base58btc of a multihash. An ed25519 id
# ("12D3KooW…") is 52 characters, a sha256 one ("Qm…") 46, secp256k1 ("16Uiu2…") 53.
# Consensus may not import libp2p, so it checks the shape; mesh/host.py parses fully.
PEER_ID_CHARS = (40, 128)
_BASE58 = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
MAX_VALUE_DEPTH = 32
MAX_INT = 2**63 - 1
_MSGPACK_INT_MIN = -(2**63)
_MSGPACK_INT_MAX = 2**64 - 1


def check_key(value: Any, what: str) -> str:
    """``value`` as a key or name: a non-empty str of at most ``MAX_KEY_CHARS`` characters."""
    if not isinstance(value, str):
        raise LocalProtocolError(f"consensus: {what} must be a str, got {type(value).__name__}")
    if not 0 < len(value) <= MAX_KEY_CHARS:
        raise LocalProtocolError(
            f"consensus: {what} must be 1 to {MAX_KEY_CHARS} characters, got {len(value)}"
        )
    return value


def is_peer_id(value: Any) -> bool:
    """Whether ``value`` has the shape of a libp2p peer id (base58btc, 40 to 128 characters)."""
    return (
        isinstance(value, str)
        and PEER_ID_CHARS[0] <= len(value) <= PEER_ID_CHARS[1]
        and set(value) <= _BASE58
    )


def check_peer_id(value: Any, what: str = "peer id") -> str:
    """``value`` as a peer id (shape only: see ``PEER_ID_CHARS``)."""
    if not is_peer_id(value):
        shown = f"{value!r:.80}" if isinstance(value, str) else type(value).__name__
        raise LocalProtocolError(
            f"consensus: {what} must be a base58 libp2p peer id of {PEER_ID_CHARS[0]} to "
            f"{PEER_ID_CHARS[1]} characters (like 12D3KooW…), got {shown}"
        )
    return value


def check_name(value: Any, what: str) -> str:
    """``value`` as a human name: a str of at most ``MAX_KEY_CHARS`` printable characters, may be empty."""
    if not isinstance(value, str):
        raise LocalProtocolError(f"consensus: {what} must be a str, got {type(value).__name__}")
    if len(value) > MAX_KEY_CHARS or not value.isprintable():
        raise LocalProtocolError(
            f"consensus: {what} must be at most {MAX_KEY_CHARS} printable characters, got {value!r:.80}"
        )
    return value


def check_count(value: Any, what: str) -> int:
    """``value`` as an int in ``[0, MAX_INT]``; bools are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalProtocolError(f"consensus: {what} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_INT:
        raise LocalProtocolError(f"consensus: {what} must be between 0 and {MAX_INT}, got {value}")
    return int(value)


def check_addr(value: Any, what: str = "raft address") -> str:
    """``value`` as a Raft address ``"host:port"`` (what pysyncobj's TCPNode parses)."""
    check_key(value, what)
    host, sep, port = value.rpartition(":")
    if not sep or not host or any(c.isspace() for c in value):
        raise LocalProtocolError(f"consensus: {what} must look like 'host:port', got {value!r}")
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise LocalProtocolError(f"consensus: {what} needs a port from 1 to 65535, got {value!r}")
    return value


def plain_copy(value: Any, what: str) -> Any:
    """A private, canonical copy of msgpack-native data (tuples become lists).

    Allowed: None, bool, int (the range msgpack carries), finite float, str,
    bytes, list, and dict with str keys, nested at most ``MAX_VALUE_DEPTH`` deep.
    NaN is refused because NaN != NaN would make equal replicas compare unequal.
    The copy means no caller keeps a handle on a list inside the cluster state.
    """
    return _copy(value, what, 0)


def _copy(value: Any, what: str, depth: int) -> Any:
    if value is None or isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, int):
        if not _MSGPACK_INT_MIN <= value <= _MSGPACK_INT_MAX:
            raise LocalProtocolError(f"consensus: {what} holds an int msgpack cannot carry: {value}")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LocalProtocolError(f"consensus: {what} holds a non-finite float {value!r}")
        return value
    if depth >= MAX_VALUE_DEPTH:
        raise LocalProtocolError(f"consensus: {what} is nested deeper than {MAX_VALUE_DEPTH} levels")
    # Exact tuple only: msgpack's ExtType is a namedtuple and must not pass as a list.
    if isinstance(value, list) or type(value) is tuple:
        return [_copy(v, what, depth + 1) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise LocalProtocolError(
                    f"consensus: {what} has a dict key of type {type(k).__name__}; keys must be str"
                )
            out[k] = _copy(v, what, depth + 1)
        return out
    raise LocalProtocolError(
        f"consensus: {what} must be plain msgpack data (None, bool, int, float, str, bytes, "
        f"list, dict with str keys), found {type(value).__name__}"
    )


@contextmanager
def wire_errors(where: str) -> Iterator[None]:
    """Re-blame field errors found while reading bytes from a peer or a file."""
    try:
        yield
    except LocalProtocolError as exc:
        reason = str(exc).removeprefix("consensus: ")
        raise RemoteProtocolError(f"consensus: malformed {where}: {reason}") from None


def check_timeout(value: Any, *, allow_zero: bool) -> float:
    """``value`` as a finite timeout in seconds, > 0 (or >= 0 when ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LocalProtocolError(f"consensus: timeout must be finite seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise LocalProtocolError(f"consensus: timeout must be {bound} seconds, got {value!r}")
    return float(value)


MAX_REQUEST_CHARS = 64


def check_request(value: Any) -> str:
    """``value`` as a request id: a str of at most ``MAX_REQUEST_CHARS`` printable characters, may be empty."""
    if not isinstance(value, str) or len(value) > MAX_REQUEST_CHARS or not value.isprintable():
        raise LocalProtocolError(
            f"consensus: a request id must be a str of at most {MAX_REQUEST_CHARS} printable characters, "
            f"got {value!r:.80}"
        )
    return value


MAX_SECONDS = 1e12  # about 31,700 years of Unix time: far past any real clock, still exact in a float


def check_seconds(value: Any, what: str, *, positive: bool = False, maximum: float = MAX_SECONDS) -> float:
    """``value`` as finite seconds in ``[0, maximum]`` (``(0, maximum]`` when ``positive``), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LocalProtocolError(f"consensus: {what} must be finite seconds, got {value!r:.40}")
    if value < 0 or (positive and value == 0) or value > maximum:
        low = "above 0" if positive else "at least 0"
        raise LocalProtocolError(f"consensus: {what} must be {low} and at most {maximum:g} seconds, got {value!r}")
    return float(value)
