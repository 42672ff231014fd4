"""Dynamic batching: which models batch, stack/unstack, and the BatchQueue policy (time is an argument)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crdt.errors import LocalProtocolError
from inference import InferenceError, ModelSpec, Overloaded, Runtime, TensorSpec
from inference.batching import (
    Batch,
    BatchQueue,
    batch_axis_ok,
    batch_key,
    stack,
    unstack,
)

SHA = "b" * 64


def spec(inputs: list[tuple], outputs: list[tuple]) -> ModelSpec:
    return ModelSpec(SHA, 1, tuple(TensorSpec(*t) for t in inputs), tuple(TensorSpec(*t) for t in outputs))


def x(rows: int, width: int = 4, fill: float = 0.0, dtype: str = "float32") -> dict[str, np.ndarray]:
    return {"x": np.full((rows, width), fill, dtype)}


# -- which models batch --------------------------------------------------------------------


def test_free_first_dimension_everywhere_batches() -> None:
    assert batch_axis_ok(spec([("x", "float32", ("N", 3, 32, 32))], [("y", "float32", ("N", 10))]))
    # paddle2onnx's unknown dims (None) and a different symbol on the output count as free.
    assert batch_axis_ok(spec([("x", "float32", (None, 3, None, None))], [("y", "float32", ("d0", 2))]))


@pytest.mark.parametrize("inputs, outputs", [
    ([("x", "float32", (1, 3, 32, 32))], [("y", "float32", ("N", 10))]),  # fixed batch of 1
    ([("x", "float32", ("N", 4))], [("y", "float32", (1, 10))]),  # output not per row
    ([("x", "float32", ("N", 4)), ("sr", "int64", ())], [("y", "float32", ("N", 1))]),  # scalar input
    ([("x", "float32", None)], [("y", "float32", ("N", 1))]),  # rank unknown
    # silero-vad: its recurrent state carries the batch on axis 1, so rows cannot be cut on axis 0.
    ([("input", "float32", (None, None)), ("state", "float32", (2, None, 128))], [("output", "float32", (None, 1))]),
])
def test_a_fixed_or_missing_first_dimension_does_not_batch(inputs, outputs) -> None:
    assert not batch_axis_ok(spec(inputs, outputs))


def test_the_generated_and_demo_models_batch(demo_spec: ModelSpec) -> None:
    from inference.cnn import mobilenet_v2
    from inference.spec import model_spec_from_bytes

    assert batch_axis_ok(demo_spec)
    assert batch_axis_ok(model_spec_from_bytes(mobilenet_v2(0, width=0.25, size=32).SerializeToString()))


# -- stack / unstack -----------------------------------------------------------------------


def test_stack_concatenates_requests_of_several_rows_and_unstack_cuts_them_back() -> None:
    requests = [x(1, fill=1), x(3, fill=2), x(2, fill=3)]
    stacked, sizes = stack(requests)
    assert sizes == (1, 3, 2) and stacked["x"].shape == (6, 4)
    parts = unstack({"y": stacked["x"] * 10}, sizes)
    assert [p["y"].shape for p in parts] == [(1, 4), (3, 4), (2, 4)]
    assert [float(p["y"][0, 0]) for p in parts] == [10.0, 20.0, 30.0]


def test_one_request_is_passed_through_without_a_copy() -> None:
    request = x(2)
    stacked, sizes = stack([request])
    assert stacked["x"] is request["x"] and sizes == (2,)
    out = {"y": np.zeros((2, 1))}
    assert unstack(out, sizes)[0]["y"] is out["y"]


@pytest.mark.parametrize("other, says", [
    (x(1, width=5), "differ"),  # non-batch dim
    (x(1, dtype="float64"), "differ"),  # dtype
    ({"z": np.zeros((1, 4), np.float32)}, "differ"),  # input name
    ({"x": np.float32(1.0)}, "batch axis"),  # scalar
    ({"x": np.zeros((1, 4), np.float32), "m": np.zeros((2, 4), np.float32)}, "disagree on the batch size"),
])
def test_stack_refuses_incompatible_requests_so_the_caller_runs_them_alone(other, says) -> None:
    with pytest.raises(InferenceError, match=f"^inference: cannot batch .*{says}"):
        stack([x(1), other])


def test_unstack_refuses_an_output_without_one_row_per_input_row() -> None:
    with pytest.raises(InferenceError, match="^inference: batched output 'y' has shape .*batchable=False"):
        unstack({"y": np.zeros((1, 10))}, (2, 1))


def test_batch_key_groups_by_model_names_dtypes_and_trailing_shape() -> None:
    assert batch_key("m", x(1)) == batch_key("m", x(5))
    assert batch_key("m", x(1)) != batch_key("other", x(1))
    assert batch_key("m", x(1)) != batch_key("m", x(1, width=5))
    assert batch_key("m", {"x": np.float32(1.0)}) is None


def test_a_batched_run_matches_single_runs(demo_path: Path, demo_spec: ModelSpec) -> None:
    runtime = Runtime()
    runtime.load("demo", demo_path, demo_spec)
    rng = np.random.default_rng(3)
    requests = [{"image": rng.standard_normal((n, 3, 32, 32)).astype(np.float32)} for n in (1, 2, 1)]
    queue = BatchQueue()
    for i, r in enumerate(requests):
        queue.submit(i, "demo", r, now=0.0)
    batch = queue.take(0.0)
    assert batch is not None and batch.item_ids == (0, 1, 2)
    results = batch.split(runtime.run("demo", batch.stacked_inputs()))
    for i, r in enumerate(requests):
        # Batched kernels may sum in another order: equal to float32 rounding, not bit for bit.
        np.testing.assert_allclose(results[i]["probs"], runtime.run("demo", r)["probs"], rtol=1e-4, atol=1e-6)


# -- BatchQueue ------------------------------------------------------------------------------


def test_an_idle_worker_takes_a_lone_request_at_once() -> None:
    queue = BatchQueue()
    queue.submit("a", "m", x(1), now=5.0)
    assert queue.next_deadline() == 5.0
    batch = queue.take(5.0)
    assert batch == Batch(model="m", item_ids=("a",), requests=(batch.requests[0],), enqueued=(5.0,))
    assert queue.take(5.0) is None and queue.next_deadline() is None


def test_what_queued_while_the_worker_was_busy_goes_out_together_up_to_max_batch() -> None:
    queue = BatchQueue(max_batch=3)
    for i in range(5):
        queue.submit(i, "m", x(1), now=float(i))
    assert queue.take(5.0).item_ids == (0, 1, 2)
    assert queue.take(5.0).item_ids == (3, 4)
    assert queue.statistics() == {"queued": 0, "batches": 2, "taken": 5, "mean_batch_size": 2.5,
                                  "cancelled": 0, "rejected": 0}


def test_batches_never_mix_models_or_shapes_and_the_oldest_goes_first() -> None:
    queue = BatchQueue()
    queue.submit("a1", "a", x(1), now=0.0)
    queue.submit("b1", "b", x(1), now=1.0)
    queue.submit("a2", "a", x(2, width=5), now=2.0)  # same model, other shape
    queue.submit("a3", "a", x(2), now=3.0)
    queue.submit("b2", "b", x(1), now=4.0)
    assert [(b.model, b.item_ids) for b in iter(lambda: queue.take(9.0), None)] == [
        ("a", ("a1", "a3")), ("b", ("b1", "b2")), ("a", ("a2",))]


def test_an_unbatchable_request_goes_alone_and_passes_through_untouched() -> None:
    queue = BatchQueue()
    vad = {"input": np.zeros((1, 512), np.float32), "sr": np.array(16000, np.int64)}  # a scalar input
    queue.submit(1, "vad", vad, now=0.0)  # no batch axis on "sr": alone even if called batchable
    queue.submit(2, "m", x(1), now=0.0, batchable=False)
    queue.submit(3, "m", x(1), now=0.0, batchable=False)
    batch = queue.take(0.0)
    assert batch.item_ids == (1,) and batch.stacked_inputs()["sr"] is vad["sr"]
    out = {"output": np.ones((1, 1))}
    assert batch.split(out)[1]["output"] is out["output"]
    assert queue.take(0.0).item_ids == (2,)
    assert queue.take(0.0).item_ids == (3,)


def test_a_full_queue_is_overloaded_and_says_so() -> None:
    queue = BatchQueue(max_items=2)
    queue.submit(1, "m", x(1), now=0.0)
    queue.submit(2, "m", x(1), now=0.0)
    with pytest.raises(Overloaded, match="^inference: the request queue is full \\(2 waiting\\)"):
        queue.submit(3, "m", x(1), now=0.0)
    assert queue.statistics()["rejected"] == 1
    queue.take(0.0)
    queue.submit(3, "m", x(1), now=0.0)  # room again


def test_a_cancelled_request_leaves_the_queue() -> None:
    queue = BatchQueue()
    queue.submit(1, "m", x(1), now=0.0)
    queue.submit(2, "m", x(1), now=0.0)
    assert queue.cancel(1) and 1 not in queue
    assert not queue.cancel(1)  # twice: nothing left to cancel
    assert queue.take(0.0).item_ids == (2,)
    assert not queue.cancel(2)  # already taken: the driver owns it now
    assert queue.statistics()["cancelled"] == 1


def test_a_queued_id_cannot_be_submitted_again() -> None:
    queue = BatchQueue()
    queue.submit(1, "m", x(1), now=0.0)
    with pytest.raises(LocalProtocolError, match="^inference: request 1 is already queued"):
        queue.submit(1, "m", x(1), now=0.0)


def test_with_max_wait_a_lone_request_waits_for_company_until_its_deadline() -> None:
    queue = BatchQueue(max_batch=3, max_wait=0.010)
    queue.submit(1, "m", x(1), now=1.000)
    assert queue.next_deadline() == pytest.approx(1.010)
    assert queue.take(1.005) is None
    queue.submit(2, "m", x(1), now=1.006)
    assert queue.take(1.009) is None
    assert queue.take(1.010).item_ids == (1, 2)


def test_with_max_wait_a_full_group_goes_at_once_and_may_pass_an_older_waiting_one() -> None:
    queue = BatchQueue(max_batch=2, max_wait=1.0)
    queue.submit("a", "a", x(1), now=0.0)
    queue.submit("b1", "b", x(1), now=0.1)
    queue.submit("b2", "b", x(1), now=0.2)
    assert queue.next_deadline() == 0.1  # b is full since b2 arrived
    assert queue.take(0.2).item_ids == ("b1", "b2")
    assert queue.take(0.5) is None
    assert queue.take(1.0).item_ids == ("a",)


@pytest.mark.parametrize("options", [{"max_items": 0}, {"max_batch": 0}, {"max_wait": -1.0}, {"max_wait": float("nan")}])
def test_bad_queue_options_are_refused(options) -> None:
    with pytest.raises(LocalProtocolError, match="^inference: batch queue needs"):
        BatchQueue(**options)
