"""``Timestamp``: one reading of a hybrid logical clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._checks import check_int, check_node, check_sequence, wire_errors


@dataclass(frozen=True, slots=True, order=True)
class Timestamp:
    """A hybrid-logical-clock timestamp, totally ordered by ``(wall_ms, counter, node)``.

    ``wall_ms`` tracks physical time, ``counter`` orders events within one
    millisecond (and across a backwards clock jump), and ``node`` breaks the
    remaining ties, so two different writers never produce equal timestamps.
    That is what lets last-writer-wins pick the same winner everywhere.
    """

    wall_ms: int
    counter: int
    node: str

    def __post_init__(self) -> None:
        check_int(self.wall_ms, "Timestamp.wall_ms")
        check_int(self.counter, "Timestamp.counter")
        check_node(self.node, "Timestamp.node")

    def to_wire(self) -> list:
        """``[wall_ms, counter, node]``."""
        return [self.wall_ms, self.counter, self.node]

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "timestamp") -> Timestamp:
        """Read ``[wall_ms, counter, node]``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            wall_ms, counter, node = check_sequence(obj, "[wall_ms, counter, node]", 3)
            return cls(wall_ms, counter, node)
