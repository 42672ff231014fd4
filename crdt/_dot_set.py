"""``DotSet``: a mutable causal context for the hot paths of ``LWWMap`` and ``SyncCore`` (private).

``CausalContext`` is immutable, so every write or received push used to build
a new one (a new vector dict, a re-compacted cloud): three of those per
received message were most of the apply cost. A replica's own context and its
view of each peer change on every message, so they live here, mutably, and
``freeze()`` hands out an immutable ``CausalContext`` only when one travels
(digests, answers) — cached until the next change.

Same invariant as ``CausalContext``: a cloud counter of a node is always
above ``vv[node] + 1``; adding the counter that fills a gap folds the cloud.
Counters are trusted here: callers pass dots that were validated when built
or decoded.
"""

from __future__ import annotations

from operator import itemgetter

from .causal_context import CausalContext
from .dot import Dot
from .version_vector import VersionVector


_node_of = itemgetter(0)
_counter_of = itemgetter(1)


class DotSet:
    """A set of dots as ``vv`` (node -> contiguous top) plus ``cloud`` (node -> counters beyond a gap)."""

    __slots__ = ("vv", "cloud", "_frozen")

    def __init__(self) -> None:
        self.vv: dict[str, int] = {}
        self.cloud: dict[str, set[int]] = {}
        self._frozen: CausalContext | None = CausalContext()

    @classmethod
    def of(cls, context: CausalContext) -> DotSet:
        """A mutable copy of ``context``."""
        dots = cls()
        dots.vv = dict(context.vv)
        for dot in context.cloud:
            dots.cloud.setdefault(dot.node, set()).add(dot.counter)
        dots._frozen = context
        return dots

    def contains(self, node: str, counter: int) -> bool:
        """Whether the dot ``(node, counter)`` is in the set."""
        if counter <= self.vv.get(node, 0):
            return True
        above = self.cloud.get(node)
        return above is not None and counter in above

    def max_counter(self, node: str) -> int:
        """The highest counter of ``node`` in the set (0 if none)."""
        above = self.cloud.get(node)
        top = self.vv.get(node, 0)
        return max(top, max(above)) if above else top

    def add(self, node: str, counter: int) -> None:
        """Add the dot ``(node, counter)``."""
        top = self.vv.get(node, 0)
        if counter <= top:
            return
        above = self.cloud.get(node)
        if counter == top + 1:
            self.vv[node] = counter
            if above:
                self._fold(node, counter, above)
        elif above is None:
            self.cloud[node] = {counter}
        elif counter in above:
            return
        else:
            above.add(counter)
        self._frozen = None

    def add_all(self, dots: list[Dot] | tuple[Dot, ...]) -> None:
        """Add every dot; a run of one node's next counters (a push) costs one update."""
        if len(dots) > 4:
            node = dots[0][0]
            if all(map(node.__eq__, map(_node_of, dots))):
                counters = sorted(map(_counter_of, dots))
                top = self.vv.get(node, 0)
                if counters[0] <= top + 1 and counters == list(range(counters[0], counters[-1] + 1)):
                    if counters[-1] > top:
                        self.vv[node] = counters[-1]
                        above = self.cloud.get(node)
                        if above:
                            self._fold(node, counters[-1], above)
                        self._frozen = None
                    return
        for node, counter in dots:
            self.add(node, counter)

    def update(self, context: CausalContext) -> None:
        """Add every dot of ``context``."""
        vv = self.vv
        cloud = self.cloud
        changed = False
        for node, top in context.vv.items():
            if top > vv.get(node, 0):
                vv[node] = top
                changed = True
                above = cloud.get(node)
                if above:
                    self._fold(node, top, above)
        if changed:
            self._frozen = None
        for dot in context.cloud:
            self.add(dot.node, dot.counter)

    def within(self, other: DotSet) -> bool:
        """Whether every dot of this set is in ``other``."""
        for node, top in self.vv.items():
            floor = other.vv.get(node, 0)
            if top > floor:
                above = other.cloud.get(node)
                if not above or any(c not in above for c in range(floor + 1, top + 1)):
                    return False
        for node, above in self.cloud.items():
            for counter in above:
                if not other.contains(node, counter):
                    return False
        return True

    def above(self, floor: DotSet) -> CausalContext:
        """What a holder of ``floor`` needs of this set: each node whose top is higher, whole, and cloud dots it lacks.

        Joined into a context that already holds ``floor``, it gives the same
        as joining this whole set, in O(nodes that moved) instead of O(nodes).
        """
        vv = {node: top for node, top in self.vv.items() if top > floor.vv.get(node, 0)}
        cloud = frozenset(
            Dot(node, c) for node, above in self.cloud.items() for c in above if not floor.contains(node, c)
        )
        if not cloud:
            return CausalContext._trusted(VersionVector._trusted(vv), cloud)
        return CausalContext(VersionVector._trusted(vv), cloud)

    def freeze(self) -> CausalContext:
        """The set as an immutable ``CausalContext`` (cached until the next change)."""
        if self._frozen is None:
            cloud = frozenset(Dot(node, c) for node, above in self.cloud.items() for c in above)
            self._frozen = CausalContext._trusted(VersionVector._trusted(dict(self.vv)), cloud)
        return self._frozen

    def __bool__(self) -> bool:
        return bool(self.vv) or bool(self.cloud)

    def _fold(self, node: str, top: int, above: set[int]) -> None:
        """Move cloud counters of ``node`` that are now covered or contiguous into the vector."""
        for counter in [c for c in above if c <= top]:
            above.discard(counter)
        while top + 1 in above:
            top += 1
            above.discard(top)
        self.vv[node] = top
        if not above:
            del self.cloud[node]
