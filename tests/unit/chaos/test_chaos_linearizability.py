"""The WGL linearizability checker on register histories: known-good, known-bad, unknowns, and properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.chaos.history import History, Op
from mesh.chaos.linearizability import check


def W(p, v, a, b, status="ok", key="x"):
    return Op(process=p, kind="write", key=key, value=v, invoke=a, complete=b, status=status)


def R(p, r, a, b, status="ok", key="x"):
    return Op(process=p, kind="read", key=key, invoke=a, complete=b, status=status,
              result=None if status == "unknown" else r)


def CAS(p, expected, new, a, b, status="ok", result=None, key="x"):
    return Op(process=p, kind="cas", key=key, value=(expected, new), invoke=a, complete=b, status=status, result=result)


def verdict(*ops, **kw):
    return check(History(ops), **kw)


# --- linearizable ----------------------------------------------------------------


def test_concurrent_writes_and_reads_that_some_order_explains_pass():
    """Overlapping ops may take effect in either order: the read of 1 puts write(1) after write(2)."""
    v = verdict(W("a", 1, 0, 2), W("b", 2, 0, 2), R("c", 1, 1, 3), R("d", 1, 3.5, 4))
    assert v.linearizable and v.outcome == "ok"


def test_reads_concurrent_with_a_write_may_see_old_then_new_but_not_new_then_old():
    """Once a read has seen the new value, a later read (real-time after it) must not see the old one."""
    assert verdict(W("a", 1, 0, 10), R("b", None, 1, 2), R("c", 1, 3, 4)).linearizable
    assert not verdict(W("a", 1, 0, 10), R("b", 1, 1, 2), R("c", None, 3, 4)).linearizable


def test_ops_that_touch_at_one_instant_count_as_concurrent():
    assert verdict(W("a", 1, 0, 1), R("b", None, 1, 2)).linearizable


def test_an_empty_history_is_linearizable():
    assert verdict().linearizable


# --- known-bad ---------------------------------------------------------------------


def test_a_stale_read_after_a_completed_write_fails_with_a_counterexample():
    """A read that starts after write(2) completed must not return 1."""
    stale = R("c", 1, 4, 5)
    v = verdict(W("a", 1, 0, 1), W("b", 2, 2, 3), stale)
    assert v.outcome == "violation" and not v.linearizable
    (key,) = v.keys
    assert key.stuck == stale and key.state == 2
    assert [o.value for o in key.prefix] == [1, 2]
    assert "c read -> 1" in v.counterexample()


def test_a_lost_acknowledged_write_fails():
    """An acknowledged write is visible to every read that starts after it completed."""
    assert not verdict(W("a", 1, 0, 1), R("b", None, 2, 3)).linearizable
    assert not verdict(W("a", 1, 0, 1), W("b", 2, 1.5, 2), R("c", 1, 3, 4)).linearizable


def test_a_cas_that_succeeded_against_a_value_never_written_fails():
    """cas(expected, new) succeeds only if the register held ``expected``."""
    assert not verdict(W("a", 1, 0, 1), CAS("b", 5, 6, 2, 3)).linearizable
    assert verdict(W("a", 1, 0, 1), CAS("b", 1, 6, 2, 3), R("c", 6, 4, 5)).linearizable


def test_a_cas_that_reports_a_failed_comparison_must_have_seen_another_value():
    assert not verdict(W("a", 1, 0, 1), CAS("b", 1, 2, 2, 3, result=False)).linearizable
    assert verdict(W("a", 1, 0, 1), CAS("b", 7, 2, 2, 3, result=False), R("c", 1, 4, 5)).linearizable


# --- outcomes ----------------------------------------------------------------------


def test_an_unknown_write_may_have_happened():
    """An unknown op may take effect anywhere after its invocation."""
    assert verdict(W("a", 1, 0, 1, status="unknown"), R("b", 1, 2, 3)).linearizable


def test_an_unknown_write_may_not_have_happened():
    """... or never."""
    assert verdict(W("a", 1, 0, 1, status="unknown"), R("b", None, 2, 3)).linearizable


def test_an_unknown_write_may_take_effect_after_the_client_gave_up():
    assert verdict(W("a", 1, 0, 1, status="unknown"), R("b", None, 2, 3), R("c", 1, 4, 5)).linearizable


def test_an_unknown_write_cannot_take_effect_twice():
    """Having been seen, an unknown write cannot un-happen."""
    assert not verdict(W("a", 1, 0, None, status="unknown"), R("b", 1, 2, 3), R("c", None, 4, 5)).linearizable


def test_an_unknown_write_cannot_take_effect_before_its_invocation():
    assert not verdict(R("b", 1, 0, 1), W("a", 1, 2, None, status="unknown")).linearizable


def test_an_unknown_cas_applies_only_when_its_comparison_holds():
    assert not verdict(CAS("a", 9, 2, 0, None, status="unknown"), R("b", 2, 2, 3)).linearizable
    assert verdict(W("z", 9, 0, 0.5), CAS("a", 9, 2, 0, None, status="unknown"), R("b", 2, 2, 3)).linearizable


def test_a_failed_write_never_happened():
    """"fail" means it definitely did not take effect."""
    assert not verdict(W("a", 1, 0, 1, status="fail"), R("b", 1, 2, 3)).linearizable
    assert verdict(W("a", 1, 0, 1, status="fail"), R("b", None, 2, 3)).linearizable


def test_an_unknown_read_tells_nothing():
    assert verdict(W("a", 1, 0, 1), R("b", None, 2, None, status="unknown")).linearizable


def test_keys_are_checked_independently_and_the_bad_one_is_named():
    """P-compositionality: a history is linearizable iff each key's sub-history is."""
    v = verdict(W("a", 1, 0, 1, key="k1"), R("b", 1, 2, 3, key="k1"),
                W("a", 1, 0, 1, key="k2"), R("b", None, 2, 3, key="k2"))
    assert [(k.key, k.outcome) for k in v.keys] == [("k1", "ok"), ("k2", "violation")]
    assert "'k2'" in v.summary()


