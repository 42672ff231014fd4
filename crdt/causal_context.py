"""``CausalContext``: the set of writes a replica has seen, stored compactly.

A causal context is a set of dots. Most of it is contiguous per node and fits
in a ``VersionVector``; the rest — writes that arrived ahead of a gap, say a
push that overtook a lost one — sits in the *dot cloud*. Adding the dot that
fills a gap folds the cloud back into the vector (Almeida et al., "Delta State
Replicated Data Types", 2018, §4.2 "compact causal context").

Invariant: every cloud dot lies above its node's vector entry and is not the
next one (``counter > vv[node] + 1``), so each set of dots has exactly one
representation and ``==`` is set equality. Instances are immutable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from ._checks import check_fields, check_sequence, wire_errors
from .dot import Dot
from .errors import LocalProtocolError
from .version_vector import VersionVector


def _compact(counters: dict[str, int], cloud: Iterable[Dot]) -> frozenset[Dot]:
    """Fold contiguous cloud dots into ``counters`` (in place); return what stays in the cloud."""
    above: dict[str, list[int]] = {}
    for dot in cloud:
        if dot.counter > counters.get(dot.node, 0):
            above.setdefault(dot.node, []).append(dot.counter)
    rest: list[Dot] = []
    for node, found in above.items():
        found.sort()
        top = counters.get(node, 0)
        i = 0
        while i < len(found) and found[i] <= top + 1:
            top = max(top, found[i])
            i += 1
        if top:
            counters[node] = top
        rest.extend(Dot(node, counter) for counter in found[i:])
    return frozenset(rest)


class CausalContext:
    """An immutable set of dots: a ``VersionVector`` plus a cloud of dots beyond it."""

    __slots__ = ("_vv", "_cloud", "_hash", "_fingerprint")

    def __init__(self, vv: VersionVector | None = None, cloud: Iterable[Dot] = ()) -> None:
        if vv is None:
            vv = VersionVector()
        if not isinstance(vv, VersionVector):
            raise LocalProtocolError(f"crdt: CausalContext.vv must be a VersionVector, got {type(vv).__name__}")
        cloud = tuple(cloud)
        for dot in cloud:
            if not isinstance(dot, Dot):
                raise LocalProtocolError(f"crdt: CausalContext cloud holds a {type(dot).__name__}, not a Dot")
        if cloud:
            counters = dict(vv)
            self._cloud = _compact(counters, cloud)
            self._vv = VersionVector._trusted(counters)
        else:
            self._cloud = frozenset()
            self._vv = vv
        self._hash: int | None = None
        self._fingerprint: str | None = None

    @classmethod
    def _trusted(cls, vv: VersionVector, cloud: frozenset[Dot]) -> CausalContext:
        # Internal fast path: ``cloud`` already satisfies the invariant against ``vv``.
        context = cls.__new__(cls)
        context._vv = vv
        context._cloud = cloud
        context._hash = None
        context._fingerprint = None
        return context

    @classmethod
    def from_dots(cls, dots: Iterable[Dot]) -> CausalContext:
        """The context holding exactly ``dots``."""
        return cls(VersionVector(), dots)

    @property
    def vv(self) -> VersionVector:
        """The compact part: per node, the writes 1..n seen without a gap."""
        return self._vv

    @property
    def cloud(self) -> frozenset[Dot]:
        """Dots seen beyond a gap in their node's writes."""
        return self._cloud

    def contains(self, dot: Dot) -> bool:
        """Whether the write ``dot`` has been seen."""
        return dot.counter <= self._vv.get(dot.node) or dot in self._cloud

    __contains__ = contains

    def add(self, dot: Dot) -> CausalContext:
        """The context with ``dot`` added."""
        if not isinstance(dot, Dot):
            raise LocalProtocolError(f"crdt: can only add a Dot to a causal context, got {type(dot).__name__}")
        if self.contains(dot):
            return self
        if dot.counter == self._vv.get(dot.node) + 1 and not self._cloud:
            # The common case, a node's next write: no cloud to fold.
            return CausalContext(self._vv.increment(dot.node)[0])
        return CausalContext(self._vv, (*self._cloud, dot))

    def merge(self, other: CausalContext) -> CausalContext:
        """The union of both contexts."""
        if not isinstance(other, CausalContext):
            raise LocalProtocolError(f"crdt: can only merge a CausalContext, got {type(other).__name__}")
        if other.issubset(self):
            return self
        if self.issubset(other):
            return other
        return CausalContext(self._vv.merge(other._vv), self._cloud | other._cloud)

    def issubset(self, other: CausalContext) -> bool:
        """Whether ``other`` has seen every dot this context has."""
        theirs = other._vv
        for node, top in self._vv.items():
            floor = theirs.get(node)
            if top > floor:
                if top - floor > len(other._cloud):
                    return False
                if any(Dot(node, counter) not in other._cloud for counter in range(floor + 1, top + 1)):
                    return False
        return all(other.contains(dot) for dot in self._cloud)

    def max_counter(self, node: str) -> int:
        """The highest counter of ``node`` seen (0 if none); its next write is this plus one."""
        top = self._vv.get(node)
        for dot in self._cloud:
            if dot.node == node and dot.counter > top:
                top = dot.counter
        return top

    def __bool__(self) -> bool:
        return bool(self._vv) or bool(self._cloud)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CausalContext):
            return NotImplemented
        return self._vv == other._vv and self._cloud == other._cloud

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash((self._vv, self._cloud))
        return self._hash

    def fingerprint(self) -> str:
        """A 128-bit hash of the set of dots (hex): equal contexts, equal fingerprints, on every node.

        Replicas that believe they are in sync compare fingerprints instead
        of whole contexts (``SyncSummary``).
        """
        if self._fingerprint is None:
            parts = [f"{len(node)}:{node}={top};" for node, top in sorted(self._vv.items())]
            parts.append("|")
            parts += [f"{len(dot.node)}:{dot.node}={dot.counter};" for dot in sorted(self._cloud)]
            self._fingerprint = hashlib.blake2b("".join(parts).encode(), digest_size=16).hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        cloud = sorted(self._cloud)
        return f"CausalContext(vv={dict(sorted(self._vv.items()))!r}, cloud={cloud!r})"

    def to_wire(self) -> dict:
        """``{"vv": {node: counter}, "cloud": [[node, counter], ...]}``, cloud sorted."""
        return {"vv": self._vv.to_wire(), "cloud": [dot.to_wire() for dot in sorted(self._cloud)]}

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "context") -> CausalContext:
        """Read ``{"vv": ..., "cloud": ...}``; raises ``RemoteProtocolError`` if malformed.

        A cloud that is not compacted is accepted and compacted: it names the
        same set of dots.
        """
        with wire_errors(where):
            fields = check_fields(obj, ("vv", "cloud"))
            vv = VersionVector.from_wire(fields["vv"], where=f"{where}.vv")
            cloud = check_sequence(fields["cloud"], "of [node, counter] dots")
        dots = [Dot.from_wire(item, where=f"{where}.cloud[{i}]") for i, item in enumerate(cloud)]
        return cls(vv, dots)
