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
    deleted: bool = False


class Entry(_EntryFields):
    """The value of ``key`` as written at ``ts`` by the write ``dot``.

    A *tombstone* (``deleted=True``, ``value`` None) is the write that deleted
    the key: it wins and loses under last-writer-wins like any write, so a
    delete is never undone by an older write arriving late.

    ``value`` is any JSON value; the entry keeps its own canonical copy (tuples
    become lists), so later changes to the caller's object cannot leak in.
    Treat it as read-only. ``ts.node`` and ``dot.node`` both name the writer and
    must agree. An immutable named tuple built with keywords only; its hash
    leaves out ``value`` (which may be a list).
    """

    __slots__ = ()

    def __new__(cls, *, key: str, value: Any, ts: Timestamp, dot: Dot, deleted: bool = False) -> Entry:
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
        if deleted is not False and deleted is not True:
            raise LocalProtocolError(f"crdt: Entry.deleted must be a bool, got {type(deleted).__name__}")
        if deleted and value is not None:
            raise LocalProtocolError(f"crdt: the tombstone of {key!r} must have the value None")
        return tuple.__new__(cls, (key, json_value(value, f"value of {key!r}"), ts, dot, deleted))

    def __hash__(self) -> int:
        return hash((self[0], self[2], self[3], self[4]))

    @classmethod
    def _trusted(cls, key: str, value: Any, ts: Timestamp, dot: Dot, deleted: bool = False) -> Entry:
        # Internal fast path: fields already checked and ``value`` already a private canonical copy.
        return tuple.__new__(cls, (key, value, ts, dot, deleted))

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
        if self[4] != other[4]:
            return self[4]  # the same write seen as deleted and as live (a damaged peer): delete wins
        return json.dumps(self.value, sort_keys=True) > json.dumps(other.value, sort_keys=True)

    def to_wire(self) -> list:
        """``[key, value, ts, dot]``, and ``true`` after them for a tombstone."""
        wire = [self.key, self.value, self.ts.to_wire(), self.dot.to_wire()]
        return [*wire, True] if self[4] else wire

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "entry") -> Entry:
        """Read ``[key, value, ts, dot]`` (``[..., true]`` for a tombstone); raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            deleted = False
            if isinstance(obj, (list, tuple)) and len(obj) == 5:
                *obj, deleted = obj
            key, value, ts, dot = check_sequence(obj, "[key, value, ts, dot]", 4)
        ts = Timestamp.from_wire(ts, where=f"{where}.ts")
        dot = Dot.from_wire(dot, where=f"{where}.dot")
        with wire_errors(where):
            return cls(key=key, value=value, ts=ts, dot=dot, deleted=deleted)
