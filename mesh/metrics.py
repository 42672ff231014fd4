"""Prometheus metrics for one node, served as ``GET /metrics`` by the local HTTP API.

Theory of operation
-------------------
Almost everything a scrape reports, the node already counts for ``meshnode
status``: each subsystem has a ``statistics()`` or ``status()`` returning plain
numbers. This module keeps no second copy of those counters; a scrape reads
them afresh, in two steps.

1. ``gather(node)`` reads each subsystem into one plain dict, the *snapshot*,
   shaped like ``Node.status()`` (``peers``, ``raft``, ``sensors``,
   ``inference``, ``rpc``, …). Each section is read on its own: a section that
   raises is left out and named in ``snapshot["failed"]``. A forwarder (no
   Raft log) reports its role and the term its voters advertised, nothing
   more.
2. ``families(snapshot, requests)`` turns a snapshot into metric families. It
   reads no node, so the unit tests feed it a hand-written snapshot. Each
   section renders on its own too: a malformed one is named in
   ``meshnode_metrics_section_failed`` and the rest still render.

Invariant: a scrape never fails because one part of the node is missing or
broken; it reports less, and says which part.

The one thing no subsystem keeps is per-request figures: how many requests
each model got, where each was answered (local / remote / split / early_exit /
degraded / cache) and how long it took. ``InferenceMetrics`` keeps them, with
fixed histogram buckets and a bounded number of model names (the name comes
from the request, so an unregistered one must not grow the label set without
end); ``InferenceMetrics.measure`` wraps one ``Node.infer`` call to feed it.

Each node has its own ``CollectorRegistry`` (``registry_for(node)``), never
prometheus_client's global one: several nodes run in one process in tests and
embeddings, and each must report only itself. The registries live in a
``WeakKeyDictionary`` and go with their node.

Counters count from the node's start (a restart resets them; Prometheus's
``rate()`` expects that). The only clock read here is trio's, in ``measure``:
monotonic, and a test's ``MockClock`` when there is one.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from inference import Overloaded

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("meshnode.metrics")

T = TypeVar("T")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the request latency histogram: a cached answer to a deadline-long request."""
MAX_MODELS = 64
RECENT = 50  # requests kept for the dashboard's "where each recent inference ran"
"""Distinct model names kept as labels; later ones are counted under ``OTHER_MODEL``."""
OTHER_MODEL = "other"
PEER_STATES = ("alive", "suspect", "gone", "left")  # mesh/peers.py PeerRecord.state
RAFT_ROLES = ("leader", "follower", "candidate", "forwarder")  # forwarder: a node that does not vote


