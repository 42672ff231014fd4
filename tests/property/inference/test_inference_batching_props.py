"""Batching laws: stack/unstack round-trip; the BatchQueue loses nothing, duplicates nothing, mixes nothing.

Theory of operation of inference/batching.py, "must never happen": a request in two
batches, a submitted and not cancelled request that never comes out, a batch that
mixes models or shapes. Oldest first: with max_wait 0 every batch starts with the
oldest queued request; with max_wait > 0, with the oldest request of a ready group.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inference import Overloaded
from inference.batching import BatchQueue, batch_key, stack, unstack

DTYPES = st.sampled_from([np.dtype("float32"), np.dtype("int64"), np.dtype("uint8"), np.dtype("bool")])


@st.composite
def compatible_requests(draw):
    """Requests with the same input names, dtypes and trailing shapes, each with its own row count."""
    names = draw(st.lists(st.text("abcxyz", min_size=1, max_size=3), min_size=1, max_size=3, unique=True))
    layout = {n: (draw(DTYPES), draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))) for n in names}
    requests = []
    for _ in range(draw(st.integers(1, 5))):
        rows = draw(st.integers(0, 4))
        requests.append({n: draw(hnp.arrays(dt, (rows, *trailing))) for n, (dt, trailing) in layout.items()})
    return requests


@given(compatible_requests())
def test_unstack_of_stack_gives_back_every_request(requests) -> None:
    stacked, sizes = stack(requests)
    assert sizes == tuple(next(iter(r.values())).shape[0] for r in requests)
    assert all(a.shape[0] == sum(sizes) for a in stacked.values())
    back = unstack(stacked, sizes)
    assert len(back) == len(requests)
    for got, want in zip(back, requests):
        assert got.keys() == want.keys()
        for name in want:
            assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
            assert np.array_equal(got[name], want[name], equal_nan=want[name].dtype.kind == "f")


# -- the queue -------------------------------------------------------------------------------

submits = st.tuples(
    st.just("submit"),
    st.sampled_from(["a", "b"]),  # model
    st.integers(1, 2),  # trailing width: two shapes per model
    st.integers(1, 3),  # rows
    st.booleans(),  # batchable
    st.floats(0, 0.4),  # time passing before it
)
ops = st.lists(st.one_of(submits, st.tuples(st.just("take"), st.floats(0, 0.4)),
                         st.tuples(st.just("cancel"), st.integers(0, 40))), max_size=60)


@settings(max_examples=300)
@given(ops, st.integers(1, 4), st.integers(1, 6), st.sampled_from([0.0, 0.25]))
def test_every_request_comes_out_once_alone_or_with_compatible_ones_oldest_first(
    script, max_batch, max_items, max_wait
) -> None:
    queue = BatchQueue(max_items=max_items, max_batch=max_batch, max_wait=max_wait)
    now = 0.0
    queued: dict[int, tuple] = {}  # id -> (group key, submit time), in arrival order
    expected: set[int] = set()  # submitted, not cancelled, not refused
    seen: list[int] = []
    next_id = 0

    def check(batch, at: float) -> None:
        ids = list(batch.item_ids)
        assert 1 <= len(ids) <= max_batch
        assert all(i in queued for i in ids), "a request in two batches, or one never submitted"
        keys = {queued[i][0] for i in ids}
        assert len(keys) == 1, "a batch mixing models or shapes"
        (key,) = keys
        assert key[0] == batch.model
        group = [i for i in queued if queued[i][0] == key]
        assert ids == group[: len(ids)], "a group goes out oldest first, nothing skipped"
        ready = {k: (len(g) >= max_batch or queued[g[0]][1] + max_wait <= at)
                 for k in {v[0] for v in queued.values()}
                 for g in [[i for i in queued if queued[i][0] == k]]}
        assert ready[key]
        first_ready = next(i for i in queued if ready[queued[i][0]])
        assert ids[0] == first_ready, "oldest ready request first"
        if max_wait == 0:
            assert ids[0] == next(iter(queued))
        inputs = batch.stacked_inputs()  # compatible: stacking works
        parts = batch.split(inputs)
        assert list(parts) == ids
        assert all(np.array_equal(parts[i]["x"], batch.requests[k]["x"]) for k, i in enumerate(ids))
        for i in ids:
            del queued[i]
        seen.extend(ids)

    for op in script:
        if op[0] == "submit":
            _, model, width, rows, batchable, dt = op
            now += dt
            inputs = {"x": np.full((rows, width), next_id, np.float32)}
            key = batch_key(model, inputs) if batchable else (model, "alone", next_id)
            try:
                queue.submit(next_id, model, inputs, now, batchable=batchable)
            except Overloaded:
                assert len(queued) == max_items
            else:
                queued[next_id] = (key, now)
                expected.add(next_id)
            next_id += 1
        elif op[0] == "take":
            now += op[1]
            batch = queue.take(now)
            deadline = queue.next_deadline() if batch is None else None
            if batch is None:
                assert deadline is None or deadline > now
                assert (deadline is None) == (not queued)
            else:
                check(batch, now)
        else:
            victim = op[1]
            was_queued = victim in queued
            assert queue.cancel(victim) == was_queued
            if was_queued:
                del queued[victim]
                expected.discard(victim)
        assert len(queue) == len(queued) <= max_items
    # Drain: a free worker keeps taking at each deadline until nothing is left.
    while (deadline := queue.next_deadline()) is not None:
        now = max(now, deadline)
        batch = queue.take(now)
        assert batch is not None, "next_deadline promised a batch"
        check(batch, now)
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    stats = queue.statistics()
    assert stats["taken"] == len(seen) and stats["queued"] == 0
