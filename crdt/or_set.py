"""``ORSet``: an add-wins observed-remove set that keeps no tombstones (ORSWOT).

Theory of operation (Riak's ``riak_dt_orswot``; Almeida et al., "Delta State
Replicated Data Types", 2018, §7.1 "add-wins set"): the state is a map
dot -> element (every add that is still live) and a causal context of every
operation this replica has seen. An element is in the set while it has at
least one live dot.

- ``add(node, e)``: a fresh dot ``d`` of ``node``; the delta holds ``d -> e``
  and, in its context, ``d`` plus the dots of ``e`` this replica sees (the
  add supersedes them).
- ``remove(node, e)``: the delta holds no dots and a context naming the dots
  of ``e`` this replica sees, plus one fresh dot of ``node``.
- merge: the dot-store join (``_dot_store.join_dots``): a dot survives if both
  sides hold it or the other side never saw it. So a remove only kills the
  adds it observed; a concurrent add, whose dot the remover never saw,
  survives — *add wins*.

A removed dot lives on only in the causal context, which is a version vector
plus a cloud of out-of-order dots that folds back as gaps fill: the state's
size follows the live elements and the number of nodes, never the number of
removals.

Unlike the paper's ``rmv``, a remove takes a dot of its own. That makes the
context name every operation, so a peer whose context covers ours has seen
all of it and ``delta_since`` can answer "nothing". When the peer lacks
something, the answer is the whole live state and context: without
tombstones there is no smaller way to tell it which of the adds it has seen
were removed since (Riak's ORSWOT merges full states for the same reason).

Precondition of ``delta_since`` (found by probing, not yet handled): its
"nothing" answer is exact between replicas that are causally closed — built
from their own mutations, whole states and ``delta_since`` answers. A pushed
mutator delta applied *ahead of its causal past* registers the dots it
supersedes without what those superseded, so two replicas can hold equal
contexts and different live dots, which comparing contexts never repairs
(a whole-state merge does). A sync core must deliver these deltas in causal
order per source (the delta-intervals of Almeida et al. §6) or fall back to
whole states.

Values are immutable; a mutator returns the delta and the new state is
``s.apply_delta(delta)`` (Almeida et al.: ``X' = X ⊔ mδ(X)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ._checks import check_fields, check_node, check_sequence, wire_errors
from ._dot_store import CausalDotStore, check_size, check_type, join_dots, next_dot
from .causal_context import CausalContext
from .dot import Dot
from .errors import LocalProtocolError

MAX_ELEMENT_LEN = 1024
"""The longest element (a tag, a device id) in characters."""


def _check_element(element: Any) -> str:
    if not isinstance(element, str):
        raise LocalProtocolError(f"crdt: ORSet elements must be strings, got {type(element).__name__}")
    if len(element) > MAX_ELEMENT_LEN:
        raise LocalProtocolError(f"crdt: ORSet element of {len(element)} characters; at most {MAX_ELEMENT_LEN}")
    return str(element)


class ORSet(CausalDotStore):
    """An immutable add-wins set of strings; ``ORSet()`` is the empty one."""

    __slots__ = ("_dots", "_context")

    def __init__(self, dots: Mapping[Dot, str] | None = None, context: CausalContext | None = None) -> None:
        context = CausalContext() if context is None else context
        if not isinstance(context, CausalContext):
            raise LocalProtocolError(f"crdt: ORSet.context must be a CausalContext, got {type(context).__name__}")
        clean: dict[Dot, str] = {}
        if dots is not None:
            if not isinstance(dots, Mapping):
                raise LocalProtocolError(f"crdt: ORSet.dots must be a mapping dot -> element, got {type(dots).__name__}")
            check_size(dots, "ORSet")
            for dot, element in dots.items():
                if not isinstance(dot, Dot):
                    raise LocalProtocolError(f"crdt: ORSet.dots is keyed by a {type(dot).__name__}, not a Dot")
                if not context.contains(dot):
                    raise LocalProtocolError(f"crdt: ORSet dot {dot.to_wire()} is outside the set's context")
                clean[dot] = _check_element(element)
        self._dots = clean
        self._context = context

    @property
    def context(self) -> CausalContext:
        """Every operation this replica has seen: what a peer passes to ``delta_since``."""
        return self._context

    @property
    def dots(self) -> dict[Dot, str]:
        """A copy of the live adds, dot -> element."""
        return dict(self._dots)

    @property
    def elements(self) -> frozenset[str]:
        """The set's members."""
        return frozenset(self._dots.values())

    def __contains__(self, element: object) -> bool:
        return element in self._dots.values()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.elements))

    def __len__(self) -> int:
        return len(self.elements)

    def _dots_of(self, element: str) -> list[Dot]:
        return [dot for dot, held in self._dots.items() if held == element]

    def add(self, node: str, element: str) -> ORSet:
        """The delta of ``node`` adding ``element``."""
        element = _check_element(element)
        dot = next_dot(self._context, check_node(node))
        return ORSet({dot: element}, CausalContext.from_dots([dot, *self._dots_of(element)]))

    def remove(self, node: str, element: str) -> ORSet:
        """The delta of ``node`` removing ``element`` as this replica sees it (empty if absent)."""
        element = _check_element(element)
        seen = self._dots_of(element)
        if not seen:
            return ORSet()
        return ORSet({}, CausalContext.from_dots([next_dot(self._context, check_node(node)), *seen]))

    def merge(self, other: ORSet) -> ORSet:
        """The dot-store join of both sets (see the module docstring)."""
        check_type(other, ORSet, "merge")
        out = ORSet.__new__(ORSet)
        out._dots = join_dots(self._dots, self._context, other._dots, other._context, max)
        out._context = self._context.merge(other._context)
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ORSet):
            return NotImplemented
        return self._dots == other._dots and self._context == other._context

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ORSet({sorted(self.elements)!r}, {self._context!r})"

    def to_wire(self) -> dict:
        """``{"dots": [[element, [node, counter]], ...], "context": context}``, sorted by dot."""
        dots = [[self._dots[dot], dot.to_wire()] for dot in sorted(self._dots)]
        return {"dots": dots, "context": self._context.to_wire()}

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "or_set") -> ORSet:
        """Read ``{"dots", "context"}``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            fields = check_fields(obj, ("dots", "context"))
            items = check_sequence(fields["dots"], "of [element, dot]")
            check_size(items, f"{where}.dots")
        dots: dict[Dot, str] = {}
        for i, item in enumerate(items):
            with wire_errors(f"{where}.dots[{i}]"):
                element, dot = check_sequence(item, "[element, dot]", 2)
            dot = Dot.from_wire(dot, where=f"{where}.dots[{i}].dot")
            with wire_errors(f"{where}.dots[{i}]"):
                if dot in dots:
                    raise LocalProtocolError(f"crdt: dot {dot.to_wire()} appears twice")
                dots[dot] = _check_element(element)
        context = CausalContext.from_wire(fields["context"], where=f"{where}.context")
        with wire_errors(where):
            return cls(dots, context)
