"""Linearizability of key-value register histories: the WGL search with Lowe's memoization.

Theory of operation. A history is linearizable if every op can be given one
instant between its invocation and completion such that the ops, run one at a
time in that order against a plain register, give the results the clients saw
(Herlihy & Wing 1990). The checker is the algorithm Porcupine uses:

* P-compositionality (Horn & Kroening 2015): a history of independent registers
  is linearizable iff each key's sub-history is, so keys are checked one by one.
* Wing & Gong's search (1993): the ops become call and return events in time
  order; the search repeatedly takes a call whose op may go next (the model
  accepts it), lifts it out, and backtracks when it meets a return whose op was
  never placed. Calls come before returns at equal times, so ops that touch are
  concurrent (the lenient reading; never a false failure).
* Lowe's memoization (2017): a (set of placed ops, register value) pair seen
  once is never explored again, which keeps most real histories polynomial.

The register model: ``read`` (ok result = current value), ``write(v)``,
``cas((expected, new))``. An ok cas whose result is ``False`` reports a failed
comparison: it is legal only if the value differed, and changes nothing; any
other ok cas swapped. A missing key reads as ``initial`` (None).

Outcomes (``mesh.chaos.history``): ``fail`` ops never happened and are dropped;
``unknown`` reads tell nothing and are dropped; ``unknown`` writes and cas ops
complete at +infinity, so the search may place them anywhere after their
invocation. The search ends once every definite op is placed — the unknown ones
left over go at the very end, where no one observes them, which is "never
happened". An unknown cas applies only if its comparison holds.

The search is bounded by ``max_steps`` per key; a key that runs out is
``unknown`` and the whole verdict can then not be ``ok`` (never a false pass).
Ops of other kinds are not register ops and are left out (counted in
``ignored``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .history import History, HistoryError, Op

REGISTER_KINDS = ("read", "write", "cas")
DEFAULT_MAX_STEPS = 1_000_000
OUTCOMES = ("ok", "violation", "unknown")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyResult:
    """The verdict for one key: ``ok``, ``violation`` or ``unknown`` (budget exhausted)."""

    key: str
    outcome: str
    steps: int
    ops: int
    prefix: tuple[Op, ...] = ()   # on a violation: the longest linearizable order found
    stuck: Op | None = None       # on a violation: the op that could not be placed after it
    state: Any = None             # on a violation: the register value after ``prefix``

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise HistoryError(f"chaos: a key result's outcome must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}")

    def describe(self) -> str:
        """A one-paragraph counterexample (or status) for the report."""
        if self.outcome == "ok":
            return f"key {self.key!r}: linearizable ({self.ops} ops, {self.steps} steps)"
        if self.outcome == "unknown":
            return f"key {self.key!r}: unknown: search budget exhausted after {self.steps} steps ({self.ops} ops)"
        order = "; ".join(_show(op) for op in self.prefix) or "nothing"
        return (f"key {self.key!r}: not linearizable: the longest linearizable order found is [{order}], "
                f"leaving the register at {self.state!r}, and then {_show(self.stuck)} cannot be placed "
                "before it completes")


@dataclass(frozen=True, slots=True, kw_only=True)
class LinearizabilityVerdict:
    """The verdict for a whole history: ``ok`` only if every key is ``ok``."""

    outcome: str
    keys: tuple[KeyResult, ...] = field(default=())
    ignored: int = 0

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise HistoryError(f"chaos: a verdict's outcome must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}")

    @property
    def linearizable(self) -> bool:
        """True only when every key was proven linearizable."""
        return self.outcome == "ok"

    def counterexample(self) -> str | None:
        """The first violating key's counterexample, or None."""
        return next((k.describe() for k in self.keys if k.outcome == "violation"), None)

    def summary(self) -> str:
        """One line for the report."""
        if self.outcome == "ok":
            return f"linearizable: {len(self.keys)} key(s), {sum(k.ops for k in self.keys)} op(s)"
        if self.outcome == "violation":
            return self.counterexample() or "not linearizable"
        bad = [k.key for k in self.keys if k.outcome == "unknown"]
        return f"unknown: search budget exhausted on key(s) {', '.join(map(repr, bad))}"


def _show(op: Op | None) -> str:
    if op is None:
        return "?"
    end = "∞" if op.status == "unknown" else f"{op.complete:g}"
    res = "" if op.kind != "read" and op.result is None else f" -> {op.result!r}"
    arg = "" if op.kind == "read" else f"({op.value!r})"
    return f"{op.process} {op.kind}{arg}{res} [{op.status}] @{op.invoke:g}..{end}"


def step(state: Any, op: Op) -> tuple[bool, Any]:
    """The register model: ``(legal, new state)`` of applying ``op`` to value ``state``."""
    if op.kind == "read":
        return state == op.result, state
    if op.kind == "write":
        return True, op.value
    if op.kind == "cas":
        expected, new = op.value
        if op.status == "unknown":
            return True, (new if state == expected else state)
        if op.result is False:
            return state != expected, state
        return (True, new) if state == expected else (False, state)
    raise HistoryError(f"chaos: the register model has no op kind {op.kind!r} (expected one of {', '.join(REGISTER_KINDS)})")


