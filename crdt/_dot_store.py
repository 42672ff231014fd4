"""Pieces shared by the dot-store types, ``ORSet`` and ``ORMap`` (private), and by the newer types' wire readers.

The dot-store join (Almeida et al., "Delta State Replicated Data Types", 2018,
§4.4, the ``DotFun``/``DotMap`` join): each side holds live dots and a causal
context; a dot survives the join if both sides hold it, or one side holds it
and the other has never seen it. A dot one side has seen but no longer holds
was removed there, and stays removed. Nothing but the (compact) context
remembers the removal, so removals leave no tombstones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .causal_context import CausalContext
from .dot import Dot
from .errors import LocalProtocolError
from .version_vector import VersionVector

P = TypeVar("P")

MAX_ITEMS = 65_536
"""The most items a decoded collection may hold; a peer's frame may not make us build more."""


def join_dots(
    a: Mapping[Dot, P], ctx_a: CausalContext, b: Mapping[Dot, P], ctx_b: CausalContext, pick: Callable[[P, P], P]
) -> dict[Dot, P]:
    """The dot-store join; ``pick`` chooses deterministically when both sides hold a dot."""
    out: dict[Dot, P] = {}
    for dot, payload in a.items():
        if dot in b:
            out[dot] = pick(payload, b[dot])
        elif not ctx_b.contains(dot):
            out[dot] = payload
    for dot, payload in b.items():
        if dot not in a and not ctx_a.contains(dot):
            out[dot] = payload
    return out


def next_dot(context: CausalContext, node: str) -> Dot:
    """The dot of ``node``'s next operation on a replica whose context is ``context``."""
    return Dot(node, context.max_counter(node) + 1)


def as_context(since: Any) -> CausalContext:
    """``since`` (a ``VersionVector`` or ``CausalContext``) as a causal context."""
    if isinstance(since, VersionVector):
        return CausalContext(since)
    if not isinstance(since, CausalContext):
        raise LocalProtocolError(
            f"crdt: delta_since() needs a VersionVector or CausalContext, got {type(since).__name__}"
        )
    return since


def canonical(value: Any) -> str:
    """A JSON value's canonical text: what breaks exact ties between otherwise equal writes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def check_size(items: Any, what: str) -> None:
    """Refuse a collection of more than ``MAX_ITEMS`` items."""
    if len(items) > MAX_ITEMS:
        raise LocalProtocolError(f"crdt: {what} holds {len(items)} items; at most {MAX_ITEMS} are allowed")


def check_type(value: Any, cls: type, verb: str) -> None:
    """Refuse ``value`` unless it is a ``cls`` (merge and apply_delta of one type only)."""
    if not isinstance(value, cls):
        raise LocalProtocolError(f"crdt: {verb}() needs a {cls.__name__}, got {type(value).__name__}")


class CausalDotStore:
    """What ``ORSet`` and ``ORMap`` share beyond ``join_dots``: delta handling over one causal context.

    A subclass keeps its causal context in ``_context``, builds an empty value with ``type(self)()``
    and defines ``merge``; deltas are values of the same type.
    """

    __slots__ = ()
    _context: CausalContext

    def merge(self, other):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def apply_delta(self, delta):
        """This state joined with ``delta``."""
        check_type(delta, type(self), "apply_delta")
        return self.merge(delta)

    def delta_since(self, since: VersionVector | CausalContext):
        """Nothing if ``since`` covers this context, else the whole state (see the subclass's docstring)."""
        if self._context.issubset(as_context(since)):
            return type(self)()
        return self

    def __bool__(self) -> bool:
        return bool(self._context)
