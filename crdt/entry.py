"""``Entry``: one key's last-writer-wins register value."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ._checks import check_sequence, json_value, wire_errors
from .dot import Dot
from .errors import LocalProtocolError
from .timestamp import Timestamp


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """The value of ``key`` as written at ``ts`` by the write ``dot``.

    ``value`` is any JSON value; the entry keeps its own canonical copy (tuples
    become lists), so later changes to the caller's object cannot leak in.
    Treat it as read-only. ``ts.node`` and ``dot.node`` both name the writer and
    must agree.
    """

    key: str
    value: Any = field(hash=False)
    ts: Timestamp
    dot: Dot

    def __post_init__(self) -> None:
        if not isinstance(self.key, str):
            raise LocalProtocolError(f"crdt: Entry.key must be a string, got {type(self.key).__name__}")
        if not isinstance(self.ts, Timestamp):
            raise LocalProtocolError(f"crdt: Entry.ts must be a Timestamp, got {type(self.ts).__name__}")
        if not isinstance(self.dot, Dot):
            raise LocalProtocolError(f"crdt: Entry.dot must be a Dot, got {type(self.dot).__name__}")
        if self.ts.node != self.dot.node:
            raise LocalProtocolError(
                f"crdt: entry {self.key!r} is stamped by {self.ts.node!r} but its dot belongs to "
                f"{self.dot.node!r}; both must name the writer"
            )
        object.__setattr__(self, "value", json_value(self.value, f"value of {self.key!r}"))

    def beats(self, other: Entry) -> bool:
        """Whether this entry wins over ``other`` under last-writer-wins (the higher timestamp).

        Timestamps of different writers never tie (the node is part of them).
        An exact tie means the same write seen twice — or a peer that reused a
        timestamp after losing its state; the dot and then the value decide, so
        every replica still picks the same winner.
        """
        if self.ts != other.ts:
            return self.ts > other.ts
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
