"""``LWWRegister``: one last-writer-wins value, ordered by hybrid-logical-clock timestamps.

Theory of operation (Shapiro et al. 2011, §3.2.1 "LWW-Register"; the clock is
Kulkarni et al.'s HLC, see ``hlc.py``): the register holds the value with the
highest ``Timestamp``. Timestamps are ordered by ``(wall_ms, counter, node)``,
so two writers never tie: the node id breaks what the clock cannot. An exact
tie is the same write seen twice (or a writer that reused a timestamp after
losing its state); the value's canonical JSON then decides, so every replica
still picks the same winner. Merge keeps the winner and joins the version
vectors: commutative, associative, idempotent.

``vv`` counts the writes of each node the register has seen. Invariant: every
write ``vv`` counts is the stored one or lost to it. So a peer whose vector
dominates ours needs nothing (``delta_since`` is then the empty register), and
otherwise the whole register is the delta — it is one value.

Values are immutable; ``set`` returns the delta and the new state is
``register.apply_delta(delta)`` (Almeida et al. 2018: ``X' = X ⊔ mδ(X)``).
"""

from __future__ import annotations

from typing import Any

from ._checks import check_fields, json_value, wire_errors
from ._dot_store import canonical, check_type
from .errors import LocalProtocolError
from .timestamp import Timestamp
from .version_vector import VersionVector


class LWWRegister:
    """An immutable last-writer-wins register; ``LWWRegister()`` is the empty one."""

    __slots__ = ("_value", "_ts", "_vv")

    def __init__(self, value: Any = None, ts: Timestamp | None = None, vv: VersionVector | None = None) -> None:
        if ts is not None and not isinstance(ts, Timestamp):
            raise LocalProtocolError(f"crdt: LWWRegister.ts must be a Timestamp or None, got {type(ts).__name__}")
        if ts is None and value is not None:
            raise LocalProtocolError("crdt: an LWWRegister value needs the timestamp it was written at")
        vv = VersionVector() if vv is None else vv
        if not isinstance(vv, VersionVector):
            raise LocalProtocolError(f"crdt: LWWRegister.vv must be a VersionVector, got {type(vv).__name__}")
        if ts is not None and not vv.get(ts.node):
            raise LocalProtocolError(
                f"crdt: LWWRegister written by {ts.node!r} has no write of {ts.node!r} in its version vector"
            )
        self._value = json_value(value, "LWWRegister value")
        self._ts = ts
        self._vv = vv

    @property
    def value(self) -> Any:
        """The winning value (None when empty); treat it as read-only."""
        return self._value

    @property
    def ts(self) -> Timestamp | None:
        """When the winning value was written, or None if the register was never written."""
        return self._ts

    @property
    def vv(self) -> VersionVector:
        """How many writes of each node this register has seen: what a peer passes to ``delta_since``."""
        return self._vv

    def set(self, value: Any, ts: Timestamp) -> LWWRegister:
        """The delta of writing ``value`` at ``ts`` (from the writer's clock, newer than the current value)."""
        if not isinstance(ts, Timestamp):
            raise LocalProtocolError(f"crdt: set() needs a Timestamp, got {type(ts).__name__}")
        if self._ts is not None and ts <= self._ts:
            raise LocalProtocolError(
                f"crdt: timestamp {ts.to_wire()} is not newer than the register's {self._ts.to_wire()}; "
                "observe every timestamp learned from peers with HybridLogicalClock.observe before writing"
            )
        return LWWRegister(value, ts, self._vv.increment(ts.node)[0])

    def beats(self, other: LWWRegister) -> bool:
        """Whether this register's value wins over ``other``'s (higher timestamp, then canonical value)."""
        if other._ts is None:
            return self._ts is not None
        if self._ts is None:
            return False
        if self._ts != other._ts:
            return self._ts > other._ts
        return canonical(self._value) > canonical(other._value)

    def merge(self, other: LWWRegister) -> LWWRegister:
        """The winner of both, with both version vectors joined."""
        check_type(other, LWWRegister, "merge")
        winner = other if other.beats(self) else self
        register = LWWRegister.__new__(LWWRegister)
        register._value, register._ts, register._vv = winner._value, winner._ts, self._vv.merge(other._vv)
        return register

    def apply_delta(self, delta: LWWRegister) -> LWWRegister:
        """This state joined with ``delta`` (deltas are registers too)."""
        check_type(delta, LWWRegister, "apply_delta")
        return self.merge(delta)

    def delta_since(self, since: VersionVector) -> LWWRegister:
        """The empty register if ``since`` has seen every write this one has, else this register."""
        if not isinstance(since, VersionVector):
            raise LocalProtocolError(f"crdt: delta_since() needs a VersionVector, got {type(since).__name__}")
        return LWWRegister() if since.dominates(self._vv) else self

    def __bool__(self) -> bool:
        return bool(self._vv)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LWWRegister):
            return NotImplemented
        return (
            self._ts == other._ts and self._vv == other._vv and canonical(self._value) == canonical(other._value)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LWWRegister({self._value!r}, {self._ts!r}, {self._vv!r})"

    def to_wire(self) -> dict:
        """``{"value": value, "ts": [wall_ms, counter, node] | None, "vv": {node: n}}``."""
        ts = None if self._ts is None else self._ts.to_wire()
        return {"value": self._value, "ts": ts, "vv": self._vv.to_wire()}

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "lww_register") -> LWWRegister:
        """Read ``{"value", "ts", "vv"}``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            fields = check_fields(obj, ("value", "ts", "vv"))
        ts = None if fields["ts"] is None else Timestamp.from_wire(fields["ts"], where=f"{where}.ts")
        vv = VersionVector.from_wire(fields["vv"], where=f"{where}.vv")
        with wire_errors(where):
            return cls(fields["value"], ts, vv)
