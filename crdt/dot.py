"""``Dot``: the identity of one write."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._checks import check_int, check_node, check_sequence, wire_errors


@dataclass(frozen=True, slots=True, order=True)
class Dot:
    """The ``counter``-th write made by ``node`` (counters start at 1).

    Dots say *which* writes a replica has seen, independent of their
    timestamps; anti-entropy compares dots, last-writer-wins compares
    timestamps (the delta-CRDT paper's dot store, Almeida et al. 2018 §4).
    """

    node: str
    counter: int

    def __post_init__(self) -> None:
        check_node(self.node, "Dot.node")
        check_int(self.counter, "Dot.counter", minimum=1)

    def to_wire(self) -> list:
        """``[node, counter]``."""
        return [self.node, self.counter]

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "dot") -> Dot:
        """Read ``[node, counter]``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            node, counter = check_sequence(obj, "[node, counter]", 2)
            return cls(node, counter)
