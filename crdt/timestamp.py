"""``Timestamp``: one reading of a hybrid logical clock."""

from __future__ import annotations

from typing import Any, NamedTuple

from ._checks import check_int, check_node, check_sequence, wire_errors


class _TimestampFields(NamedTuple):
    wall_ms: int
    counter: int
    node: str


class Timestamp(_TimestampFields):
    """A hybrid-logical-clock timestamp, totally ordered by ``(wall_ms, counter, node)``.

    ``wall_ms`` tracks physical time, ``counter`` orders events within one
    millisecond (and across a backwards clock jump), and ``node`` breaks the
    remaining ties, so two different writers never produce equal timestamps.
    That is what lets last-writer-wins pick the same winner everywhere.
    An immutable named tuple (cheap to build and compare on the sync hot path).
    """

    __slots__ = ()

    def __new__(cls, wall_ms: int, counter: int, node: str) -> Timestamp:
        check_int(wall_ms, "Timestamp.wall_ms")
        check_int(counter, "Timestamp.counter")
        check_node(node, "Timestamp.node")
        return tuple.__new__(cls, (wall_ms, counter, node))

    @classmethod
    def _trusted(cls, wall_ms: int, counter: int, node: str) -> Timestamp:
        # Internal fast path for fields already checked (the codec's bulk validation).
        return tuple.__new__(cls, (wall_ms, counter, node))

    def to_wire(self) -> list:
        """``[wall_ms, counter, node]``."""
        return [self[0], self[1], self[2]]

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "timestamp") -> Timestamp:
        """Read ``[wall_ms, counter, node]``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            wall_ms, counter, node = check_sequence(obj, "[wall_ms, counter, node]", 3)
            return cls(wall_ms, counter, node)