def test_other_op_kinds_are_left_out_and_counted():
    other = Op(process="a", kind="acquire", key="x", value="t", invoke=0, complete=1, status="ok")
    v = verdict(other, W("a", 1, 0, 1))
    assert v.linearizable and v.ignored == 1


def test_an_exhausted_search_budget_is_unknown_never_a_pass():
    """Exceeding the step budget gives "unknown: search budget exhausted", never a false pass."""
    ops = [W(f"p{i}", i, 0, 10) for i in range(8)] + [R("r", 0, 11, 12)]
    v = verdict(*ops, max_steps=20)
    assert v.outcome == "unknown" and not v.linearizable
    assert v.summary().startswith("unknown: search budget exhausted")


def test_many_concurrent_writes_stay_tractable_with_memoization():
    ops = [W(f"p{i}", i, 0, 10) for i in range(14)] + [R("r", 13, 11, 12)]
    assert verdict(*ops).linearizable


# --- properties ------------------------------------------------------------------


@st.composite
def sequential_histories(draw):
    """Ops executed one at a time against a dict at times 0, 1, 2, ...; each op's interval contains its instant."""
    n = draw(st.integers(1, 14))
    store: dict[str, int] = {}
    ops = []
    for t in range(n):
        key = draw(st.sampled_from(["a", "b"]))
        kind = draw(st.sampled_from(["read", "write", "cas", "fail"]))
        invoke = t - draw(st.floats(0, 3))
        complete = t + draw(st.floats(0, 3))
        unknown = draw(st.integers(0, 5)) == 0
        status = "unknown" if unknown else "ok"
        end = None if unknown else complete
        p = f"p{t}"
        fresh = t + 1  # unique per op, never 0 or negative
        if kind == "read":
            ops.append(R(p, store.get(key), invoke, end, status=status, key=key))
        elif kind == "write":
            store[key] = fresh
            ops.append(W(p, fresh, invoke, end, status=status, key=key))
        elif kind == "cas":
            expected = store.get(key) if draw(st.booleans()) else -fresh
            swapped = store.get(key) == expected
            if swapped:
                store[key] = fresh
            ops.append(CAS(p, expected, fresh, invoke, end, status=status, key=key,
                           result=None if unknown else swapped))
        else:  # refused: never applied
            ops.append(W(p, fresh, invoke, complete, status="fail", key=key))
    ops.sort(key=lambda o: o.invoke)
    return ops


@settings(max_examples=200, deadline=None, derandomize=True)
@given(sequential_histories())
def test_histories_of_a_real_sequential_execution_are_linearizable(ops):
    """Ops run one by one on a real dict, with intervals around their instants, are always linearizable."""
    assert check(History(tuple(ops))).linearizable


@settings(max_examples=200, deadline=None, derandomize=True)
@given(sequential_histories(), st.data())
def test_a_read_of_a_value_never_written_is_always_caught(ops, data):
    """Mutating one read's result to a value never written makes the history fail."""
    reads = [i for i, o in enumerate(ops) if o.kind == "read" and o.status == "ok"]
    if not reads:
        return
    i = data.draw(st.sampled_from(reads))
    o = ops[i]
    ops[i] = R(o.process, -10_000, o.invoke, o.complete, key=o.key)
    v = check(History(tuple(ops)))
    assert v.outcome == "violation"
    assert next(k for k in v.keys if k.outcome == "violation").key == o.key


def test_register_values_may_be_json_objects():
    assert verdict(W("a", {"m": [1, 2]}, 0, 1), R("b", {"m": [1, 2]}, 2, 3)).linearizable
    assert not verdict(W("a", {"m": [1, 2]}, 0, 1), R("b", {"m": [1]}, 2, 3)).linearizable
