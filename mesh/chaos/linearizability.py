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

Long histories (Knossos's and Porcupine's trick, made exact). A search over
tens of thousands of ops per key does not finish: every unknown op stays
pending to the end and the memo grows without bound. When every value written
to a key is unique (the chaos workload writes unique values), each key is
first reduced, then cut into independent segments:

* *Clamping.* An unknown write or cas whose value some definite op observed (an
  ok read returned it, an ok cas swapped from it, or an unknown cas swapped
  from it that was itself observed) took effect before the earliest such
  observer completed; its completion becomes that time and it
  must be placed (an observed cas swapped). Any linearization already put it
  there, so this changes nothing.
* *Unseen ops.* An unknown write or cas whose value no definite op observed can
  only have mattered to a failed cas (a read or swap after it would have seen
  its value). Where no failed cas completes after it was sent, it is left
  out: it fits at the very end, where nobody sees it. Otherwise it joins the
  first segment with such a failed cas as an optional op that must take effect
  by that segment's end or never. Unseen writes are interchangeable there (a
  value nobody reads), so at most one per failed cas (and ``MAX_STAND_INS``)
  stands for them all. Each of these is a restriction of where the real ops
  may go, so a pass stays sound; a violation is confirmed (below).
* *Segments.* With every definite op finite, a moment at which none is pending
  (all invoked before it completed before it) cuts the key's history: no op
  before the cut can be ordered after an op after it, so only the register
  value crosses it. The search goes depth first over the segments: a segment
  hands each value it can end in, as it finds them, to the next one; a
  (segment, start value) pair that led nowhere is never tried again. Each
  search works on one segment's ops, so its memo stays small.
* *A violation* in segment k stands when no unseen op was invoked before the
  cut after it (the reduction was then exact). Otherwise it stands if the
  prefix still fails with every unseen and every failed cas op left out: a
  linearization of the real history, minus those, would be one of that. If
  neither holds, the unreduced prefix (all ops invoked before the cut: every
  definite one completed before it, so a linearization of the whole restricts
  to one of the prefix) is searched whole; undecided, the key is ``unknown``. The counterexample
  shown comes from searching that prefix whole when the budget allows, else
  from the failing segment.

