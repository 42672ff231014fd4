"""``Delta``: a fragment of an ``LWWMap`` state, the unit that travels between replicas."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ._checks import check_fields, check_sequence, wire_errors
from .causal_context import CausalContext
from .dot import Dot
from .entry import Entry
from .errors import LocalProtocolError


class Delta:
    """Entries (at most one per key) and the causal context they come with.

    Every entry's dot is in ``context``. The context may name more writes than
    it carries: writes that lost to an entry carried here, or — when the delta
    answers the receiver's own context (``LWWMap.delta_since``) — to entries
    the receiver already holds. Applying a delta is a join, so deltas may be
    applied in any order, any number of times.

    A delta made by ``of_writes`` (a push: new writes and the writes they
    superseded) keeps its context *implicit* — exactly those dots — so the hot
    path adds the dots one by one instead of building and merging a
    ``CausalContext``; ``context`` still builds it on demand. Immutable.
    """

    __slots__ = ("_entries", "_context", "_superseded", "_is_implicit")

    def __init__(self, *, entries: Iterable[Entry], context: CausalContext) -> None:
        if not isinstance(entries, (list, tuple)):
            raise LocalProtocolError(f"crdt: Delta.entries must be a tuple, got {type(entries).__name__}")
        if not isinstance(context, CausalContext):
            raise LocalProtocolError(f"crdt: Delta.context must be a CausalContext, got {type(context).__name__}")
        entries = tuple(entries)
        _check_entries(entries)
        for entry in entries:
            if not context.contains(entry.dot):
                raise LocalProtocolError(
                    f"crdt: delta entry {entry.key!r} has dot {entry.dot.to_wire()} outside the delta's context"
                )
        self._entries = entries
        self._context: CausalContext | None = context
        self._superseded: tuple[Dot, ...] = ()
        self._is_implicit = False

    @classmethod
    def of_writes(cls, entries: Iterable[Entry], superseded: Iterable[Dot] = ()) -> Delta:
        """A push: ``entries`` and the dots of writes they superseded; the context is exactly those dots."""
        entries = tuple(entries)
        _check_entries(entries)
        superseded = tuple(superseded)
        for dot in superseded:
            if not isinstance(dot, Dot):
                raise LocalProtocolError(f"crdt: superseded dots must be Dots, got a {type(dot).__name__}")
        return cls._implicit(entries, superseded)

    @classmethod
    def _implicit(cls, entries: tuple[Entry, ...], superseded: tuple[Dot, ...]) -> Delta:
        # Internal: fields already checked (by of_writes or the codec).
        delta = cls.__new__(cls)
        delta._entries = entries
        delta._context = None
        delta._superseded = superseded
        delta._is_implicit = True
        return delta

    @classmethod
    def _explicit(cls, entries: tuple[Entry, ...], context: CausalContext) -> Delta:
        # Internal: fields already checked (by the codec).
        delta = cls.__new__(cls)
        delta._entries = entries
        delta._context = context
        delta._superseded = ()
        delta._is_implicit = False
        return delta

    @property
    def entries(self) -> tuple[Entry, ...]:
        """The entries, at most one per key."""
        return self._entries

    @property
    def context(self) -> CausalContext:
        """The writes this delta accounts for."""
        if self._context is None:
            self._context = CausalContext.from_dots(self.dots())
        return self._context

    @property
    def implicit(self) -> bool:
        """Whether the context is just the entries' and superseded dots (a push from ``of_writes``)."""
        return self._is_implicit

    @property
    def superseded(self) -> tuple[Dot, ...]:
        """Dots of superseded writes an implicit delta accounts for (empty for explicit ones)."""
        return self._superseded

    def dots(self) -> Iterator[Dot]:
        """The entries' dots, then the superseded ones."""
        for entry in self._entries:
            yield entry.dot
        yield from self._superseded

    def __bool__(self) -> bool:
        return bool(self._entries) or bool(self._superseded) or (not self._is_implicit and bool(self._context))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Delta):
            return NotImplemented
        return self._entries == other._entries and self.context == other.context

    def __hash__(self) -> int:
        return hash((self._entries, self.context))

    def __repr__(self) -> str:
        return f"Delta(entries={self._entries!r}, context={self.context!r})"

    def to_wire(self) -> dict:
        """``{"entries": [entry, ...], "context": context}`` (the version-1 form)."""
        return {"entries": [entry.to_wire() for entry in self._entries], "context": self.context.to_wire()}

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


def _check_entries(entries: tuple) -> None:
    keys = set()
    for entry in entries:
        if not isinstance(entry, Entry):
            raise LocalProtocolError(f"crdt: Delta.entries holds a {type(entry).__name__}, not an Entry")
        if entry.key in keys:
            raise LocalProtocolError(f"crdt: delta holds two entries for key {entry.key!r}")
        keys.add(entry.key)