class InferenceMetrics:
    """Requests answered by ``Node.infer``: counts by (model, route), errors by (model, reason), latency."""

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self._answered: dict[tuple[str, str], list] = {}  # (model, route) -> [per-bucket counts (+Inf last), sum]
        self._errors: dict[tuple[str, str], int] = {}
        self._models: set[str] = set()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)  # the last requests, newest last (dashboard)

    def _model(self, model: str) -> str:
        if model not in self._models:
            if len(self._models) >= MAX_MODELS:
                return OTHER_MODEL
            self._models.add(model)
        return model

    def observe(self, model: str, route: str, seconds: float) -> None:
        """One answered request of ``model``, given by ``route``, ``seconds`` after it was asked."""
        slot = self._answered.setdefault((self._model(model), route), [[0] * (len(self.buckets) + 1), 0.0])
        slot[0][bisect.bisect_left(self.buckets, seconds)] += 1  # a bound is inclusive: le="0.1" holds 0.1
        slot[1] += seconds

    def failed(self, model: str, reason: str) -> None:
        """One request of ``model`` that got no answer: ``refused`` (overloaded) or ``error``."""
        key = (self._model(model), reason)
        self._errors[key] = self._errors.get(key, 0) + 1

    async def measure(self, model: str, answer: Awaitable[T]) -> T:
        """Await ``answer`` (an ``infer`` call for ``model``) and count it: route and latency, or the failure."""
        started = trio.current_time()
        try:
            result = await answer
        except Overloaded as exc:
            self.failed(model, "refused")
            self._remember(model, "refused", "", started, str(exc))
            raise
        except Exception as exc:
            self.failed(model, "error")
            self._remember(model, "error", "", started, str(exc))
            raise
        route = str(getattr(result, "route", "local"))
        self.observe(model, route, trio.current_time() - started)
        self._remember(model, route, str(getattr(result, "ran_on_name", "")), started, "")
        return result

    def _remember(self, model: str, route: str, ran_on: str, started: float, error: str) -> None:
        self.recent.append({"at": round(time.time(), 3), "model": model, "route": route, "ran_on": ran_on,
                            "ms": round((trio.current_time() - started) * 1000, 2), "error": error[:200]})

    def families(self) -> Iterator[Metric]:
        """The request counters and the latency histogram."""
        requests = CounterMetricFamily("meshnode_inference_requests", "Inference requests answered by this "
                                       "node's Node.infer, by model and by where they were answered",
                                       labels=["model", "route"])
        latency = HistogramMetricFamily("meshnode_inference_request_duration_seconds", "Time from asking to "
                                        "answer of inference requests, by model and route", labels=["model", "route"])
        for (model, route), (counts, total) in sorted(self._answered.items()):
            requests.add_metric([model, route], sum(counts))
            cumulative, running = [], 0
            for bound, n in zip((*map(_bound, self.buckets), "+Inf"), counts):
                running += n
                cumulative.append((bound, running))
            latency.add_metric([model, route], cumulative, total)
        errors = CounterMetricFamily("meshnode_inference_request_errors", "Inference requests that got no answer, "
                                     "by model and reason (refused: overloaded; error: anything else)",
                                     labels=["model", "reason"])
        for (model, reason), n in sorted(self._errors.items()):
            errors.add_metric([model, reason], n)
        yield from (requests, latency, errors)


def _bound(x: float) -> str:
    return repr(float(x))


# -- reading the node ------------------------------------------------------------------


def _read_node(node: Node) -> dict:
    cfg = node.settings
    return {"peer_id": node.peer_id, "name": cfg.name, "tier": cfg.tier, "started_at": node.started_at}


def _read_raft(node: Node) -> dict:
    raft = node.raft
    if raft is None:  # a forwarder: the role, and the term and leader its voters advertised
        st = node.raft_status()
        return {"role": st["role"], "term": st["term"], "leader": st["leader"]}
    st = raft.status()
    return {"role": st.role, "term": st.term, "leader": st.leader, "commit_index": st.commit_index,
            "last_applied": st.last_applied, "last_index": st.last_index, "voters": list(st.voters),
            "messages_sent": raft.messages_sent()}


_READERS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("node", _read_node),
    ("peers", lambda n: n.peer_list()),
    ("raft", _read_raft),
    ("sensors", lambda n: n.state.statistics()),
    ("inference", lambda n: n.inference.statistics()),
    ("models", lambda n: list(n.runtime.loaded())),
    ("rpc", lambda n: n.rpc.statistics()),
    ("adverts", lambda n: dict(n.advert_stats)),
    ("membership", lambda n: n.membership.statistics()),
    ("admission", lambda n: n.admission.statistics()),
    ("placement", lambda n: n.placement_driver.statistics()),
)


def gather(node: Any, warned: set[str] | None = None) -> dict:
    """A snapshot of ``node``'s figures; sections that raise are left out and listed in ``failed``."""
    snapshot: dict[str, Any] = {"failed": []}
    for section, read in _READERS:
        try:
            snapshot[section] = read(node)
        except Exception as exc:  # noqa: BLE001 - a scrape reports what it can (module doc)
            snapshot["failed"].append(section)
            first = warned is not None and section not in warned
            log.log(logging.WARNING if first else logging.DEBUG, "metrics: cannot read %s: %r", section, exc)
            if warned is not None:
                warned.add(section)
    return snapshot


# -- rendering a snapshot --------------------------------------------------------------