The search is bounded by ``max_steps`` per key (over all its segments); a key
that runs out is ``unknown`` and the whole verdict can then not be ``ok``
(never a false pass). On the 10-minute chaos run's 11,000 ops per key the
whole search ran out of 1,000,000 steps; reduced and cut, each key took about
11,500. Ops of other kinds are not register ops and are left out (counted in
``ignored``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .history import History, HistoryError, Op

REGISTER_KINDS = ("read", "write", "cas")
DEFAULT_MAX_STEPS = 1_000_000
MAX_STAND_INS = 3  # unseen unknown writes kept per segment (see _segments)
PROOF_STEPS = 200_000  # steps spent looking for the clearest counterexample of a violation already found
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


class _Budget:
    """Search steps left, shared by every search over one key."""

    def __init__(self, steps: int) -> None:
        self.left = steps
        self.used = 0


def _search(key: str, kept: list[Op], initial: Any, max_steps: int,
            horizon: list[float | None] | None = None) -> KeyResult:
    """The WGL search over ``kept`` from ``initial``: ``ok`` at the first linearization (see ``_walk``)."""
    budget = _Budget(max_steps)
    walk = _walk(key, kept, initial, budget, horizon, every_end=False)
    try:
        next(walk)
    except StopIteration as stop:
        return stop.value
    return KeyResult(key=key, outcome="ok", steps=budget.used, ops=len(kept))


def _walk(key: str, kept: list[Op], initial: Any, budget: _Budget, horizon: list[float | None] | None,
          *, every_end: bool) -> Generator[Any, None, KeyResult]:
    """The WGL search over ``kept`` from ``initial``, yielding as it finds linearizations.

    An ``unknown`` op is optional: placed, or never happened. By default it may take effect until
    +infinity; ``horizon[i]`` (when not None) makes op i's chance end there — reaching that moment
    unplaced, it never happened (a restriction of where it may go, so a pass stays sound).

    Without ``every_end`` it yields once every definite op is placed (the unknown ones left go at
    the very end). With it, it yields the register value each linearization of all the ops ends in,
    each value once, and looks on when resumed. It returns (``StopIteration.value``) a result:
    ``ok`` when it yielded, else ``violation`` with the longest order it found, or ``unknown`` when
    ``budget`` ran out.
    """
    n = len(kept)
    definite = sum(1 for op in kept if op.status != "unknown")
    if definite == 0 and not every_end:
        yield initial
        return KeyResult(key=key, outcome="ok", steps=0, ops=n)

    def end(i: int, op: Op) -> float:
        return horizon[i] if horizon is not None and horizon[i] is not None else op.end  # type: ignore[return-value]

    # Events: (time, 0 = call / 1 = return, op id). Calls sort before returns at equal times.
    events = sorted([(op.invoke, 0, i) for i, op in enumerate(kept)] + [(end(i, op), 1, i) for i, op in enumerate(kept)])
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
    done = 0              # bitset of ops placed or (optional ones) given up
    done_count = 0
    placed_definite = 0
    seen: set[tuple[int, Any]] = set()
    ends: set[Any] = set()
    calls: list[tuple[int, Any, bool]] = []   # (call slot, state before it, whether it was placed)
    best: tuple[list[int], Any, int] = ([], initial, -1)
    steps = 0
    entry = nxt[0]
    if every_end and n == 0:
        yield initial
        return KeyResult(key=key, outcome="ok", steps=0, ops=0)
    while True:
        steps += 1
        budget.used += 1
        budget.left -= 1
        if budget.left < 0:
            return KeyResult(key=key, outcome="unknown", steps=steps - 1, ops=n)
        if entry == -1:
            # Only unknown-op returns can be left unmet here; but every definite op is placed before that.
            raise AssertionError("chaos: the linearizability search ran off its event list")  # pragma: no cover
        i = op_of[entry]
        pushed = False
        if is_call[entry]:
            legal, new_state = step(state, kept[i])
            if legal:
                memo = (done | (1 << i), _memo_key(new_state))
                if memo not in seen:
                    seen.add(memo)
                    calls.append((entry, state, True))
                    state = new_state
                    if kept[i].status != "unknown":
                        placed_definite += 1
                    pushed = True
            if not pushed:
                entry = nxt[entry]
                continue
        elif kept[i].status == "unknown":
            # An optional op's chance is over and it was not placed: it never happened.
            memo = (done | (1 << i), _memo_key(state))
            if memo not in seen:
                seen.add(memo)
                entry = call_slot[i]
                calls.append((entry, state, False))
                pushed = True
        if pushed:
            done |= 1 << i
            done_count += 1
            lift(entry)
            if not every_end and placed_definite == definite:
                yield state
                return KeyResult(key=key, outcome="ok", steps=steps, ops=n)
            if not every_end or done_count < n:
                entry = nxt[0]
                continue
            if _memo_key(state) not in ends:  # a complete linearization: hand its end over, then look on
                ends.add(_memo_key(state))
                yield state
        elif len(calls) > len(best[0]):
            # A return whose op is not placed: everything before must be undone.
            best = ([op_of[s] for s, _, placed in calls if placed], state, i)
        if not calls:
            if ends:
                return KeyResult(key=key, outcome="ok", steps=steps, ops=n)
            prefix, at, stuck = best
            return KeyResult(key=key, outcome="violation", steps=steps, ops=n,
                             prefix=tuple(kept[j] for j in prefix),
                             stuck=kept[stuck] if stuck >= 0 else kept[i], state=at)
        slot, state, placed = calls.pop()
        done &= ~(1 << op_of[slot])
        done_count -= 1
        if placed and kept[op_of[slot]].status != "unknown":
            placed_definite -= 1
        unlift(slot)
        entry = nxt[slot]


def check_key(key: str, ops: Iterable[Op], *, initial: Any = None,
              max_steps: int = DEFAULT_MAX_STEPS) -> KeyResult:
    """One key's ops (all register ops on ``key``): reduced and cut into segments when its writes are unique."""
    kept = [op for op in ops if op.status != "fail" and not (op.status == "unknown" and op.kind == "read")]
    reduced = _reduce(kept, initial)
    if reduced is None:  # a value written twice: no clamping or cutting is sound, search it whole
        return _search(key, kept, initial, max_steps)
    if isinstance(reduced, Op):  # it saw a value nobody wrote, or before its only write was sent
        return KeyResult(key=key, outcome="violation", steps=0, ops=len(kept), stuck=reduced, state=None)
    finite, unseen = reduced
    budget = _Budget(max_steps)
    outcome, segment, start = _run_segments(key, _segments(finite, unseen), initial, budget)
    if outcome != "violation":
        return KeyResult(key=key, outcome=outcome, steps=budget.used, ops=len(kept))
    assert segment is not None
    cut = segment[2]
    if any(op.invoke < cut for op in unseen):
        # An unseen op was held to its segment; one placed later might have made a failed cas legal
        # (nothing else could tell it happened). Without the unseen and the failed cas ops, the prefix
        # must still fail for the violation to stand (module doc).
        strict = [op for op in finite if op.invoke < cut and not (op.kind == "cas" and op.result is False)]
        outcome, strict_segment, strict_start = _run_segments(key, _segments(strict, []), initial, budget)
        if outcome != "violation":
            return _prove(key, kept, cut=cut, initial=initial, budget=budget, fallback=None)
        segment, start = strict_segment, strict_start
    return _prove(key, kept, cut=segment[2], initial=initial, budget=budget, fallback=(segment, start))


Segment = tuple[list[Op], list[float | None], float]
"""A segment's ops, each one's horizon (None: its own completion), and the moment after the segment."""


def _run_segments(key: str, segments: list[Segment], initial: Any,
                  budget: _Budget) -> tuple[str, Segment | None, Any]:
    """Depth first over the segments: each one's end values, found one at a time, start the next.

    A (segment, start value) pair that led nowhere is not tried again. Returns the outcome and, on a
    violation, the furthest segment reached and a value it was started from.
    """
    if not segments:
        return "ok", None, initial
    dead: set[tuple[int, Any]] = set()
    stack = [(0, initial, _walk(key, segments[0][0], initial, budget, segments[0][1], every_end=True))]
    furthest = (0, initial)
    while stack:
        k, start, walk = stack[-1]
        try:
            end = next(walk)
        except StopIteration as stop:
            if stop.value.outcome == "unknown":
                return "unknown", segments[k], start
            dead.add((k, _memo_key(start)))
            stack.pop()
            continue
        if k + 1 == len(segments):
            return "ok", None, end
        if (k + 1, _memo_key(end)) in dead:
            continue
        if k + 1 > furthest[0]:
            furthest = (k + 1, end)
        ops, horizon, _ = segments[k + 1]
        stack.append((k + 1, end, _walk(key, ops, end, budget, horizon, every_end=True)))
    return "violation", segments[furthest[0]], furthest[1]


def _prove(key: str, kept: list[Op], *, cut: float, initial: Any, budget: _Budget,
           fallback: tuple[Segment | None, Any] | None) -> KeyResult:
    """The verdict on a violation: the unreduced prefix before ``cut`` searched whole gives the clearest
    counterexample; when that runs out of budget, ``fallback`` (a failing segment and a value it started
    from) gives one if the violation is already proven, else the key is ``unknown``."""
    prefix = [op for op in kept if op.invoke < cut]
    proof = _search(key, prefix, initial, max(min(budget.left, PROOF_STEPS), 1))
    steps = budget.used + proof.steps
    if proof.outcome == "violation":
        return replace(proof, steps=steps, ops=len(kept))
    if fallback is None or fallback[0] is None or proof.outcome == "ok":
        # Undecided: an unseen op may explain the failure, or the search ran out. Never a pass.
        return KeyResult(key=key, outcome="unknown", steps=steps, ops=len(kept))
    (ops, horizon, _), start = fallback
    shown = _search(key, ops, start, DEFAULT_MAX_STEPS, horizon)
    return replace(shown, outcome="violation", steps=steps + shown.steps, ops=len(kept))


class _UnseenValue:
    """A register value no op observed (equal only to itself)."""

    def __repr__(self) -> str:
        return "<a value nobody read>"


UNSEEN = _UnseenValue()


@dataclass(frozen=True, slots=True)
class _Unseen:
    """An unknown write or cas nobody observed, as the search sees it: an optional write of ``UNSEEN``."""

    op: Op
    kind: str = "write"
    status: str = "unknown"
    value: Any = UNSEEN
    result: Any = None
    complete: None = None

    @property
    def process(self) -> str:
        return self.op.process

    @property
    def invoke(self) -> float:
        return self.op.invoke

    @property
    def end(self) -> float:
        return math.inf


def _written(op: Op) -> Any:
    return op.value if op.kind == "write" else op.value[1]


def _reduce(kept: list[Op], initial: Any) -> tuple[list[Op], list[Op]] | Op | None:
    """Clamp seen unknown writes; set apart unseen ones (module doc). None unless every written value is unique.

    Returns (the finite ops, the unseen unknown ones), or the definite op that saw a value no op wrote, or
    saw it before its only write was invoked.
    """
    writes = [op for op in kept if op.kind != "read"]
    values = [_memo_key(_written(op)) for op in writes]
    if len(set(values)) != len(values) or _memo_key(initial) in set(values):
        return None
    # The earliest completion of a definite op that saw each value: an ok read of it, an ok cas that swapped from it.
    seen_by: dict[Any, float] = {}
    written_at = {v: op.invoke for v, op in zip(values, writes)}
    for op in kept:
        if op.status != "ok":
            continue
        if op.kind == "read":
            seen = op.result
        elif op.kind == "cas" and op.result is not False:
            seen = op.value[0]
        else:
            continue
        k = _memo_key(seen)
        if k != _memo_key(initial) and not written_at.get(k, math.inf) <= op.complete:
            return op
        seen_by[k] = min(seen_by.get(k, math.inf), op.complete)
    # An unknown cas whose new value was seen swapped by then, so it saw its expected value: to a fixpoint.
    pending = [op for op in kept if op.status == "unknown" and op.kind == "cas"]
    changed = True
    while changed:
        changed = False
        for op in pending:
            at = seen_by.get(_memo_key(op.value[1]))
            expected = _memo_key(op.value[0])
            if at is not None and at < seen_by.get(expected, math.inf):
                if at < op.invoke or (expected != _memo_key(initial) and not written_at.get(expected, math.inf) <= at):
                    return op
                seen_by[expected] = at
                changed = True
    finite: list[Op] = []
    unseen: list[Op] = []
    for op in kept:
        if op.status != "unknown":
            finite.append(op)
            continue
        at = seen_by.get(_memo_key(_written(op)))
        if at is None:
            unseen.append(op)
        else:  # it happened (its value was seen): an ok op that completed by then at the latest
            finite.append(replace(op, status="ok", complete=at, result=None if op.kind == "write" else True))
    return finite, unseen


def _segments(finite: list[Op], unseen: list[Op]) -> list[Segment]:
    """Cut the finite ops at every moment none is pending; an unseen op joins the segment it was invoked
    in (or the next one), with that segment's end as its horizon, when a failed cas there could need it."""
    groups: list[tuple[list[Op], float]] = []  # (ops, the latest completion among them)
    for op in sorted(finite, key=lambda op: (op.invoke, op.complete)):
        if groups and op.invoke <= groups[-1][1]:
            groups[-1][0].append(op)
            groups[-1] = (groups[-1][0], max(groups[-1][1], op.complete))
        else:
            groups.append(([op], op.complete))
    horizons: list[list[float | None]] = [[None] * len(ops) for ops, _ in groups]
    # When each segment's last failed cas completes: an unseen op matters only to a failed cas after it.
    failed_by = [max((op.complete for op in ops if op.kind == "cas" and op.result is False), default=-math.inf)
                 for ops, _ in groups]
    # A failed cas naming an unseen value could tell unseen ops apart; otherwise they are interchangeable.
    unseen_values = {_memo_key(_written(op)) for op in unseen}
    alike = not any(_memo_key(op.value[0]) in unseen_values
                    for op in finite if op.kind == "cas" and op.result is False)
    joining: dict[int, list[Op]] = {}
    lasts = [last for _, last in groups]  # increasing: a segment starts after the previous one's last completion
    next_failed = [len(groups)] * (len(groups) + 1)  # the first segment from k on that has a failed cas
    for k in range(len(groups) - 1, -1, -1):
        next_failed[k] = k if failed_by[k] > -math.inf else next_failed[k + 1]
    for op in unseen:
        # The first segment (from the one it was sent in) with a failed cas that completes after it was sent.
        k = bisect.bisect_left(lasts, op.invoke)
        if k < len(groups) and failed_by[k] < op.invoke:
            k = next_failed[k + 1]  # every later segment starts after it was sent
        if k >= len(groups):
            continue  # no failed cas it could explain: it goes at the very end, where nobody sees it
        joining.setdefault(k, []).append(op)
    for ops in joining.values():
        ops.sort(key=lambda op: op.invoke)
    for k, ops in joining.items():
        if alike:
            # Each failed cas needs at most one unseen write before it; the earliest-invoked writes stand for
            # them all, as one value nobody observes (a restriction of the real choices: a pass stays sound).
            # An unseen cas applies only where its comparison holds, so it stays itself.
            failed = sum(1 for op in groups[k][0] if op.kind == "cas" and op.result is False)
            writes = [op for op in ops if op.kind == "write"]
            ops = [_Unseen(op) for op in writes[:min(failed, MAX_STAND_INS)]] + [op for op in ops if op.kind == "cas"]
        groups[k][0].extend(ops)
        horizons[k].extend(max(groups[k][1], op.invoke) for op in ops)
    cuts = [ops[0].invoke if ops else math.inf for ops, _ in groups[1:]] + [math.inf]
    return [(ops, horizon, cut) for (ops, _), horizon, cut in zip(groups, horizons, cuts)]
