"""One harness for the delta-state types: how to build, mutate and version each, and random histories of them.

Every type here is an immutable value with ``merge``, ``apply_delta``,
``delta_since`` and mutators that return deltas; a ``TypeSpec`` says how to
drive one, so the laws in ``test_crdt_type_laws.py`` are written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from crdt import (
    GCounter,
    HybridLogicalClock,
    LWWRegister,
    ORMap,
    ORSet,
    PNCounter,
    TimeSeriesWindow,
)

NODES = ("a", "b", "c")
nodes = st.sampled_from(NODES)


@dataclass(frozen=True)
class TypeSpec:
    """How to drive one type: its empty value, a strategy of operations, and what a peer's version is."""

    name: str
    empty: Callable[[], Any]
    ops: st.SearchStrategy
    mutate: Callable[[Any, str, Any, HybridLogicalClock], Any]  # (state, node, op, clock) -> delta
    version: Callable[[Any], Any]


def _register_set(state: LWWRegister, node: str, op: Any, clock: HybridLogicalClock) -> LWWRegister:
    value, wall = op
    if state.ts is not None:
        clock.observe(state.ts, wall)  # a writer observes what it holds before writing (see LWWRegister.set)
    return state.set(value, clock.now(wall))


def _or_set_op(state: ORSet, node: str, op: Any, clock: HybridLogicalClock) -> ORSet:
    verb, element = op
    return state.add(node, element) if verb == "add" else state.remove(node, element)


def _or_map_op(state: ORMap, node: str, op: Any, clock: HybridLogicalClock) -> ORMap:
    verb, key, value, wall = op
    return state.put(key, value, clock.now(wall)) if verb == "put" else state.remove(node, key)


SPECS = {
    "g_counter": TypeSpec(
        "g_counter", GCounter, st.integers(1, 3), lambda s, n, amount, c: s.increment(n, amount), lambda s: s.version
    ),
    "pn_counter": TypeSpec(
        "pn_counter",
        PNCounter,
        st.integers(-3, 3).filter(bool),
        lambda s, n, amount, c: s.increment(n, amount),
        lambda s: s.version,
    ),
    "lww_register": TypeSpec(
        # Coarse wall clocks, so timestamps share a millisecond and node ids break ties.
        "lww_register", LWWRegister, st.tuples(st.integers(0, 3), st.integers(0, 3)), _register_set, lambda s: s.vv
    ),
    "or_set": TypeSpec(
        "or_set",
        ORSet,
        st.tuples(st.sampled_from(["add", "add", "remove"]), st.sampled_from(["x", "y", "z"])),
        _or_set_op,
        lambda s: s.context,
    ),
    "or_map": TypeSpec(
        "or_map",
        ORMap,
        st.tuples(
            st.sampled_from(["put", "put", "remove"]), st.sampled_from(["k1", "k2"]), st.integers(0, 3), st.integers(0, 3)
        ),
        _or_map_op,
        lambda s: s.context,
    ),
    "time_series": TypeSpec(
        # A small window and count so truncation happens in most histories.
        "time_series",
        lambda: TimeSeriesWindow(window_ms=5, max_count=3),
        st.tuples(st.integers(0, 12), st.integers(0, 3)),
        lambda s, n, op, c: s.record(n, op[0], op[1]),
        lambda s: s.context,
    ),
}


@dataclass
class History:
    """Writers that mutated and now and then synced; every delta they made and every state they passed through."""

    spec: TypeSpec
    writers: dict[str, Any]
    deltas: list[Any] = field(default_factory=list)  # mutator deltas and sync answers, in the order made
    snapshots: list[Any] = field(default_factory=list)  # writers' states after each step

    def join(self) -> Any:
        """The state every replica must reach: all writers merged."""
        total = self.spec.empty()
        for state in self.writers.values():
            total = total.merge(state)
        return total


@st.composite
def histories(draw, spec: TypeSpec, max_ops: int = 12) -> History:
    """Mutations by a few nodes, and delta syncs between them (``delta_since`` of the receiver's version)."""
    clocks = {n: HybridLogicalClock(n) for n in NODES}
    history = History(spec, {n: spec.empty() for n in NODES})
    steps = st.tuples(st.just("mutate"), nodes, spec.ops) | st.tuples(st.just("sync"), nodes, nodes)
    for kind, node, arg in draw(st.lists(steps, min_size=1, max_size=max_ops)):
        if kind == "mutate":
            delta = spec.mutate(history.writers[node], node, arg, clocks[node])
            history.writers[node] = history.writers[node].apply_delta(delta)
        else:
            src, dst = node, arg
            delta = history.writers[src].delta_since(spec.version(history.writers[dst]))
            history.writers[dst] = history.writers[dst].apply_delta(delta)
            node = dst
        history.deltas.append(delta)
        history.snapshots.append(history.writers[node])
    return history


@st.composite
def scrambled(draw, history: History) -> Any:
    """A replica that got some of the history's deltas — any of them, in any order, some twice, some lost."""
    state = history.spec.empty()
    for delta in draw(st.lists(st.sampled_from(history.deltas), max_size=8)):
        state = state.apply_delta(delta)
    return state


@st.composite
def caught_up(draw, history: History) -> Any:
    """A replica that took whole states it was sent (some writers' states from some moments), joined."""
    state = history.spec.empty()
    for snapshot in draw(st.lists(st.sampled_from(history.snapshots), max_size=4)):
        state = state.merge(snapshot)
    return state