def _num(value: Any) -> float | None:
    """``value`` as a sample value, or None when it is not a finite number (then the metric is left out)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


Row = tuple[str, str, str, str]  # (key in the section, "counter" or "gauge", metric name, help)


def _scalars(section: dict, rows: Iterable[Row]) -> Iterator[Metric]:
    for key, kind, name, doc in rows:
        value = _num(section.get(key))
        if value is not None:
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(f"meshnode_{name}", doc, value=value)


def _labelled(section: dict, kind: str, name: str, doc: str, label: str,
              keys: Iterable[tuple[str, str]]) -> Iterator[Metric]:
    """One family whose samples are ``section[key]`` for each (key, label value) present."""
    family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(f"meshnode_{name}", doc, labels=[label])
    found = False
    for key, value in keys:
        v = _num(section.get(key))
        if v is not None:
            family.add_metric([value], v)
            found = True
    if found:
        yield family


def _node(s: dict) -> Iterator[Metric]:
    info = GaugeMetricFamily("meshnode_node_info", "This node: peer id, name and tier (always 1)",
                             labels=["peer_id", "name", "tier"])
    info.add_metric([str(s.get("peer_id", "")), str(s.get("name", "")), str(s.get("tier", ""))], 1)
    yield info
    yield from _scalars(s, [("started_at", "gauge", "start_time_seconds", "When the node started, Unix seconds")])


def _peers(peers: list) -> Iterator[Metric]:
    counts = dict.fromkeys(PEER_STATES, 0)
    for peer in peers:
        state = str(peer["state"])
        counts[state] = counts.get(state, 0) + 1
    family = GaugeMetricFamily("meshnode_peers", "Known peers by state (alive / suspect / gone / left)",
                               labels=["state"])
    for state, n in counts.items():
        family.add_metric([state], n)
    yield family


def _raft(s: dict) -> Iterator[Metric]:
    role = str(s["role"])
    roles = GaugeMetricFamily("meshnode_raft_role", "This node's Raft role: 1 for the current one "
                              "(forwarder: a node that does not vote)", labels=["role"])
    for r in (*RAFT_ROLES, *([role] if role not in RAFT_ROLES else [])):
        roles.add_metric([r], 1 if r == role else 0)
    yield roles
    yield GaugeMetricFamily("meshnode_raft_leader_known", "1 when this node knows a Raft leader",
                            value=1 if s.get("leader") else 0)
    yield from _scalars(s, [
        ("term", "gauge", "raft_term", "Raft term (a forwarder: the highest its voters advertised)"),
        ("commit_index", "gauge", "raft_commit_index", "Index of the last Raft entry known committed"),
        ("last_applied", "gauge", "raft_last_applied", "Index of the last Raft entry applied to the state here"),
        ("last_index", "gauge", "raft_last_log_index", "Index of the last entry in this node's Raft log"),
        ("messages_sent", "counter", "raft_messages_sent", "Raft messages sent to other voters"),
    ])
    commit, applied = _num(s.get("commit_index")), _num(s.get("last_applied"))
    if commit is not None and applied is not None:
        yield GaugeMetricFamily("meshnode_raft_apply_lag", "Committed Raft entries not yet applied here "
                                "(commit index - last applied)", value=commit - applied)
    voters = s.get("voters")
    if isinstance(voters, (list, tuple)):
        yield GaugeMetricFamily("meshnode_raft_voters", "Raft voters, this node included", value=len(voters))


def _sensors(s: dict, names: dict[str, str] | None = None) -> Iterator[Metric]:
    names = names or {}  # peer id -> name, for readable labels
    # The top level is the shared store's (mesh/sensor_scopes.py); the sync figures below are its.
    scopes = {"shared": s, "local": s.get("local") or {}, "zone": s.get("zone") or {}}
    yield from _labelled({scope: d.get("keys") for scope, d in scopes.items()}, "gauge", "sensor_keys",
                         "Sensor-state keys holding a value here, by scope (local-only, zone-only, shared)",
                         "scope", [(x, x) for x in scopes])
    yield from _scalars(s, [
        ("tombstones", "gauge", "sensor_tombstones", "Deleted shared keys remembered until every peer has them"),
        ("send_errors", "counter", "sensor_sync_send_errors", "Shared-store sync messages that could not be sent"),
        ("bad_messages", "counter", "sensor_sync_bad_messages", "Malformed sensor sync messages received"),
    ])
    if "broken" in s:  # the reason a write to disk failed, "" while none has
        yield GaugeMetricFamily("meshnode_sensor_store_broken", "1 when a write to the sensor store failed "
                                "(no writes or sync until restart)", value=1 if s["broken"] else 0)
    yield from _labelled(s, "counter", "sensor_sync_messages", "Shared sensor-store sync messages sent and "
                         "received",
                         "direction", [("sent", "sent"), ("received", "received")])
    store = s.get("store") or {}
    yield from _scalars(store, [
        ("store_bytes", "gauge", "sensor_store_bytes", "Bytes of live pages in the sensor store (SQLite)"),
        ("wal_bytes", "gauge", "sensor_store_wal_bytes", "Bytes of the sensor store's write-ahead log"),
        ("disk_free_bytes", "gauge", "sensor_store_disk_free_bytes", "Bytes free on the sensor store's disk"),
    ])
    peers = s.get("peers") or {}
    if isinstance(peers, dict) and peers:
        sent = CounterMetricFamily("meshnode_sensor_sync_peer_bytes_sent", "Bytes of shared-store sync messages "
                                   "sent to each peer (on the wire)", labels=["peer"])
        msgs = CounterMetricFamily("meshnode_sensor_sync_peer_messages", "Shared-store sync messages exchanged "
                                   "with each peer", labels=["peer", "direction"])
        lag = GaugeMetricFamily("meshnode_sensor_sync_peer_last_heard_seconds", "Seconds since each peer's last "
                                "sync message (how far behind it could be)", labels=["peer"])
        for peer, f in peers.items():
            label = names.get(peer) or peer[-8:]
            sent.add_metric([label], f.get("bytes_sent", 0))
            msgs.add_metric([label, "sent"], f.get("messages_sent", 0))
            msgs.add_metric([label, "received"], f.get("messages_received", 0))
            if f.get("last_heard_s") is not None:
                lag.add_metric([label], f["last_heard_s"])
        yield from (sent, msgs, lag)
    core = s.get("core") or {}
    yield from _labelled(core, "counter", "sensor_sync_entries", "Sensor entries sent and received by anti-entropy",
                         "direction", [("entries_sent", "sent"), ("entries_received", "received")])
    yield from _labelled(core, "counter", "sensor_sync_sent", "Anti-entropy messages sent, by kind", "kind",
                         [("digests_sent", "digest"), ("deltas_sent", "delta"), ("summaries_sent", "summary")])
    yield from _scalars(core, [
        ("entries_changed", "counter", "sensor_sync_entries_changed", "Received entries that changed the state here"),
        ("tombstones_collected", "counter", "sensor_tombstones_collected", "Tombstones forgotten, all peers had them"),
        ("unknown_peer_messages", "counter", "sensor_sync_unknown_peer_messages",
         "Sync messages from peers not synced with"),
        ("peers", "gauge", "sensor_sync_peers", "Peers this node runs anti-entropy with"),
        ("pending_entries", "gauge", "sensor_sync_pending_entries", "Entries written or learned here, not yet sent on"),
    ])


_OUTCOMES = [("infer_local", "local"), ("infer_offloaded", "remote"), ("infer_split", "split"),
             ("early_exits", "early_exit"), ("degraded", "degraded")]


def _inference(s: dict) -> Iterator[Metric]:
    yield from _labelled(s, "counter", "inference_outcomes", "Inference outcomes as the service counts them: whole "
                         "runs here (peers' requests included), requests sent whole to a peer (remote), split, "
                         "early exits and degraded answers", "route", _OUTCOMES)
    yield from _scalars(s, [
        ("queue", "gauge", "inference_queue", "Inference requests queued or running here (this node's and peers')"),
        ("max_queue", "gauge", "inference_max_queue", "Queue room this node advertises to peers"),
        ("infer_served_for_peers", "counter", "inference_served_for_peers", "Inference requests run here for peers"),
        ("retries", "counter", "inference_retries", "Peer attempts that failed and were routed again"),
        ("refused", "counter", "inference_refused", "Inference requests refused (overloaded or out of deadline)"),
        ("duplicates_joined", "counter", "inference_duplicates_joined", "Resent peer requests given the first answer"),
        ("batched_runs", "counter", "inference_batched_runs", "Model runs that carried more than one request"),
    ])
    yield from _scalars(s.get("batching") or {}, [
        ("queued", "gauge", "inference_batch_queue", "Requests waiting in the batch queue for a worker"),
    ])
    yield from _scalars(s.get("result_cache") or {}, [
        ("hits", "counter", "inference_cache_hits", "Requests answered from the result cache"),
        ("misses", "counter", "inference_cache_misses", "Result cache look-ups that missed"),
        ("evictions", "counter", "inference_cache_evictions", "Results evicted from the cache"),
        ("entries", "gauge", "inference_cache_entries", "Results held in the cache"),
        ("bytes", "gauge", "inference_cache_bytes", "Bytes of results held in the cache"),
    ])
    speeds = s.get("speed_ms") or {}
    family = GaugeMetricFamily("meshnode_inference_model_run_seconds", "Measured whole-model run time here "
                               "(moving average), by model", labels=["model"])
    for model, ms in sorted(speeds.items()):
        if (v := _num(ms)) is not None:
            family.add_metric([str(model)], v / 1000)
    yield family
    yield from _scalars(s.get("cpu") or {}, [
        ("used", "gauge", "inference_cpu_used_fraction", "This node's CPU use as a fraction of its budget"),
    ])


def _models(models: list) -> Iterator[Metric]:
    yield GaugeMetricFamily("meshnode_models_loaded", "Models loaded on this node", value=len(models))


def _rpc(s: dict) -> Iterator[Metric]:
    yield from _scalars(s, [
        ("calls", "counter", "rpc_calls", "RPC calls made to peers"),
        ("served", "counter", "rpc_served", "RPC requests served for peers"),
        ("refused_busy", "counter", "rpc_refused_busy", "RPC requests refused because too many were running"),
        ("bad_frames", "counter", "rpc_bad_frames", "Malformed RPC frames received (the stream is closed)"),
        ("notes_dropped", "counter", "rpc_notes_dropped", "One-way RPC notes dropped"),
        ("streams_refused", "counter", "rpc_streams_refused", "RPC streams refused"),
        ("link_calls", "counter", "rpc_link_calls", "RPC calls made over direct links"),
        ("link_failures", "counter", "rpc_link_failures", "Direct-link calls that failed"),
        ("streams", "gauge", "rpc_streams", "Open RPC streams"),
    ])
    yield from _labelled(s, "counter", "rpc_frames", "RPC frames written to and read from peers (Raft's own "
                         "traffic excluded)", "direction", [("frames_sent", "sent"), ("frames_received", "received")])
    yield from _labelled(s, "gauge", "rpc_links", "Open direct links", "direction",
                         [("links", "out"), ("links_in", "in")])


def _adverts(s: dict) -> Iterator[Metric]:
    yield from _scalars(s, [
        ("received", "counter", "adverts_received", "Load adverts received from peers"),
        ("refused", "counter", "adverts_refused", "Load adverts refused (malformed or from a refused peer)"),
    ])


def _membership(s: dict) -> Iterator[Metric]:
    yield from _labelled(s, "gauge", "membership_members", "Members by the failure detector's state (SWIM)",
                         "state", [(x, x) for x in ("alive", "suspect", "dead", "left")])
    yield from _scalars(s, [
        ("probes", "counter", "membership_probes", "Failure-detector probes sent"),
        ("probes_failed", "counter", "membership_probes_failed", "Probes that got no answer"),
        ("indirect_probes", "counter", "membership_indirect_probes", "Indirect probes asked of other members"),
        ("refutations", "counter", "membership_refutations", "Suspicions of this node it refuted"),
        ("messages_sent", "counter", "membership_messages_sent", "Failure-detector messages sent"),
        ("local_health", "gauge", "membership_local_health", "Lifeguard local health multiplier (0 is healthy)"),
        ("suspicions", "gauge", "membership_suspicions", "Members under suspicion now"),
    ])


def _admission(s: dict) -> Iterator[Metric]:
    yield from _scalars(s, [
        ("enforced", "gauge", "admission_enforced", "1 when the admitted-peer list is on"),
        ("admitted", "gauge", "admission_admitted", "Peers on the admitted-peer list"),
        ("revoked", "gauge", "admission_revoked", "Peers revoked"),
        ("refused", "counter", "admission_refused", "Refusals of peers not admitted"),
        ("silent_dropped", "counter", "admission_silent_dropped", "Peers cut off for sending no hello in time"),
    ])


def _placement(s: dict) -> Iterator[Metric]:
    yield from _scalars(s, [
        ("rounds", "counter", "placement_rounds", "Placement planning rounds run as the Raft leader"),
        ("writes", "counter", "placement_writes", "Placements written to Raft"),
        ("unplaceable", "counter", "placement_unplaceable", "Rounds with a model no node could serve"),
        ("failures", "counter", "placement_failures", "Placement writes that failed"),
    ])


_RENDERERS: tuple[tuple[str, Callable[[Any], Iterator[Metric]]], ...] = (
    ("node", _node), ("peers", _peers), ("raft", _raft), ("sensors", _sensors), ("inference", _inference),
    ("models", _models), ("rpc", _rpc), ("adverts", _adverts), ("membership", _membership),
    ("admission", _admission), ("placement", _placement),
)


def families(snapshot: dict, requests: InferenceMetrics | None = None) -> list[Metric]:
    """The metric families of a snapshot (``gather``) and of the request figures; never raises for a bad section."""
    out: list[Metric] = []
    failed = list(snapshot.get("failed", ()))
    for section, render in _RENDERERS:
        if section not in snapshot:
            continue
        try:
            if section == "sensors":  # per-peer figures are labelled with the peers' names
                names = {p.get("peer_id"): p.get("name") for p in snapshot.get("peers") or () if isinstance(p, dict)}
                out.extend(render(snapshot[section], names))
                continue
            out.extend(render(snapshot[section]))  # all of a section or none of it
        except Exception as exc:  # noqa: BLE001 - the other sections still render (module doc)
            failed.append(section)
            log.debug("metrics: cannot render %s: %r", section, exc)
    if requests is not None:
        out.extend(requests.families())
    marks = GaugeMetricFamily("meshnode_metrics_section_failed", "1 for each part of the node that could not be "
                              "read in this scrape (its metrics are missing)", labels=["section"])
    for section in sorted(set(failed)):
        marks.add_metric([section], 1)
    out.append(marks)
    return out


class NodeCollector(Collector):
    """Reads one node at each scrape (see the module doc)."""

    def __init__(self, node: Any, requests: InferenceMetrics) -> None:
        self._node = weakref.ref(node)  # the registry must not keep its node alive
        self.requests = requests
        self._warned: set[str] = set()

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not read the node (the names vary with its sections)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The node's metric families, read now."""
        node = self._node()
        snapshot = gather(node, self._warned) if node is not None else {"failed": ["node"]}
        yield from families(snapshot, self.requests)


_per_node: weakref.WeakKeyDictionary[Any, tuple[CollectorRegistry, InferenceMetrics]] = weakref.WeakKeyDictionary()


def _entry(node: Node) -> tuple[CollectorRegistry, InferenceMetrics]:
    entry = _per_node.get(node)
    if entry is None:
        requests = InferenceMetrics()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(NodeCollector(node, requests))
        entry = _per_node[node] = (registry, requests)
    return entry


def registry_for(node: Node) -> CollectorRegistry:
    """``node``'s own registry (made at first use, kept while the node lives); never the global one."""
    return _entry(node)[0]


def inference_metrics(node: Node) -> InferenceMetrics:
    """``node``'s request figures, which ``Node.infer`` feeds through ``measure``."""
    return _entry(node)[1]


__all__ = ["InferenceMetrics", "NodeCollector", "families", "gather", "inference_metrics", "registry_for"]
