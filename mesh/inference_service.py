"""``node.inference``: the driver of a request's attempts, the serving side, and what adverts say about models.

The decisions are pure and live in ``inference/router.py`` (its module doc has
the request's states and transitions); this module does the I/O around them:

* **Requests** (``infer``). One request has one deadline and a fresh id. Each
  attempt asks the router where to run, given this node's profile and queue
  and each live peer's advertised profile and queue (raised by what we sent it
  since its advert). A peer attempt has a bounded time (the router's stall
  bound); a peer that fails, refuses or stalls is excluded and the request is
  routed again — another peer, or here — while the deadline lasts. A split
  request keeps the activation it computed, so a retry does not redo the
  prefix. The first answer is the answer: an abandoned attempt's late reply is
  dropped with the RPC call that was cancelled, so no request is answered twice.
* **Early exit.** For a model with an exit head (``inference/early_exit.py``),
  the device part always runs here first; when the head is confident the answer
  is given here and the features never leave the node; otherwise the upper part
  runs where the router says (the split at the head's cut, or here).
* **Degraded answers.** When no peer can take a request and it cannot run here
  in full (or a full run here would miss the deadline), a model with an exit
  head answers from the head whatever its confidence, flagged ``degraded``. A
  device-tier node never runs an exit model's upper part itself (that is what
  the tiers above are for), so a device cut off from them answers degraded.
* **Result cache.** A request whose model (by sha256) and inputs this node has
  answered before is answered from the cache at once (route ``cache``), before
  any routing: an answer that came from a peer or a split is cached too, so a
  repeat is not sent out again. Exit-head models are not cached here: their
  answer depends on the threshold.
* **Serving** (``on_infer``). A peer's request carries its id; the same id
  from the same peer while the first run is going or recently finished gets
  that run's answer, so a retried send runs the model once. A split request
  must name the same cut signature this node cut the model at.
* **Profiles.** Once a model is loaded, a worker thread cuts it
  (``inference/serving.py``), loads the parts and measures them; the figures go
  into our adverts, so peers plan with this node's measured speed.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import trio

from crdt.errors import MeshError, RemoteProtocolError
from inference import MAX_TENSOR_BYTES, Overloaded, ResultCache, Runtime, result_key, validate_inputs
from inference.batching import Batch, BatchQueue, batch_axis_ok
from inference.early_exit import ANSWER, EXIT_OUTPUT, decide
from inference.errors import InferenceError
from inference.messages import InferReply, InferRequest, PartProfile
from inference.router import DEGRADED, LOCAL, REFUSE, REMOTE, SPLIT, Here, Peer, Route, route
from inference.serving import ServedModel, prepare, run_range
from inference.spec import model_spec_from_bytes

from .compute_pool import ComputePool
from .cpu_budget import CpuUse, memory_available
from .models import record_spec
from .peers import RunTimes

if TYPE_CHECKING:
    from .node import Node

CACHE = "cache"  # the route of an answer from this node's result cache (no model ran)
log = logging.getLogger("meshnode.inference")

MAX_ATTEMPTS = 6  # attempts per request (peers excluded one by one, then here)
RECENT_ANSWERS = 256  # answers kept per node for retried requests (by peer and id)
LINK_WINDOW = 32  # link-cost samples per peer whose minimum is the link's figure
PREPARE_EVERY = 0.5  # seconds between looks for loaded models not yet cut and measured
PLACEMENT_EVERY = 2.0  # seconds between reads of the placement the Raft leader wrote
REGISTRY_WAIT = 1.0  # seconds a request waits for a voter's model registry before using the one last read


@dataclass(frozen=True, slots=True, kw_only=True)
class InferResult:
    """What ``Node.infer`` returns: the outputs and where and how they were made."""

    outputs: dict[str, np.ndarray]
    ran_on: str
    ran_on_name: str
    elapsed_ms: float  # what the caller waited, from the request to the answer, whatever the route
    offloaded: bool
    route: str = LOCAL  # local, remote, split, degraded or early_exit
    degraded: bool = False  # a smaller answer than the model's (an exit head's), given because nothing better could run
    early_exit: bool = False  # answered by the exit head here because it was confident
    attempts: int = 1
    failed_peers: tuple[str, ...] = field(default=())


class InferenceService:
    """Runs requests here, on peers or split; serves peers' requests; measures loaded models."""

    def __init__(self, node: Node) -> None:
        self._node = node
        cfg = node.settings.inference
        self.settings = cfg
        self.runtime: Runtime = node.runtime
        self.parts = Runtime(providers=cfg.providers or None, shared_thread_pool=cfg.shared_thread_pool)
        self.served: dict[str, ServedModel] = {}
        self._prepare_failed: dict[str, str] = {}  # sha256 -> why it could not be cut/measured
        self.workers = trio.CapacityLimiter(cfg.workers)
        self.pool = ComputePool(cfg.workers)  # model runs yield the CPU to the control plane
        self.results = ResultCache(int(cfg.result_cache_mb * 1024 * 1024))
        self.queue = 0
        self.run_times = RunTimes()
        self._sent: dict[str, list[float]] = {}  # peer -> when each of our attempts in flight there was sent
        self._link_ms: dict[str, float] = {}  # peer -> round trip + transfer, measured on our calls
        self._link_samples: dict[str, deque[float]] = {}
        self._serving: dict[tuple[str, str], trio.Event] = {}
        self._answers: OrderedDict[tuple[str, str], dict] = OrderedDict()
        self.placed: dict[str, frozenset[str]] = {}  # model -> peers the leader placed it on
        self._registry: dict = {}  # the model registry as last read (used when no voter answers)
        # Dynamic batching (inference/batching.py): requests that queue up while the workers are busy
        # go together, up to max_batch, when the model has a free batch axis.
        self.cpu = CpuUse()  # our CPU use against our budget: a saturated node passes requests on
        self.batches = BatchQueue(max_items=cfg.queue_limit, max_batch=max(1, cfg.max_batch))
        self._batchable: dict[str, bool] = {}  # model sha256 -> it has a free batch axis
        self._waiting: dict[int, tuple[trio.Event, list]] = {}
        self._kick = trio.Event()
        self._ids = 0
        self._placement_read_at = -PLACEMENT_EVERY
        self.stats = {"infer_local": 0, "infer_offloaded": 0, "infer_split": 0, "infer_served_for_peers": 0,
                      "early_exits": 0, "degraded": 0, "retries": 0, "refused": 0, "duplicates_joined": 0,
                      "batched_runs": 0}

    # -- profiles ------------------------------------------------------------------

    async def run(self) -> None:
        """Run the batch dispatcher; cut and measure each model once loaded (again when its file changes)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._dispatch, nursery)
            await self._watch_models()

    async def _watch_models(self) -> None:
        while True:
            await self._read_placement()
            for name in self.runtime.loaded():
                sha = self.runtime.sha256(name)
                served = self.served.get(name)
                if sha is None or (served is not None and served.sha256 == sha) or sha in self._prepare_failed:
                    continue
                await self._prepare(name, sha)
            for name in [n for n in self.served if not self.runtime.has(n)]:
                del self.served[name]
            await trio.sleep(PREPARE_EVERY)

    async def _read_placement(self) -> None:
        """Which peers the Raft leader placed each model on (a stale read: placement is advice, not a lock)."""
        now = trio.current_time()
        if now < self._placement_read_at + PLACEMENT_EVERY:
            return
        self._placement_read_at = now
        try:
            with trio.move_on_after(2.0):
                listing = await self._node.placement.list(stale=True)
                self.placed = {p["model"]: frozenset(peer for part in p["partitions"] for peer in part["peers"])
                               for p in listing["placements"]}
        except MeshError as exc:
            log.debug("inference: placement not read (%s); keeping the last one", exc)

    async def _prepare(self, name: str, sha: str) -> None:
        path = self._node.models.path(sha)

        def work() -> tuple[ServedModel, bool]:
            data = path.read_bytes()
            spec = model_spec_from_bytes(data, origin=str(path))
            return prepare(self.runtime, self.parts, name, data, spec), batch_axis_ok(spec)

        try:
            async with self.workers:  # measured alone, not beside a request
                served, batchable = await self.pool.run(work)
        except (OSError, InferenceError) as exc:
            self._prepare_failed[sha] = str(exc)
            log.warning("inference: %s is served whole, unmeasured: %s", name, exc)
            return
        self.served[name] = served
        self._batchable[sha] = batchable
        log.info("inference: %s cut into %d partition(s), %s ms", name, served.partitions,
                 "/".join(f"{x:.2f}" for x in served.profile.compute_ms))
        self._node.advert_changed()

    def load_figures(self) -> dict[str, Any]:
        """What our adverts say about inference: queue, loaded models, speeds and profiles."""
        loaded = self.runtime.loaded()
        self.run_times.forget(set(loaded))
        return {
            "queue": self.queue, "models": tuple(loaded), "latency_ms": round(self.run_times.latency_ms, 3),
            "speed_ms": self.run_times.speed_ms(),
            "profiles": tuple(sorted((n, s.profile) for n, s in self.served.items() if n in loaded)),
            "memory_free": memory_available(),
        }

    # -- requests ------------------------------------------------------------------

    async def infer(self, model: str, inputs: dict[str, np.ndarray], *, timeout: float = 30.0,
                    exit_threshold: float | None = None) -> InferResult:
        """Answer one request here, on a peer or split, within ``timeout`` seconds (see the module doc)."""
        node = self._node
        started = trio.current_time()  # the deadline covers looking the model up too
        try:
            # A node that does not vote asks a voter: bounded, so a stopped voter costs little of the deadline.
            with trio.fail_after(min(REGISTRY_WAIT, timeout / 4) if timeout > 0 else REGISTRY_WAIT):
                models = await node.cluster_models()
            self._registry = models
        except (MeshError, trio.TooSlowError) as exc:
            # A node that does not vote asks a voter; cut off from them (or the one asked just died), the
            # registry it last read still says what the model is: inference keeps working offline.
            if model not in self._registry:
                why = str(exc) if isinstance(exc, MeshError) else f"no voter answered within {REGISTRY_WAIT:g} s"
                raise MeshError(f"inference: cannot look up model {model!r}: {why}") from exc
            models = self._registry
        record = models.get(model)
        if record is None:
            raise MeshError(f"inference: model {model!r} is not registered (add it with `meshnode model add`)")
        validate_inputs(record_spec(record), inputs)
        if not (timeout > 0):
            raise MeshError(f"inference: timeout must be > 0 seconds, got {timeout!r}")
        key = None
        if self.results.enabled and all(o.get("name") != EXIT_OUTPUT for o in record.outputs):
            key = result_key(record.sha256, inputs)
            if (cached := self.results.get(key)) is not None:
                return self._answer(cached, route=CACHE, elapsed_ms=(trio.current_time() - started) * 1000)
        threshold = self.settings.exit_threshold if exit_threshold is None else exit_threshold
        deadline = started + timeout
        request_id = os.urandom(8).hex()
        served = self.served.get(model) if self.runtime.sha256(model) == record.sha256 else None
        with trio.move_on_at(deadline) as scope:
            result = await self._attempts(model, record.sha256, inputs, served, threshold, deadline, request_id)
            if key is not None and not result.degraded:
                self.results.put(key, result.outputs)
            # What the caller waited, whatever the route (a split or a peer's answer included).
            return replace(result, elapsed_ms=(trio.current_time() - started) * 1000)
        assert scope.cancelled_caught
        self.stats["refused"] += 1
        raise MeshError(f"inference: {model!r} got no answer within its {timeout:g} s deadline; "
                        "the mesh is overloaded or the peers that had it stalled")

    async def _attempts(self, model: str, sha: str, inputs: dict[str, np.ndarray], served: ServedModel | None,
                        threshold: float, deadline: float, request_id: str) -> InferResult:
        start, feeds, made = 0, inputs, {}
        if served is not None and served.early_exit:
            # The device part runs here first: a confident head answers and the features stay here.
            front = await self._run_parts(served, inputs, 0, 1)
            probs = front[EXIT_OUTPUT]
            if decide(probs, threshold) == ANSWER:
                self.stats["early_exits"] += 1
                return self._answer({EXIT_OUTPUT: probs}, route="early_exit", early_exit=True)
            start, made = 1, {EXIT_OUTPUT: probs}
            feeds = {n: front[n] for n in served.part_inputs[1]}
        excluded: list[str] = []
        for attempt in range(1, MAX_ATTEMPTS + 1):
            remaining = deadline - trio.current_time()
            choice = self._route(model, served, start, excluded, remaining)
            if choice.kind == REFUSE:
                self.stats["refused"] += 1
                raise Overloaded(f"inference: cannot run {model!r}: {choice.reason}")
            if choice.kind == DEGRADED:
                return await self._degraded(model, served, inputs, made, attempt, excluded)
            if choice.kind == LOCAL:
                if start == 0:  # infer() looked in the result cache already
                    result = await self._run_local(model, inputs, offloaded=False, lookup=False)
                    return replace(result, attempts=attempt, failed_peers=tuple(excluded))
                outputs = await self._run_parts(served, feeds, start, served.partitions)
                self.stats["infer_local"] += 1
                return self._answer({**made, **outputs}, route=LOCAL, attempts=attempt, failed=excluded)
            peer = choice.peer
            assert peer is not None
            cut = start
            body_inputs = feeds
            if choice.kind == SPLIT and start == 0:
                body_inputs = await self._run_parts(served, inputs, 0, choice.cut)
                made = {n: v for n, v in body_inputs.items() if n in served.output_names}
                body_inputs = {n: v for n, v in body_inputs.items() if n in served.part_inputs[choice.cut]}
                start, feeds, cut = choice.cut, body_inputs, choice.cut
            try:
                outputs, ran_on = await self._call(peer, InferRequest(
                    model=model, inputs=body_inputs, deadline_s=max(0.001, deadline - trio.current_time()),
                    request_id=request_id, start=cut, cuts=served.signature if cut and served else "",
                    sha256=sha,
                ), choice.attempt_s)
            except (MeshError, InferenceError) as exc:
                excluded.append(peer)
                self.stats["retries"] += 1
                log.info("inference: %s on %s failed (%s); routing again", model, peer[-8:], exc)
                continue
            if cut:
                self.stats["infer_split"] += 1
                return self._answer({**made, **outputs}, ran_on=ran_on, route=SPLIT, attempts=attempt,
                                    failed=excluded)
            self.stats["infer_offloaded"] += 1
            return self._answer(outputs, ran_on=ran_on, route=REMOTE, attempts=attempt, failed=excluded)
        self.stats["refused"] += 1
        raise Overloaded(f"inference: {model!r} failed on {len(excluded)} peers ({', '.join(p[-8:] for p in excluded)}) "
                         "and could not run here")

    def _route(self, model: str, served: ServedModel | None, start: int, excluded: list[str],
               remaining: float) -> Route:
        node = self._node
        now = trio.current_time()
        peers = []
        for rec, load in node.peers.loads(now):
            pid = rec.descriptor.peer_id
            if model not in load.models or not node.admission.admits(pid):
                continue
            theirs = load.profile(model)
            if start and (served is None or theirs is None or theirs.cuts != served.signature):
                continue  # only a peer that cuts as we do can take the rest of a split
            # Its queue as it last told us, plus what we sent it since (our sends before that are in its figure;
            # counting all we have in flight would count our own slowness in handling replies as its queue).
            since = rec.load_at if rec.load_at is not None else now
            queue = load.queue + sum(1 for t in self._sent.get(pid, ()) if t >= since)
            peers.append(Peer(peer=pid, queue=queue, max_queue=load.max_queue,
                              profile=_live(theirs, load.speed(model)), whole_ms=load.speed(model),
                              rtt_ms=self._link_ms.get(pid, 3.0)))
        placed = self.placed.get(model)
        if placed and any(p.peer in placed and p.peer not in excluded and p.has_room for p in peers):
            peers = [p for p in peers if p.peer in placed]  # the leader's placement first; others when it is spent
        mine = _live(served.profile, dict(self.run_times.speed_ms()).get(model)) if served is not None else None
        if start and mine is not None:
            mine = _suffix(mine, start)
            peers = [Peer(peer=p.peer, queue=p.queue, max_queue=p.max_queue, profile=_suffix(p.profile, start),
                          rtt_ms=p.rtt_ms) for p in peers]
        if mine is None and self.runtime.has(model):
            mine = _unmeasured(self.run_times.speed_ms(), model)
        runnable = self.runtime.has(model)
        if start and served is not None and served.early_exit and node.settings.tier == "device":
            runnable = False  # a device hands an exit model's features up a tier; alone, it answers degraded
        self.cpu.sample()
        here = Here(profile=mine if runnable else None, queue=self.queue,
                    limit=self.settings.queue_limit, degraded=served is not None and served.early_exit,
                    saturated=self.cpu.saturated)
        # max_queue 0 (no room here for anyone) sends our own requests away too, as "prefer".
        mode = "prefer" if self.settings.max_queue == 0 and self.settings.offload == "auto" else self.settings.offload
        choice = route(here=here, peers=peers, excluded=excluded, remaining_s=remaining, offload=mode)
        if start and choice.kind in (SPLIT, REMOTE):
            # Past a cut already, the rest goes on from where we are (a later cut would mean running more here).
            choice = replace(choice, kind=SPLIT, cut=start)
        return choice

    async def _call(self, peer: str, request: InferRequest, attempt_s: float) -> tuple[dict[str, np.ndarray], str]:
        started = trio.current_time()
        sent = self._sent.setdefault(peer, [])
        sent.append(started)
        try:
            reply = await self._node.rpc.call(peer, "infer", request.to_wire(), timeout=max(0.05, attempt_s))
        finally:
            sent.remove(started)
            if not sent:
                self._sent.pop(peer, None)
        answer = InferReply.from_wire(reply, max_bytes=MAX_TENSOR_BYTES)
        link = max(0.0, (trio.current_time() - started) * 1000 - answer.elapsed_ms - answer.waited_ms)
        self._link_samples.setdefault(peer, deque(maxlen=LINK_WINDOW)).append(link)
        # The path's own cost is the windowed minimum (BBR's min_rtt, Cardwell et al. 2016): a sample also
        # holds any wait for the CPU at either end (a busy or throttled node), which is queueing, not link.
        self._link_ms[peer] = min(self._link_samples[peer])
        return dict(answer.outputs), answer.ran_on

    def _answer(self, outputs: dict[str, np.ndarray], *, ran_on: str | None = None, route: str = LOCAL,
                attempts: int = 1, failed: list[str] = (), early_exit: bool = False,
                degraded: bool = False, elapsed_ms: float = 0.0) -> InferResult:
        node = self._node
        ran_on = ran_on or node.peer_id
        rec = node.peers.get(ran_on)
        name = node.settings.name if ran_on == node.peer_id else (rec.descriptor.name if rec else ran_on)
        return InferResult(outputs=outputs, ran_on=ran_on, ran_on_name=name, elapsed_ms=elapsed_ms,
                           offloaded=ran_on != node.peer_id, route=route, degraded=degraded,
                           early_exit=early_exit, attempts=attempts, failed_peers=tuple(failed))

    async def _degraded(self, model: str, served: ServedModel | None, inputs: dict[str, np.ndarray],
                        made: dict[str, np.ndarray], attempt: int, excluded: list[str]) -> InferResult:
        assert served is not None and served.early_exit
        probs = made.get(EXIT_OUTPUT)
        if probs is None:
            probs = (await self._run_parts(served, inputs, 0, 1))[EXIT_OUTPUT]
        self.stats["degraded"] += 1
        log.info("inference: %s answered degraded (exit head) after %d attempt(s)", model, attempt)
        return self._answer({EXIT_OUTPUT: probs}, route=DEGRADED, degraded=True, attempts=attempt, failed=excluded)

    async def _run_parts(self, served: ServedModel, feeds: dict[str, np.ndarray], start: int,
                         stop: int) -> dict[str, np.ndarray]:
        limit = self.settings.queue_limit
        if self.queue >= limit:
            raise Overloaded(f"inference: {self._node.settings.name} already has {self.queue} requests queued "
                             f"(queue_limit {limit}); retry later or add capacity")
        self.queue += 1
        try:
            async with self.workers:
                return await self.pool.run(run_range, self.parts, served, feeds, start, stop)
        finally:
            self.queue -= 1

    async def _run_local(self, model: str, inputs: dict[str, np.ndarray], *, offloaded: bool,
                         waited: list[float] | None = None, lookup: bool = True) -> InferResult:
        node = self._node
        # Keyed by the sha256 of the model loaded now, so a re-registered model misses.
        sha = self.runtime.sha256(model) if self.results.enabled else None
        key = result_key(sha, inputs) if sha is not None else None
        if lookup and key is not None and (cached := self.results.get(key)) is not None:
            return InferResult(outputs=cached, ran_on=node.peer_id, ran_on_name=node.settings.name,
                               elapsed_ms=0.0, offloaded=offloaded)
        limit = self.settings.queue_limit
        if self.queue >= limit:
            raise Overloaded(
                f"inference: {node.settings.name} already has {self.queue} requests queued (queue_limit {limit}); "
                "retry later or add capacity"
            )
        self.queue += 1
        queued = time.perf_counter()
        try:
            outputs, elapsed, started = await self._execute(model, inputs, sha or self.runtime.sha256(model))
        finally:
            self.queue -= 1
        if waited is not None:
            waited.append((started - queued) * 1000)
        self.run_times.record(model, elapsed, (time.perf_counter() - queued) * 1000)
        self.stats["infer_local"] += 1
        if key is not None and self.runtime.sha256(model) == sha:  # not reloaded while it ran
            self.results.put(key, outputs)
        return InferResult(outputs=outputs, ran_on=node.peer_id, ran_on_name=node.settings.name,
                           elapsed_ms=elapsed, offloaded=offloaded)

    async def _execute(self, model: str, inputs: dict[str, np.ndarray],
                       sha: str | None) -> tuple[dict[str, np.ndarray], float, float]:
        """Run the whole model: (outputs, ms of the run per request, when it started); batched when it can be."""
        if self.batches.max_batch <= 1 or not self._batchable.get(sha or "", False):
            async with self.workers:
                started = time.perf_counter()
                outputs = await self.pool.run(self.runtime.run, model, inputs)
                return outputs, (time.perf_counter() - started) * 1000, started
        self._ids += 1
        item = self._ids
        done, box = trio.Event(), []
        self.batches.submit(item, model, inputs, trio.current_time())
        self._waiting[item] = (done, box)
        self._kick.set()
        try:
            await done.wait()
        except BaseException:
            self.batches.cancel(item)  # gave up while queued: it leaves the queue (taken: its answer is dropped)
            self._waiting.pop(item, None)
            raise
        result = box[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def _dispatch(self, nursery: trio.Nursery) -> None:
        """Hand a batch to each worker as it frees up: what queued meanwhile goes together."""
        while True:
            if not len(self.batches):
                await self._kick.wait()
                self._kick = trio.Event()
                continue
            token = object()
            await self.workers.acquire_on_behalf_of(token)
            batch = self.batches.take(trio.current_time())
            if batch is None:
                self.workers.release_on_behalf_of(token)
                continue
            nursery.start_soon(self._run_batch, batch, token)

    async def _run_batch(self, batch: Batch, token: object) -> None:
        runtime = self.runtime

        def work() -> dict:
            if len(batch) == 1:
                return {batch.item_ids[0]: runtime.run(batch.model, batch.requests[0])}
            try:
                return batch.split(runtime.run(batch.model, batch.stacked_inputs()))
            except InferenceError:  # rows that do not batch after all: each alone
                return {i: runtime.run(batch.model, r) for i, r in zip(batch.item_ids, batch.requests)}

        started = time.perf_counter()
        try:
            results: dict | Exception = await self.pool.run(work)
        except Exception as exc:  # noqa: BLE001 - every waiter gets it
            results = exc
        finally:
            self.workers.release_on_behalf_of(token)
        per_item = (time.perf_counter() - started) * 1000 / len(batch)
        self.stats["batched_runs"] += len(batch) > 1
        for item in batch.item_ids:
            waiter = self._waiting.pop(item, None)
            if waiter is None:
                continue  # its caller gave up
            done, box = waiter
            box.append(results if isinstance(results, Exception) else (results[item], per_item, started))
            done.set()

    # -- serving peers -------------------------------------------------------------

    async def on_infer(self, peer: str, body: Any) -> dict:
        """A peer's request: run it (once per id), whole or from a partition boundary."""
        if isinstance(body, dict) and set(body) == {"model", "inputs"}:
            body = {**body, "deadline_s": 30.0, "hops": 0}  # the walking skeleton's shape
        request = InferRequest.from_wire(body, max_bytes=MAX_TENSOR_BYTES)
        key = (peer, request.request_id)
        if request.request_id:
            if key in self._answers:
                self.stats["duplicates_joined"] += 1
                return self._answers[key]
            running = self._serving.get(key)
            if running is not None:
                self.stats["duplicates_joined"] += 1
                await running.wait()
                if key in self._answers:
                    return self._answers[key]
                raise MeshError(f"inference: the first copy of request {request.request_id} failed here")
            self._serving[key] = trio.Event()
        try:
            reply = await self._serve(request)
            if request.request_id:
                self._answers[key] = reply
                while len(self._answers) > RECENT_ANSWERS:
                    self._answers.popitem(last=False)
            return reply
        finally:
            if request.request_id:
                self._serving.pop(key).set()

    async def _serve(self, request: InferRequest) -> dict:
        node = self._node
        model = request.model
        if not self.runtime.has(model):
            raise MeshError(f"inference: model {model!r} is not loaded on {node.settings.name}")
        sha = self.runtime.sha256(model)
        if request.sha256 and request.sha256 != sha:
            raise MeshError(f"inference: {node.settings.name} has another version of {model!r} "
                            f"(sha256 {sha[:12]}…, asked for {request.sha256[:12]}…)")
        with trio.fail_after(request.deadline_s):
            if request.start:
                served = self.served.get(model)
                if served is None or served.signature != request.cuts:
                    raise MeshError(f"inference: {node.settings.name} cuts {model!r} differently "
                                    "(or has not measured it yet); send it whole")
                if not request.start < served.partitions:
                    raise RemoteProtocolError(f"inference: {model!r} has no partition {request.start}")
                queued = time.perf_counter()
                outputs = await self._run_parts(served, request.inputs, request.start, served.partitions)
                elapsed = (time.perf_counter() - queued) * 1000
                waited = 0.0
            else:
                waits: list[float] = []
                result = await self._run_local(model, request.inputs, offloaded=True, waited=waits)
                outputs, elapsed, waited = result.outputs, result.elapsed_ms, (waits[0] if waits else 0.0)
        self.stats["infer_served_for_peers"] += 1
        return InferReply(outputs=outputs, ran_on=node.peer_id, elapsed_ms=elapsed, waited_ms=waited).to_wire()

    def statistics(self) -> dict:
        """Counters, queue, measured speed and per-model partitioning (``status`` → inference)."""
        cfg = self.settings
        return dict(
            self.stats, queue=self.queue, max_queue=cfg.max_queue, offload=cfg.offload,
            providers=self.runtime.providers, thread_pool=self.runtime.thread_pool,
            latency_ms=round(self.run_times.latency_ms, 3), speed_ms=dict(self.run_times.speed_ms()),
            result_cache=self.results.statistics(), batching=self.batches.statistics(),
            partitions={n: {"count": s.partitions, "compute_ms": list(s.profile.compute_ms),
                            "early_exit": s.early_exit} for n, s in sorted(self.served.items())},
            link_ms={p[-8:]: round(v, 3) for p, v in sorted(self._link_ms.items())},
            cpu={"budget_cores": round(self.cpu.budget, 3), "used": round(self.cpu.fraction, 3)},
        )


