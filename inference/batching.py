"""Dynamic batching of queued inference requests (pure: no trio, no onnxruntime, no clock).

Theory of operation
-------------------
A request is ``(item_id, model, inputs)``. Two requests are *compatible* when
they are for the same model and their inputs have the same names, dtypes and
shapes past axis 0 (``batch_key``); compatible requests can be concatenated
along axis 0 (``stack``), run once, and the outputs cut back (``unstack``).
Only models whose every input and output has a free first dimension
(``batch_axis_ok``) are batched; the driver says so per request with
``batchable``. Rows of a batch must not see each other: true of the CNNs and
OCR models we serve, not checkable from a spec, so a model that mixes rows
(a recurrent state on axis 0, say) must be submitted with ``batchable=False``.

``BatchQueue`` is the sans-IO core between callers and the one worker that
runs a model at a time. States of a request inside it::

    submit ──> QUEUED ──take──> TAKEN (the queue forgets it; the driver runs it)
                 │
                 └──cancel──> CANCELLED (forgotten)

Policy: the driver calls ``take(now)`` whenever its worker is free. The
request queued longest goes first, together with up to ``max_batch - 1``
compatible requests already waiting, in arrival order. With ``max_wait``
0 (the default) nothing ever waits for company: an idle node runs a lone
request at once, and batches form only from what queued up while the worker
was busy. With ``max_wait > 0`` a group is *ready* when it holds ``max_batch``
requests or its oldest request has waited ``max_wait`` seconds; ``take``
returns the ready group whose oldest request is oldest, so a waiting request
is overtaken only by full groups, and only until its own wait expires.
``next_deadline()`` says when ``take`` will next have something.

Driving it from trio (one task per worker): ``take(trio.current_time())``; on
None wait for the next submit or until ``next_deadline()``; otherwise, in a
worker thread, ``outputs = runtime.run(batch.model, batch.stacked_inputs())``
and ``batch.split(outputs)`` gives each caller its own outputs. If a batch of
several fails, the driver may rerun its requests alone before failing them.

Invariants: every queued request is in exactly one group (its ``batch_key``);
a group is never empty; the queue holds at most ``max_items`` requests.
Must never happen: a request in two batches, a submitted and not cancelled
request that never comes out, a batch that mixes models or shapes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from crdt.errors import LocalProtocolError
from inference.errors import InferenceError, Overloaded
from inference.messages import ModelSpec

Inputs = Mapping[str, np.ndarray]
BatchKey = tuple


def batch_axis_ok(spec: ModelSpec) -> bool:
    """Whether every input and output of ``spec`` has a free (symbolic or unknown) first dimension."""
    tensors = spec.inputs + spec.outputs
    return bool(spec.inputs) and all(t.shape is not None and len(t.shape) >= 1 and not isinstance(t.shape[0], int)
                                     for t in tensors)


def _rows(inputs: Inputs, what: str) -> int:
    """The common axis-0 length of ``inputs``; InferenceError if there is none."""
    if not inputs:
        raise InferenceError(f"inference: cannot batch {what}: it has no inputs")
    rows = set()
    for name, array in inputs.items():
        if not isinstance(array, np.ndarray) or array.ndim == 0:
            raise InferenceError(
                f"inference: cannot batch {what}: {name!r} is not an array with a batch axis; run it alone"
            )
        rows.add(array.shape[0])
    if len(rows) != 1:
        raise InferenceError(
            f"inference: cannot batch {what}: its inputs disagree on the batch size "
            f"({ {n: a.shape[0] for n, a in inputs.items()} }); run it alone"
        )
    return rows.pop()


def _signature(inputs: Inputs) -> tuple:
    return tuple(sorted((name, a.dtype.str, a.shape[1:]) for name, a in inputs.items()))


def batch_key(model: str, inputs: Inputs) -> BatchKey | None:
    """What compatible requests share (model, and per input name, dtype, shape past axis 0); None if unbatchable."""
    try:
        _rows(inputs, "request")
    except InferenceError:
        return None
    return (model, _signature(inputs))


def stack(requests: Sequence[Inputs]) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    """Concatenate requests' inputs along axis 0; also each request's row count, for ``unstack``."""
    if not requests:
        raise InferenceError("inference: cannot batch no requests")
    sizes = tuple(_rows(r, f"request {i}") for i, r in enumerate(requests))
    first = _signature(requests[0])
    for i, r in enumerate(requests[1:], 1):
        sig = _signature(r)
        if sig != first:
            raise InferenceError(
                f"inference: cannot batch request {i} with request 0: inputs (name, dtype, shape past "
                f"axis 0) {_describe(sig)} differ from {_describe(first)}; run them separately"
            )
    if len(requests) == 1:
        return dict(requests[0]), sizes
    return {name: np.concatenate([r[name] for r in requests], axis=0) for name in requests[0]}, sizes


def _describe(sig: tuple) -> str:
    return ", ".join(f"{name} {np.dtype(dt).name} [*{''.join(f', {d}' for d in shape)}]" for name, dt, shape in sig)


def unstack(outputs: Mapping[str, np.ndarray], sizes: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Cut a batched run's outputs back into one dict per request (views, no copies)."""
    if len(sizes) == 1:
        return [dict(outputs)]
    total = sum(sizes)
    for name, array in outputs.items():
        if not isinstance(array, np.ndarray) or array.ndim == 0 or array.shape[0] != total:
            shape = getattr(array, "shape", None)
            raise InferenceError(
                f"inference: batched output {name!r} has shape {shape}, expected {total} rows on axis 0 "
                f"(sizes {list(sizes)}); this model cannot be batched, submit it with batchable=False"
            )
    cuts = np.cumsum(sizes)[:-1]
    parts = {name: np.split(array, cuts, axis=0) for name, array in outputs.items()}
    return [{name: parts[name][i] for name in outputs} for i in range(len(sizes))]


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """Compatible requests for one model, taken together: run ``stacked_inputs()`` once, ``split`` the outputs."""

    model: str
    item_ids: tuple[Hashable, ...]
    requests: tuple[Inputs, ...]
    enqueued: tuple[float, ...]  # each request's submit time, oldest first

    def __post_init__(self) -> None:
        if not self.item_ids or not len(self.item_ids) == len(self.requests) == len(self.enqueued):
            raise LocalProtocolError("inference: a batch needs one or more requests, each with an id and a time")

    def __len__(self) -> int:
        return len(self.item_ids)

    def stacked_inputs(self) -> dict[str, np.ndarray]:
        """What to run: a lone request's inputs as they are, several concatenated (copies: run it off the loop)."""
        if len(self.requests) == 1:
            return dict(self.requests[0])
        return stack(self.requests)[0]

    def split(self, outputs: Mapping[str, np.ndarray]) -> dict[Hashable, dict[str, np.ndarray]]:
        """Each request's outputs by item id, cut from the run's ``outputs``; InferenceError if rows do not match."""
        if len(self.requests) == 1:
            return {self.item_ids[0]: dict(outputs)}
        sizes = [_rows(r, f"request {i}") for i, r in enumerate(self.requests)]
        return dict(zip(self.item_ids, unstack(outputs, sizes)))


