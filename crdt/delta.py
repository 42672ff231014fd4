"""``Delta``: a fragment of an ``LWWMap`` state, the unit that travels between replicas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._checks import check_fields, check_sequence, wire_errors
from .causal_context import CausalContext
from .entry import Entry
from .errors import LocalProtocolError


@dataclass(frozen=True, slots=True, kw_only=True)
class Delta:
    """Entries (at most one per key) and the causal context they come with.

    Every entry's dot is in ``context``. The context may name more writes than
    it carries: writes that lost to an entry carried here, or — when the delta
    answers the receiver's own context (``LWWMap.delta_since``) — to entries
    the receiver already holds. Applying a delta is a join, so deltas may be
    applied in any order, any number of times.
    """

    entries: tuple[Entry, ...]
    context: CausalContext

    def __post_init__(self) -> None:
        if not isinstance(self.entries, tuple):
            if not isinstance(self.entries, (list, tuple)):
                raise LocalProtocolError(f"crdt: Delta.entries must be a tuple, got {type(self.entries).__name__}")
            object.__setattr__(self, "entries", tuple(self.entries))
        if not isinstance(self.context, CausalContext):
            raise LocalProtocolError(f"crdt: Delta.context must be a CausalContext, got {type(self.context).__name__}")
        keys = set()
        for entry in self.entries:
            if not isinstance(entry, Entry):
                raise LocalProtocolError(f"crdt: Delta.entries holds a {type(entry).__name__}, not an Entry")
            if entry.key in keys:
                raise LocalProtocolError(f"crdt: delta holds two entries for key {entry.key!r}")
            keys.add(entry.key)
            if not self.context.contains(entry.dot):
                raise LocalProtocolError(
                    f"crdt: delta entry {entry.key!r} has dot {entry.dot.to_wire()} outside the delta's context"
                )

    def __bool__(self) -> bool:
        return bool(self.entries) or bool(self.context)

    def to_wire(self) -> dict:
        """``{"entries": [entry, ...], "context": context}``."""
        return {"entries": [entry.to_wire() for entry in self.entries], "context": self.context.to_wire()}

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "delta") -> Delta:
        """Read ``{"entries": ..., "context": ...}``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            fields = check_fields(obj, ("entries", "context"))
            items = check_sequence(fields["entries"], "of entries")
        entries = tuple(Entry.from_wire(item, where=f"{where}.entries[{i}]") for i, item in enumerate(items))
        context = CausalContext.from_wire(fields["context"], where=f"{where}.context")
        with wire_errors(where):
            return cls(entries=entries, context=context)