def _memo_key(state: Any) -> Any:
    """A hashable stand-in for a register value (JSON objects are dicts)."""
    if isinstance(state, dict):
        return ("\x00dict", tuple(sorted((k, _memo_key(v)) for k, v in state.items())))
    if isinstance(state, tuple):
        return tuple(_memo_key(v) for v in state)
    return state


def check(history: History | Iterable[Op], *, initial: Any = None,
          max_steps: int = DEFAULT_MAX_STEPS) -> LinearizabilityVerdict:
    """Check a register history key by key; see the module docstring for the rules."""
    if not isinstance(history, History):
        history = History(tuple(history))
    if max_steps < 1:
        raise HistoryError(f"chaos: max_steps must be at least 1, got {max_steps}")
    register = history.filter(kinds=REGISTER_KINDS)
    results = tuple(check_key(key, sub.ops, initial=initial, max_steps=max_steps)
                    for key, sub in register.by_key().items())
    outcomes = {r.outcome for r in results}
    outcome = "violation" if "violation" in outcomes else "unknown" if "unknown" in outcomes else "ok"
    return LinearizabilityVerdict(outcome=outcome, keys=results, ignored=len(history) - len(register))


def check_key(key: str, ops: Iterable[Op], *, initial: Any = None,
              max_steps: int = DEFAULT_MAX_STEPS) -> KeyResult:
    """The WGL search over one key's ops (all assumed to be register ops on ``key``)."""
    kept = [op for op in ops if op.status != "fail" and not (op.status == "unknown" and op.kind == "read")]
    n = len(kept)
    definite = sum(1 for op in kept if op.status != "unknown")
    if definite == 0:
        return KeyResult(key=key, outcome="ok", steps=0, ops=n)

    # Events: (time, 0 = call / 1 = return, op id). Calls sort before returns at equal times.
    events = sorted([(op.invoke, 0, i) for i, op in enumerate(kept)] + [(op.end, 1, i) for i, op in enumerate(kept)])
    # Doubly linked list over event slots 1..2n; slot 0 is the head sentinel.
    size = 2 * n + 1
    nxt = list(range(1, size + 1))
    prv = list(range(-1, size - 1))
    nxt[size - 1] = -1
    is_call = [False] * size
    op_of = [-1] * size
    match = [-1] * size  # call slot -> its return slot
    call_slot = [0] * n
    for slot, (_, kind, i) in enumerate(events, start=1):
        op_of[slot] = i
        if kind == 0:
            is_call[slot] = True
            call_slot[i] = slot
        else:
            match[call_slot[i]] = slot

    def lift(slot: int) -> None:
        for s in (slot, match[slot]):
            nxt[prv[s]] = nxt[s]
            if nxt[s] != -1:
                prv[nxt[s]] = prv[s]

    def unlift(slot: int) -> None:
        for s in (match[slot], slot):
            nxt[prv[s]] = s
            if nxt[s] != -1:
                prv[nxt[s]] = s

    state = initial
    placed = 0            # bitset of placed op ids
    placed_definite = 0
    seen: set[tuple[int, Any]] = set()
    calls: list[tuple[int, Any]] = []   # (call slot, state before it)
    best: tuple[list[int], Any, int] = ([], initial, -1)
    steps = 0
    entry = nxt[0]
    while True:
        steps += 1
        if steps > max_steps:
            return KeyResult(key=key, outcome="unknown", steps=steps - 1, ops=n)
        if entry == -1:
            # Only unknown-op returns can be left unmet here; but every definite op is placed before that.
            break
        i = op_of[entry]
        if is_call[entry]:
            legal, new_state = step(state, kept[i])
            if legal:
                new_placed = placed | (1 << i)
                memo = (new_placed, _memo_key(new_state))
                if memo not in seen:
                    seen.add(memo)
                    calls.append((entry, state))
                    state = new_state
                    placed = new_placed
                    if kept[i].status != "unknown":
                        placed_definite += 1
                        if placed_definite == definite:
                            return KeyResult(key=key, outcome="ok", steps=steps, ops=n)
                    lift(entry)
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:
            # A return whose op is not placed: everything before must be undone.
            if len(calls) > len(best[0]):
                best = ([op_of[s] for s, _ in calls], state, i)
            if not calls:
                prefix, at, stuck = best
                return KeyResult(key=key, outcome="violation", steps=steps, ops=n,
                                 prefix=tuple(kept[j] for j in prefix),
                                 stuck=kept[stuck] if stuck >= 0 else kept[i], state=at)
            slot, state = calls.pop()
            placed &= ~(1 << op_of[slot])
            if kept[op_of[slot]].status != "unknown":
                placed_definite -= 1
            unlift(slot)
            entry = nxt[slot]
    raise AssertionError("chaos: the linearizability search ran off its event list")  # pragma: no cover
