"""The chaos history model: validated ops, the file format's round trip, and the recorder."""

from __future__ import annotations

import json
import math

import pytest

from mesh.chaos.history import History, HistoryError, Op, Recorder


def op(**kw):
    base = {"process": "c1", "kind": "write", "key": "x", "value": 1, "invoke": 0.0, "complete": 1.0, "status": "ok"}
    base.update(kw)
    return Op(**base)


def test_round_trip_keeps_every_op_equal():
    """Lists inside values are read back as tuples, so an op equals itself after a round trip."""
    h = History((op(), op(kind="cas", value=[1, 2], result=True),
                 op(kind="read", value=None, result={"a": [1, 2]}),
                 op(status="unknown", complete=None)))
    assert History.from_json(h.to_json()) == h


def test_unknown_op_ends_at_infinity_and_others_at_their_completion():
    """An unknown op may take effect any time after invocation: its completion is +infinity."""
    assert op(status="unknown", complete=2.0).end == math.inf
    assert op(status="fail", complete=2.0).end == 2.0


@pytest.mark.parametrize("fields, named", [
    ({"status": "done"}, "'status'"),
    ({"complete": None}, "'complete'"),
    ({"complete": -1.0}, "'complete'"),
    ({"invoke": float("nan")}, "'invoke'"),
    ({"invoke": True}, "'invoke'"),
    ({"process": ""}, "'process'"),
    ({"kind": "cas", "value": 3}, "'value'"),
    ({"value": {1, 2}}, "'value'"),
])
def test_a_bad_op_is_refused_naming_the_field(fields, named):
    with pytest.raises(HistoryError, match=f"^chaos: .*{named}"):
        op(**fields)


def good_file(**changes):
    obj = json.loads(History((op(), op(kind="read", value=None, result=1))).to_json())
    obj.update(changes)
    return obj


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o.update(format="other"), r"history field 'format'"),
    (lambda o: o.update(version=99), r"history field 'version'"),
    (lambda o: o.update(ops={}), r"history field 'ops'"),
    (lambda o: o["ops"][1].update(status="maybe"), r"op 1: field 'status'"),
    (lambda o: o["ops"][0].pop("invoke"), r"op 0 lacks the required field 'invoke'"),
    (lambda o: o["ops"][0].update(colour="red"), r"op 0 has unknown field\(s\) 'colour'"),
    (lambda o: o["ops"].append(7), r"op 2 must be an object"),
])
def test_a_malformed_history_file_names_the_op_and_field(mutate, message):
    """A malformed history file gives a clear "chaos: ..." error naming the field."""
    obj = good_file()
    mutate(obj)
    with pytest.raises(HistoryError, match=f"^chaos: .*{message}"):
        History.from_json(json.dumps(obj))


def test_a_file_that_is_not_json_is_refused():
    with pytest.raises(HistoryError, match="^chaos: a history file must be JSON"):
        History.from_json("{nope")


def test_by_key_partitions_and_filter_selects():
    h = History((op(key="a"), op(key="b", kind="read", value=None, result=None), op(key="a", status="fail")))
    parts = h.by_key()
    assert list(parts) == ["a", "b"] and len(parts["a"]) == 2
    assert len(h.filter(kinds=["read"])) == 1 and len(h.filter(statuses=["ok"])) == 2


def test_recorder_keeps_invocation_order_and_pending_ops_are_unknown():
    r = Recorder()
    first = r.invoke(process="c1", kind="write", key="x", value=1, now=0.0)
    second = r.invoke(process="c2", kind="read", key="x", now=0.5)
    r.complete(second, status="ok", now=1.0, result=None)
    h = r.history()
    assert [o.process for o in h] == ["c1", "c2"]
    assert h[0].status == "unknown" and h[0].complete is None
    r.complete(first, status="ok", now=2.0)
    with pytest.raises(HistoryError, match="^chaos: no pending invocation"):
        r.complete(first, status="ok", now=3.0)


def test_the_recorder_is_safe_while_client_threads_record_and_the_run_reads_it():
    """Client threads invoke and complete while the progress line reads: no error, no handle twice, none lost."""
    import sys
    import threading

    rec = Recorder()
    per_thread, threads = 5000, 4
    start = threading.Barrier(threads + 1)

    def client(name: str) -> None:
        start.wait()
        for i in range(per_thread):
            h = rec.invoke(process=name, kind="write", key="k", value=f"{name}-{i}", now=float(i))
            rec.complete(h, status="ok", now=float(i) + 0.5)

    pool = [threading.Thread(target=client, args=(f"c{n}",)) for n in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a race shows within the run
    try:
        for t in pool:
            t.start()
        start.wait()
        reads = 0
        while any(t.is_alive() for t in pool):
            rec.history()  # raised "dictionary changed size during iteration" before the lock
            reads += 1
    finally:
        for t in pool:
            t.join()
        sys.setswitchinterval(interval)
    history = rec.history()
    assert reads > 0 and rec.count() == len(history) == per_thread * threads
    assert len({op.value for op in history}) == per_thread * threads
    assert all(op.status == "ok" for op in history)
