"""Long register histories: clamping, unseen ops and segments give the verdicts of the whole search, at scale."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.chaos.history import History, Op
from mesh.chaos.linearizability import _search, check, check_key


def W(p, v, a, b, status="ok"):
    return Op(process=p, kind="write", key="x", value=v, invoke=a, complete=b, status=status)


def R(p, r, a, b):
    return Op(process=p, kind="read", key="x", invoke=a, complete=b, status="ok", result=r)


def CAS(p, expected, new, a, b, status="ok", result=None):
    return Op(process=p, kind="cas", key="x", value=(expected, new), invoke=a, complete=b, status=status, result=result)


# --- the reduction keeps verdicts ------------------------------------------------------


def test_an_unseen_unknown_write_explains_a_failed_cas():
    """write(5) timed out and nobody read 5, yet it is why the cas from 1 failed: linearizable, not 'unknown'."""
    ops = [W("a", 1, 0, 1), W("b", 5, 2, None, status="unknown"), R("c", 1, 3, 4),
           CAS("c", 1, 6, 5, 6, result=False), W("a", 7, 7, 8), R("c", 7, 9, 10)]
    assert check(History(tuple(ops))).outcome == "ok"


def test_a_failed_cas_nothing_can_explain_is_a_violation_even_with_unseen_writes_around():
    """The unseen write(5) was sent after the cas completed: it cannot be why the cas failed."""
    ops = [W("a", 1, 0, 1), R("c", 1, 2, 3), CAS("c", 1, 6, 4, 5, result=False),
           W("b", 5, 6, None, status="unknown"), R("c", 1, 7, 8)]
    v = check(History(tuple(ops)))
    assert v.outcome == "violation"
    assert v.keys[0].stuck is not None


def test_an_observed_unknown_write_must_precede_its_first_observer():
    """write(2) timed out but was read at [3, 4]; a read of 1 starting after that is stale."""
    ops = [W("a", 1, 0, 1), W("b", 2, 2, None, status="unknown"), R("c", 2, 3, 4), R("d", 1, 5, 6)]
    v = check(History(tuple(ops)))
    assert v.outcome == "violation"
    assert v.keys[0].stuck == ops[3]


def test_a_value_read_before_its_only_write_was_sent_is_a_violation_at_once():
    ops = [R("c", 9, 0, 1), W("a", 9, 2, 3)]
    result = check_key("x", ops)
    assert result.outcome == "violation" and result.stuck == ops[0] and result.steps == 0


def test_an_unknown_cas_whose_new_value_was_seen_swapped_and_so_saw_its_expected_value():
    """cas(1 -> 2) timed out, 2 was read: 1 was current before it, so write(1) came first."""
    ok = [W("a", 1, 0, 1), CAS("b", 1, 2, 2, None, status="unknown"), R("c", 2, 3, 4)]
    assert check(History(tuple(ok))).outcome == "ok"
    # Here 1 was written only after 2 was already read: the cas cannot have swapped from it.
    bad = [CAS("b", 1, 2, 0, None, status="unknown"), R("c", 2, 1, 2), W("a", 1, 3, 4)]
    assert check(History(tuple(bad))).outcome == "violation"


def test_repeated_values_fall_back_to_the_whole_search():
    """With a value written twice no clamping is sound; the plain search still decides small histories."""
    ops = [W("a", 1, 0, 1), W("b", 2, 2, 3), W("a", 1, 4, 5), R("c", 1, 6, 7)]
    assert check(History(tuple(ops))).outcome == "ok"
    assert check(History(tuple(ops + [R("d", 2, 8, 9)]))).outcome == "violation"


# --- agreement with the whole search (property) ----------------------------------------


@st.composite
def messy_histories(draw):
    """Concurrent ops with unique written values and results drawn from what was written (often wrong)."""
    n = draw(st.integers(1, 10))
    written: list[int] = []
    ops = []
    for t in range(n):
        invoke = draw(st.floats(0, 12))
        complete = invoke + draw(st.floats(0, 4))
        kind = draw(st.sampled_from(["read", "write", "cas", "cas"]))
        p = f"p{t}"
        if kind == "write":
            unknown = draw(st.integers(0, 3)) == 0
            ops.append(W(p, t + 1, invoke, None if unknown else complete, status="unknown" if unknown else "ok"))
            written.append(t + 1)
            continue
        seen = draw(st.sampled_from([None, *written, 99]))
        if kind == "read":
            ops.append(R(p, seen, invoke, complete))
        else:
            status = draw(st.sampled_from(["ok", "ok", "unknown"]))
            result = None if status == "unknown" else draw(st.booleans())
            ops.append(CAS(p, seen, t + 1, invoke, None if status == "unknown" else complete,
                           status=status, result=result))
            written.append(t + 1)
    return ops


@settings(max_examples=400, deadline=None, derandomize=True)
@given(messy_histories())
def test_the_reduced_search_agrees_with_the_whole_search(ops):
    """Never a pass the whole search refutes, never a violation it accepts (on histories it can decide)."""
    reduced = check_key("x", ops).outcome
    kept = [op for op in ops if not (op.status == "unknown" and op.kind == "read")]
    whole = _search("x", kept, None, 1_000_000).outcome
    assert whole != "unknown"
    assert reduced in (whole, "unknown"), (reduced, whole)


# --- scale -------------------------------------------------------------------------------


def simulated_history(seed: int, clients: int = 6, per_client: int = 700) -> list[Op]:
    """Clients run read / write / read-then-cas on one real register, each op taking effect at one instant
    inside its interval; some writes and cas ops time out (applied or not), and for 10 s the cluster is
    down: every op times out and none is applied. Linearizable by construction."""
    rng = random.Random(seed)
    events = []  # (instant, client, op template)
    for c in range(clients):
        t = rng.uniform(0, 0.1)
        for _ in range(per_client):
            t += rng.uniform(0.01, 0.2)
            events.append((t, c, rng.random()))
    events.sort()
    value, counter, ops = None, 0, []
    last_read: dict[int, object] = {}
    for instant, c, roll in events:
        invoke = instant - rng.uniform(0, 0.05)
        complete = instant + rng.uniform(0, 0.05)
        if 40 < instant < 42:
            continue  # the clients back off while the cluster comes back
        cut_off = 30 < instant < 40  # the cluster is down (every node restarting): ops time out, none applies
        times_out = cut_off or rng.random() < 0.05
        p = f"c{c}"
        counter += 1
        if roll < 0.4:
            applied = not times_out or not cut_off and rng.random() < 0.5
            if applied:
                value = f"w{counter}"
            ops.append(W(p, f"w{counter}", invoke, None if times_out else complete,
                         status="unknown" if times_out else "ok"))
        elif roll < 0.7 or c not in last_read:
            if times_out:
                continue  # an unknown read tells nothing
            ops.append(R(p, value, invoke, complete))
            last_read[c] = value
        else:
            expected = last_read.pop(c)
            swapped = value == expected
            applied = swapped and (not times_out or not cut_off and rng.random() < 0.5)
            if applied:
                value = f"c{counter}"
            ops.append(CAS(p, expected, f"c{counter}", invoke, None if times_out else complete,
                           status="unknown" if times_out else "ok", result=None if times_out else swapped))
    return sorted(ops, key=lambda op: op.invoke)


def test_thousands_of_concurrent_ops_with_timeouts_and_an_outage_check_within_the_budget():
    """~4,000 ops on one key, far more concurrent than a chaos run's, ~5% unknown plus a 10 s outage:
    within the default budget the reduced search passes it, while the whole search runs out."""
    ops = simulated_history(seed=1)
    assert len(ops) > 3500 and sum(op.status == "unknown" for op in ops) > 150
    result = check_key("x", ops)
    assert result.outcome == "ok", result.describe()
    assert _search("x", ops, None, result.steps).outcome == "unknown"  # what the reduction buys


def test_one_stale_read_in_thousands_of_ops_is_found_with_a_counterexample():
    ops = simulated_history(seed=2)
    # A read long after two later writes completed, returning the older value.
    writes = [op for op in ops if op.kind == "write" and op.status == "ok" and 50 < op.invoke < 60]
    old, new = writes[0], writes[1]
    stale = R("spy", old.value, new.complete + 0.5, new.complete + 0.6)
    result = check_key("x", ops + [stale])
    assert result.outcome == "violation", result.describe()
    assert "not linearizable" in result.describe()
