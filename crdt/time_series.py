"""``TimeSeriesWindow``: the recent samples of one sensor, bounded in time and optionally in count.

Theory of operation. The state is a set of samples, each identified by the
dot of the write that recorded it, plus the causal context of every sample
seen. ``truncate`` keeps the samples newer than ``max(t_ms) - window_ms`` and
then, if ``max_count`` is set, the ``max_count`` greatest under the order
``(t_ms, node, counter)`` — ties in time are broken by node id, then by the
writer's counter, so every replica drops the same ones. Merge is union, then
truncate: a join-semilattice in the sense of Almeida et al., "Delta State
Replicated Data Types", 2018 §2, whose deltas are windows too (§3).

Why that is a join: ``truncate`` only ever drops a sample that is outside the
window of the maximum or beaten by ``max_count`` greater samples inside it,
and adding samples can only raise the maximum and add rivals. So a sample
dropped from ``A`` is dropped from ``A ∪ B`` too:
``truncate(truncate(A) ∪ B) == truncate(A ∪ B)``, which gives associativity;
commutativity and idempotence come from the union.

Invariant behind ``delta_since``: every dot in the context is a held sample
or one this replica dropped (which any replica that has seen this one's
samples drops too). So the delta for a peer is the samples whose dots it
lacks plus the whole context. Both replicas must use the same
``window_ms``/``max_count``; merging windows of different shapes is refused.

``t_ms`` is the reading's time in milliseconds as the caller assigns it (say
the HLC's ``wall_ms`` when it was taken); nothing here reads a clock. Values
are immutable; ``record`` returns the delta and the new state is
``w.apply_delta(delta)`` (Almeida et al.: ``X' = X ⊔ mδ(X)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._checks import (
    check_fields,
    check_int,
    check_node,
    check_sequence,
    json_value,
    wire_errors,
)
from ._dot_store import (
    MAX_ITEMS,
    as_context,
    canonical,
    check_size,
    check_type,
    next_dot,
)
from .causal_context import CausalContext
from .dot import Dot
from .errors import LocalProtocolError
from .version_vector import VersionVector


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One reading: ``value`` (any JSON value) taken at ``t_ms``, recorded by the write ``dot``."""

    t_ms: int
    value: Any = field(hash=False)
    dot: Dot

    def __post_init__(self) -> None:
        check_int(self.t_ms, "Sample.t_ms")
        if not isinstance(self.dot, Dot):
            raise LocalProtocolError(f"crdt: Sample.dot must be a Dot, got {type(self.dot).__name__}")
        object.__setattr__(self, "value", json_value(self.value, "sample value"))

    @property
    def order(self) -> tuple[int, str, int]:
        """The truncation order: time, then node id, then the writer's counter."""
        return (self.t_ms, self.dot.node, self.dot.counter)

    def to_wire(self) -> list:
        """``[t_ms, value, [node, counter]]``."""
        return [self.t_ms, self.value, self.dot.to_wire()]

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "sample") -> Sample:
        """Read ``[t_ms, value, dot]``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            t_ms, value, dot = check_sequence(obj, "[t_ms, value, dot]", 3)
        dot = Dot.from_wire(dot, where=f"{where}.dot")
        with wire_errors(where):
            return cls(t_ms=t_ms, value=value, dot=dot)


def _pick(a: Sample, b: Sample) -> Sample:
    # One dot is one write; a peer that reused a dot still gets the same survivor everywhere.
    return a if (a.t_ms, canonical(a.value)) >= (b.t_ms, canonical(b.value)) else b


class TimeSeriesWindow:
    """An immutable window of one sensor's samples; ``TimeSeriesWindow(window_ms=60_000)`` is empty."""

    __slots__ = ("_window_ms", "_max_count", "_samples", "_context")

    def __init__(
        self,
        *,
        window_ms: int,
        max_count: int | None = None,
        samples: Iterable[Sample] = (),
        context: CausalContext | None = None,
    ) -> None:
        self._window_ms = check_int(window_ms, "TimeSeriesWindow.window_ms", minimum=1)
        if max_count is not None:
            check_int(max_count, "TimeSeriesWindow.max_count", minimum=1)
            if max_count > MAX_ITEMS:
                raise LocalProtocolError(f"crdt: TimeSeriesWindow.max_count is {max_count}; at most {MAX_ITEMS}")
        self._max_count = max_count
        context = CausalContext() if context is None else context
        if not isinstance(context, CausalContext):
            raise LocalProtocolError(
                f"crdt: TimeSeriesWindow.context must be a CausalContext, got {type(context).__name__}"
            )
        held: dict[Dot, Sample] = {}
        for sample in samples:
            if not isinstance(sample, Sample):
                raise LocalProtocolError(f"crdt: TimeSeriesWindow holds a {type(sample).__name__}, not a Sample")
            if not context.contains(sample.dot):
                raise LocalProtocolError(f"crdt: sample {sample.dot.to_wire()} is outside the window's context")
            held[sample.dot] = _pick(sample, held[sample.dot]) if sample.dot in held else sample
        check_size(held, "TimeSeriesWindow")
        self._samples = self._truncate(held)
        self._context = context

    def _truncate(self, held: dict[Dot, Sample]) -> dict[Dot, Sample]:
        if not held:
            return held
        floor = max(sample.t_ms for sample in held.values()) - self._window_ms
        kept = sorted((s for s in held.values() if s.t_ms > floor), key=lambda s: s.order, reverse=True)
        if self._max_count is not None:
            kept = kept[: self._max_count]
        return {sample.dot: sample for sample in kept}

    def _same_shape(self, other: TimeSeriesWindow, verb: str) -> None:
        check_type(other, TimeSeriesWindow, verb)
        if (self._window_ms, self._max_count) != (other._window_ms, other._max_count):
            raise LocalProtocolError(
                f"crdt: cannot {verb} a window of {other._window_ms} ms / {other._max_count} samples into one of "
                f"{self._window_ms} ms / {self._max_count} samples; every replica of a series needs the same shape"
            )

    def _empty(self) -> TimeSeriesWindow:
        return TimeSeriesWindow(window_ms=self._window_ms, max_count=self._max_count)

    @property
    def window_ms(self) -> int:
        """How far back from the newest sample the window reaches (exclusive), in ms."""
        return self._window_ms

    @property
    def max_count(self) -> int | None:
        """The most samples kept, or None for no limit beyond the window."""
        return self._max_count

    @property
    def context(self) -> CausalContext:
        """Every sample this replica has seen: what a peer passes to ``delta_since``."""
        return self._context

    def samples(self) -> list[Sample]:
        """The kept samples, oldest first (by time, then node id, then counter)."""
        return sorted(self._samples.values(), key=lambda s: s.order)

    def __len__(self) -> int:
        return len(self._samples)

    def record(self, node: str, t_ms: int, value: Any) -> TimeSeriesWindow:
        """The delta of ``node`` recording ``value`` taken at ``t_ms``."""
        dot = next_dot(self._context, check_node(node))
        sample = Sample(t_ms=t_ms, value=value, dot=dot)
        return TimeSeriesWindow(
            window_ms=self._window_ms, max_count=self._max_count, samples=(sample,), context=CausalContext.from_dots([dot])
        )

    def merge(self, other: TimeSeriesWindow) -> TimeSeriesWindow:
        """Union of both windows' samples, then truncate; contexts joined."""
        self._same_shape(other, "merge")
        held = dict(self._samples)
        for dot, sample in other._samples.items():
            held[dot] = _pick(sample, held[dot]) if dot in held else sample
        out = TimeSeriesWindow.__new__(TimeSeriesWindow)
        out._window_ms, out._max_count = self._window_ms, self._max_count
        out._samples = self._truncate(held)
        out._context = self._context.merge(other._context)
        return out

    def apply_delta(self, delta: TimeSeriesWindow) -> TimeSeriesWindow:
        """This state joined with ``delta`` (deltas are windows too)."""
        self._same_shape(delta, "apply_delta")
        return self.merge(delta)

    def delta_since(self, since: VersionVector | CausalContext) -> TimeSeriesWindow:
        """The samples whose dots ``since`` lacks, with this whole context; empty if it lacks nothing."""
        since = as_context(since)
        if self._context.issubset(since):
            return self._empty()
        out = TimeSeriesWindow.__new__(TimeSeriesWindow)
        out._window_ms, out._max_count = self._window_ms, self._max_count
        out._samples = {dot: s for dot, s in self._samples.items() if not since.contains(dot)}
        out._context = self._context
        return out

    def __bool__(self) -> bool:
        return bool(self._context)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimeSeriesWindow):
            return NotImplemented
        return (
            (self._window_ms, self._max_count) == (other._window_ms, other._max_count)
            and self._samples == other._samples
            and self._context == other._context
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"TimeSeriesWindow(window_ms={self._window_ms}, max_count={self._max_count}, "
            f"{len(self._samples)} samples, {self._context!r})"
        )

    def to_wire(self) -> dict:
        """``{"window_ms", "max_count", "samples": [[t_ms, value, dot], ...], "context"}``, oldest first."""
        return {
            "window_ms": self._window_ms,
            "max_count": self._max_count,
            "samples": [sample.to_wire() for sample in self.samples()],
            "context": self._context.to_wire(),
        }

    @classmethod
    def from_wire(cls, obj: Any, *, where: str = "time_series") -> TimeSeriesWindow:
        """Read ``{"window_ms", "max_count", "samples", "context"}``; raises ``RemoteProtocolError`` if malformed."""
        with wire_errors(where):
            fields = check_fields(obj, ("window_ms", "max_count", "samples", "context"))
            items = check_sequence(fields["samples"], "of samples")
            check_size(items, f"{where}.samples")
        samples = [Sample.from_wire(item, where=f"{where}.samples[{i}]") for i, item in enumerate(items)]
        context = CausalContext.from_wire(fields["context"], where=f"{where}.context")
        with wire_errors(where):
            return cls(window_ms=fields["window_ms"], max_count=fields["max_count"], samples=samples, context=context)