@dataclass(slots=True)
class _Queued:
    model: str
    inputs: Inputs
    now: float
    key: Hashable
    seq: int  # submit order: "oldest" means lowest seq, even if two share a ``now``


@dataclass(slots=True)
class _Counters:
    batches: int = 0
    taken: int = 0
    cancelled: int = 0
    rejected: int = 0


class BatchQueue:
    """Bounded queue of inference requests that hands out batches of compatible ones, oldest first."""

    def __init__(self, *, max_items: int = 64, max_batch: int = 8, max_wait: float = 0.0):
        if max_items < 1 or max_batch < 1 or not max_wait >= 0:
            raise LocalProtocolError(
                f"inference: batch queue needs max_items >= 1, max_batch >= 1 and max_wait >= 0 seconds, "
                f"got {max_items}, {max_batch}, {max_wait}"
            )
        self.max_items, self.max_batch, self.max_wait = max_items, max_batch, max_wait
        self._items: dict[Hashable, _Queued] = {}  # arrival order
        self._groups: dict[Hashable, dict[Hashable, None]] = {}  # key -> ids in arrival order (never empty)
        self._counters = _Counters()
        self._seq = 0  # submits so far; also makes a unique key for each unbatchable request

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: Hashable) -> bool:
        return item_id in self._items

    def submit(self, item_id: Hashable, model: str, inputs: Inputs, now: float, *, batchable: bool = True) -> None:
        """Queue a request; Overloaded if ``max_items`` are waiting, LocalProtocolError if ``item_id`` is queued."""
        if item_id in self._items:
            raise LocalProtocolError(f"inference: request {item_id!r} is already queued; ids must be unique")
        if len(self._items) >= self.max_items:
            self._counters.rejected += 1
            raise Overloaded(
                f"inference: the request queue is full ({self.max_items} waiting); "
                f"retry later or send the request to another node"
            )
        self._seq += 1
        key = batch_key(model, inputs) if batchable else None
        if key is None:
            key = ("alone", self._seq)
        self._items[item_id] = _Queued(model, inputs, now, key, self._seq)
        self._groups.setdefault(key, {})[item_id] = None

    def cancel(self, item_id: Hashable) -> bool:
        """Drop a queued request whose caller gave up; False if it is not queued (taken, or never was)."""
        item = self._items.pop(item_id, None)
        if item is None:
            return False
        group = self._groups[item.key]
        del group[item_id]
        if not group:
            del self._groups[item.key]
        self._counters.cancelled += 1
        return True

    def _ready_at(self, key: Hashable) -> float:
        group = self._groups[key]
        head = self._items[next(iter(group))].now
        return head if len(group) >= self.max_batch else head + self.max_wait

    def next_deadline(self) -> float | None:
        """When ``take`` will next return a batch (maybe already past), or None while nothing is queued."""
        if not self._items:
            return None
        if self.max_wait == 0:
            return next(iter(self._items.values())).now
        return min(self._ready_at(key) for key in self._groups)

    def take(self, now: float) -> Batch | None:
        """The next batch for a free worker, or None if nothing is ready at ``now``."""
        if not self._items:
            return None
        if self.max_wait == 0:
            key = next(iter(self._items.values())).key
        else:
            # Every group's head is its oldest request; there are few groups, so look at each.
            ready = [(self._items[next(iter(g))].seq, k) for k, g in self._groups.items() if self._ready_at(k) <= now]
            if not ready:
                return None
            key = min(ready, key=lambda r: r[0])[1]
        group = self._groups[key]
        ids = list(group)[: self.max_batch]
        for item_id in ids:
            del group[item_id]
        if not group:
            del self._groups[key]
        items = [self._items.pop(i) for i in ids]
        self._counters.batches += 1
        self._counters.taken += len(ids)
        return Batch(model=items[0].model, item_ids=tuple(ids), requests=tuple(i.inputs for i in items),
                     enqueued=tuple(i.now for i in items))

    def statistics(self) -> dict[str, float]:
        """Queued requests, batches taken, requests taken, mean batch size, cancelled and rejected requests."""
        c = self._counters
        return {
            "queued": len(self._items),
            "batches": c.batches,
            "taken": c.taken,
            "mean_batch_size": round(c.taken / c.batches, 3) if c.batches else 0.0,
            "cancelled": c.cancelled,
            "rejected": c.rejected,
        }
