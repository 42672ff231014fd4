"""``Dot``: the identity of one write."""

from __future__ import annotations

from typing import Any, NamedTuple

from ._checks import check_int, check_node, check_sequence, wire_errors


class _DotFields(NamedTuple):
    node: str
    counter: int


class Dot(_DotFields):
    """The ``counter``-th write made by ``node`` (counters start at 1).

    Dots say *which* writes a replica has seen, independent of their
    timestamps; anti-entropy compares dots, last-writer-wins compares
    timestamps (the delta-CRDT paper's dot store, Almeida et al. 2018 §4).
    An immutable named tuple, ordered by ``(node, counter)``: building one is
    on the sync hot path, and a tuple is several times cheaper to build and
    compare than a frozen dataclass.
    """

    __slots__ = ()

    def __new__(cls, node: str, counter: int) -> Dot:
        check_node(node, "Dot.node")
        check_int(counter, "Dot.counter", minimum=1)
        return tuple.__new__(cls, (node, counter))

    @classmethod
    def _trusted(cls, node: str, counter: int) -> Dot:
        # Internal fast path for fields already checked (the codec's bulk validation).
        return tuple.__new__(cls, (node, counter))

    def to_wire(self) -> list:
        """``[node, counter]``."""
        return [self[0], self[1]]

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "dot") -> Dot:
        """Read ``[node, counter]``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            node, counter = check_sequence(obj, "[node, counter]", 2)
            return cls(node, counter)