def _live(profile, run_ms: float | None):
    """``profile`` scaled to the whole-model run time measured lately (EWMA), when there is one.

    Profiles are measured once, at load, on an idle node, in runs short enough
    to fit a CPU quota's burst; the live figure is what requests really see
    (a throttled, shared or thermally limited node is slower than its profile).
    """
    if profile is None or not run_ms or profile.whole_ms <= 0:
        return profile
    scale = run_ms / profile.whole_ms
    return PartProfile(cuts=profile.cuts, compute_ms=tuple(x * scale for x in profile.compute_ms),
                       memory_bytes=profile.memory_bytes, boundary_bytes=profile.boundary_bytes)


def _suffix(profile, start: int):
    """The figures of partitions ``start..K-1`` alone (boundary ``start`` becomes the input)."""
    if profile is None:
        return None
    return PartProfile(cuts=profile.cuts, compute_ms=profile.compute_ms[start:],
                       memory_bytes=profile.memory_bytes[start:], boundary_bytes=profile.boundary_bytes[start:])


def _unmeasured(speeds, model: str):
    """A one-partition profile from the run time measured so far (or zero): before the cut-and-measure pass."""
    ms = dict(speeds).get(model, 0.0)
    return PartProfile(cuts="unmeasured", compute_ms=(ms,), memory_bytes=(0,), boundary_bytes=(0, 0))


__all__ = ["InferResult", "InferenceService"]
