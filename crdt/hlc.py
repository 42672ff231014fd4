"""``HybridLogicalClock``: timestamps that follow wall time but never go backwards.

Theory of operation (Kulkarni et al., "Logical Physical Clocks", 2014, Fig. 5):
the clock holds ``l``, the largest wall time it has heard of, and ``c``, a
counter that orders events sharing that ``l``.

- local event / send: ``l = max(l, pt)``; ``c = c + 1`` if ``l`` did not move,
  else ``0``.
- receive ``(l_m, c_m)``: ``l = max(l, l_m, pt)``; ``c`` becomes
  ``max(c, c_m) + 1``, ``c + 1``, ``c_m + 1`` or ``0`` depending on which of the
  three supplied the new ``l``.

Invariants: every ``now()`` is strictly greater than every timestamp this clock
returned or observed before, whatever the wall clock does (a backwards jump
only makes the counter climb until wall time catches up); ``l`` never runs
ahead of the largest wall time seen anywhere.

Wall time is an argument: the clock never reads one itself.
"""

from __future__ import annotations

from ._checks import check_int, check_node
from .errors import LocalProtocolError
from .timestamp import Timestamp


class HybridLogicalClock:
    """A node's hybrid logical clock; restore it with ``HybridLogicalClock(node, last=ts)``."""

    __slots__ = ("_node", "_last")

    def __init__(self, node: str, *, last: Timestamp | None = None) -> None:
        self._node = check_node(node)
        if last is not None:
            if not isinstance(last, Timestamp):
                raise LocalProtocolError(f"crdt: last must be a Timestamp, got {type(last).__name__}")
            if last.node != node:
                raise LocalProtocolError(
                    f"crdt: cannot restore {node!r}'s clock from a timestamp of {last.node!r}; "
                    "persist and restore each node's own HybridLogicalClock.last"
                )
        self._last = last

    @property
    def node(self) -> str:
        """The node whose clock this is."""
        return self._node

    @property
    def last(self) -> Timestamp | None:
        """The clock's current reading (persist it to restore the clock), or None if never used."""
        return self._last

    def now(self, wall_ms: int) -> Timestamp:
        """A timestamp for a local event, greater than every earlier one."""
        wall = check_int(wall_ms, "wall_ms")
        last = self._last
        if last is None or wall > last.wall_ms:
            stamp = Timestamp(wall, 0, self._node)
        else:
            stamp = Timestamp(last.wall_ms, last.counter + 1, self._node)
        self._last = stamp
        return stamp

    def observe(self, ts: Timestamp, wall_ms: int) -> None:
        """Fold in a timestamp received from elsewhere (the HLC receive rule)."""
        if not isinstance(ts, Timestamp):
            raise LocalProtocolError(f"crdt: observe() needs a Timestamp, got {type(ts).__name__}")
        wall = check_int(wall_ms, "wall_ms")
        if self._last is None:
            old_l, old_c = -1, 0
        else:
            old_l, old_c = self._last.wall_ms, self._last.counter
        new_l = max(old_l, ts.wall_ms, wall)
        if new_l == old_l == ts.wall_ms:
            new_c = max(old_c, ts.counter) + 1
        elif new_l == old_l:
            new_c = old_c + 1
        elif new_l == ts.wall_ms:
            new_c = ts.counter + 1
        else:
            new_c = 0
        self._last = Timestamp(new_l, new_c, self._node)

    def __repr__(self) -> str:
        return f"HybridLogicalClock({self._node!r}, last={self._last!r})"
