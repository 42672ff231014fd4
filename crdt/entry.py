"""``Entry``: one key's last-writer-wins register value."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from ._checks import check_sequence, json_value, wire_errors
from .dot import Dot
from .errors import LocalProtocolError
from .timestamp import Timestamp


class _EntryFields(NamedTuple):
    key: str
    value: Any
    ts: Timestamp
    dot: Dot


class Entry(_EntryFields):
    """The value of ``key`` as written at ``ts`` by the write ``dot``.

    ``value`` is any JSON value; the entry keeps its own canonical copy (tuples
    become lists), so later changes to the caller's object cannot leak in.
    Treat it as read-only. ``ts.node`` and ``dot.node`` both name the writer and
    must agree. An immutable named tuple built with keywords only; its hash
    leaves out ``value`` (which may be a list).
    """

    __slots__ = ()

    def __new__(cls, *, key: str, value: Any, ts: Timestamp, dot: Dot) -> Entry:
        if not isinstance(key, str):
            raise LocalProtocolError(f"crdt: Entry.key must be a string, got {type(key).__name__}")
        if not isinstance(ts, Timestamp):
            raise LocalProtocolError(f"crdt: Entry.ts must be a Timestamp, got {type(ts).__name__}")
        if not isinstance(dot, Dot):
            raise LocalProtocolError(f"crdt: Entry.dot must be a Dot, got {type(dot).__name__}")
        if ts.node != dot.node:
            raise LocalProtocolError(
                f"crdt: entry {key!r} is stamped by {ts.node!r} but its dot belongs to "
                f"{dot.node!r}; both must name the writer"
            )
        return tuple.__new__(cls, (key, json_value(value, f"value of {key!r}"), ts, dot))

    def __hash__(self) -> int:
        return hash((self[0], self[2], self[3]))

    @classmethod
    def _trusted(cls, key: str, value: Any, ts: Timestamp, dot: Dot) -> Entry:
        # Internal fast path: fields already checked and ``value`` already a private canonical copy.
        return tuple.__new__(cls, (key, value, ts, dot))

    def beats(self, other: Entry) -> bool:
        """Whether this entry wins over ``other`` under last-writer-wins (the higher timestamp).

        Timestamps of different writers never tie (the node is part of them).
        An exact tie means the same write seen twice — or a peer that reused a
        timestamp after losing its state; the dot and then the value decide, so
        every replica still picks the same winner.
        """
        mine, theirs = self[2], other[2]
        if mine != theirs:
            return mine > theirs
        if self.dot != other.dot:
            return self.dot > other.dot
        return json.dumps(self.value, sort_keys=True) > json.dumps(other.value, sort_keys=True)

    def to_wire(self) -> list:
        """``[key, value, ts, dot]``."""
        return [self.key, self.value, self.ts.to_wire(), self.dot.to_wire()]

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "entry") -> Entry:
        """Read ``[key, value, ts, dot]``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            key, value, ts, dot = check_sequence(obj, "[key, value, ts, dot]", 4)
        ts = Timestamp.from_wire(ts, where=f"{where}.ts")
        dot = Dot.from_wire(dot, where=f"{where}.dot")
        with wire_errors(where):
            return cls(key=key, value=value, ts=ts, dot=dot)
