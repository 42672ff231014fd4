"""The Raft-replicated cluster state: plain, frozen data.

``ClusterState`` is what every voter holds after applying the same committed
commands in the same order (``consensus.machine.apply``). It is never mutated:
each applied write produces a new value, so a reader on another thread always
sees one whole revision.

``encode_state`` / ``decode_state`` are the snapshot format (pysyncobj writes
it into its full-dump file on log compaction and sends it to followers that
fell behind the compacted log): versioned msgpack, like the commands. Version 2
added the admitted-peer list; version 1 snapshots (written before it) still
read, as a state with the list off. Version 3 added task leases (``tasks``,
``fence``, ``clock``) and each config entry's ``request``; older snapshots
read with no tasks, fence 0, clock 0 and ``request`` "". Version 4 added
partition placement (``placement``); older snapshots read with none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import immutables
import msgpack

from crdt.errors import LocalProtocolError, RemoteProtocolError

from ._checks import (
    check_addr,
    check_count,
    check_key,
    check_name,
    check_peer_id,
    check_request,
    check_seconds,
    plain_copy,
    wire_errors,
)

STATE_VERSION = 4
# 1: before the admitted-peer list; 2: before task leases; 3: before partition placement
_READABLE_VERSIONS = (1, 2, 3, 4)
_SHA256_HEX = frozenset("0123456789abcdef")


class FrozenMap(Mapping):
    """A read-only mapping with O(log n) ``set``/``delete`` that return new maps (a HAMT).

    Each write copies only a path of the trie, not the whole map: applying a
    write to a state with 100,000 config keys costs about what it costs with 10.
    """

    __slots__ = ("_map",)

    def __init__(self, items: Mapping | None = None) -> None:
        if isinstance(items, FrozenMap):
            self._map = items._map
        else:
            self._map = immutables.Map(items or {})

    @classmethod
    def _wrap(cls, inner: immutables.Map) -> "FrozenMap":
        new = cls.__new__(cls)
        new._map = inner
        return new

    def __getitem__(self, key):
        return self._map[key]

    def __iter__(self):
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __contains__(self, key) -> bool:
        return key in self._map

    def get(self, key, default=None):
        """The value for ``key``, else ``default``."""
        return self._map.get(key, default)

    def set(self, key, value) -> "FrozenMap":
        """A new map with ``key`` set to ``value``."""
        return self._wrap(self._map.set(key, value))

    def delete(self, key) -> "FrozenMap":
        """A new map without ``key`` (the same map if it is absent)."""
        return self._wrap(self._map.delete(key)) if key in self._map else self

    def __repr__(self) -> str:
        return f"FrozenMap({dict(self._map)!r})"


def _frozen_map(value: Mapping) -> Mapping:
    return value if isinstance(value, FrozenMap) else FrozenMap(value)


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One mesh setting: its value, the cluster revision that wrote it, and the CAS request that did.

    ``request`` is the id a ``ConfigCas`` carried ("" for other writes); it lets
    a retried compare-and-set recognise its own write.
    """

    value: Any
    revision: int
    request: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", plain_copy(self.value, "config value"))
        check_count(self.revision, "config revision")
        check_request(self.request)

    def to_dict(self) -> dict:
        """``{"value", "revision"}``, what a ``ConfigGet`` returns."""
        return {"value": self.value, "revision": self.revision}


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A registered model: content hash, size, I/O specs and the peer holding the file.

    ``inputs`` / ``outputs`` are opaque msgpack-able dicts owned by the inference
    layer; they are stored as private copies.
    """

    name: str
    sha256: str
    size: int
    inputs: list[dict]
    outputs: list[dict]
    origin: str

    def __post_init__(self) -> None:
        check_key(self.name, "model name")
        if (
            not isinstance(self.sha256, str)
            or len(self.sha256) != 64
            or not set(self.sha256) <= _SHA256_HEX
        ):
            raise LocalProtocolError(
                f"consensus: model {self.name!r} sha256 must be 64 lowercase hex digits, got {self.sha256!r}"
            )
        check_count(self.size, f"model {self.name!r} size")
        for side in ("inputs", "outputs"):
            specs = getattr(self, side)
            if not isinstance(specs, (list, tuple)) or not all(isinstance(s, dict) for s in specs):
                raise LocalProtocolError(
                    f"consensus: model {self.name!r} {side} must be a list of dicts, got {specs!r:.80}"
                )
            object.__setattr__(self, side, plain_copy(list(specs), f"model {self.name!r} {side}"))
        check_key(self.origin, f"model {self.name!r} origin peer id")

    def to_wire(self) -> dict:
        """The record as a plain dict (field name -> value)."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "size": self.size,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "origin": self.origin,
        }

    @classmethod
    def from_wire(cls, data: Any) -> ModelRecord:
        """Read a record from a peer; anything malformed raises ``RemoteProtocolError``."""
        fields = ("name", "sha256", "size", "inputs", "outputs", "origin")
        if not isinstance(data, dict) or set(data) != set(fields):
            raise RemoteProtocolError(
                f"consensus: malformed model record: expected the fields {list(fields)}, "
                f"got {sorted(data) if isinstance(data, dict) else type(data).__name__}"
            )
        with wire_errors("model record"):
            return cls(**data)


@dataclass(frozen=True, slots=True)
class AdmittedPeer:
    """One entry of the admitted-peer list: a human name, revoked or not, and the revision that set it.

    A revoked entry stays in the list, so the peer cannot come back by itself:
    only an explicit ``PeerAdmit`` of its id lets it in again.
    """

    name: str
    revoked: bool
    revision: int

    def __post_init__(self) -> None:
        check_name(self.name, "admitted peer name")
        if not isinstance(self.revoked, bool):
            raise LocalProtocolError(f"consensus: revoked must be a bool, got {type(self.revoked).__name__}")
        check_count(self.revision, "admitted peer revision")

    def to_wire(self) -> dict:
        """``{"name", "revoked", "revision"}``."""
        return {"name": self.name, "revoked": self.revoked, "revision": self.revision}


@dataclass(frozen=True, slots=True)
class TaskLease:
    """Who holds a task: the holder, its fencing token and the lease, in cluster-clock seconds.

    See ``consensus.leases`` for what a lease and a token guarantee.
    """

    holder: str
    token: int
    acquired_at: float
    expires_at: float

    def __post_init__(self) -> None:
        check_key(self.holder, "task holder")
        check_count(self.token, "fencing token")
        object.__setattr__(self, "acquired_at", check_seconds(self.acquired_at, "task acquired_at"))
        object.__setattr__(self, "expires_at", check_seconds(self.expires_at, "task expires_at"))

    def live_at(self, now: float) -> bool:
        """Whether the lease still runs at cluster time ``now``."""
        return now < self.expires_at

    def to_wire(self) -> dict:
        """``{"holder", "token", "acquired_at", "expires_at"}``."""
        return {"holder": self.holder, "token": self.token, "acquired_at": self.acquired_at,
                "expires_at": self.expires_at}


# Placement bounds. Partitions of one model are numbered from 0 (issue 6 cuts a model into a
# handful); a partition is served by a short preference list. Both keep one placement, and
# so one Raft entry, small: 64 x 16 peer ids of ~53 characters is about 55 KB.
MAX_PARTITIONS = 64
MAX_PARTITION_PEERS = 16


def check_partitions(value: Any, what: str, *, allow_empty: bool) -> Mapping[int, tuple[str, ...]]:
    """``value`` (partition index -> peer ids) as a read-only map sorted by index, peers as tuples.

    Indices are ints in ``[0, MAX_PARTITIONS)``; each partition lists at most
    ``MAX_PARTITION_PEERS`` distinct peer ids, most preferred first. With
    ``allow_empty`` False (a new placement) the map and every list must be
    non-empty; the state allows an emptied list (its peers were removed).
    """
    if not isinstance(value, Mapping):
        raise LocalProtocolError(
            f"consensus: {what} must be a map of partition index to peer ids, got {type(value).__name__}"
        )
    if not allow_empty and not value:
        raise LocalProtocolError(f"consensus: {what} places no partition; use PlacementClear to remove a placement")
    if len(value) > MAX_PARTITIONS:
        raise LocalProtocolError(f"consensus: {what} has {len(value)} partitions, over the limit of {MAX_PARTITIONS}")
    for index in value:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_PARTITIONS:
            raise LocalProtocolError(
                f"consensus: {what}: a partition index must be an int from 0 to {MAX_PARTITIONS - 1}, got {index!r:.40}"
            )
    out: dict[int, tuple[str, ...]] = {}
    for index in sorted(value):
        peers = value[index]
        if not isinstance(peers, (list, tuple)):
            raise LocalProtocolError(
                f"consensus: {what}: partition {index} must list peer ids, got {type(peers).__name__}"
            )
        if len(peers) > MAX_PARTITION_PEERS:
            raise LocalProtocolError(
                f"consensus: {what}: partition {index} lists {len(peers)} peers, over the limit of "
                f"{MAX_PARTITION_PEERS}"
            )
        if not allow_empty and not peers:
            raise LocalProtocolError(f"consensus: {what}: partition {index} lists no peer")
        for peer in peers:
            check_peer_id(peer, f"{what}: peer id of partition {index}")
        if len(set(peers)) != len(peers):
            raise LocalProtocolError(f"consensus: {what}: partition {index} lists a peer twice")
        out[index] = tuple(peers)
    return MappingProxyType(out)


def partitions_to_wire(partitions: Mapping[int, tuple[str, ...]]) -> list:
    """``[[index, [peer ids]], ...]`` sorted by index (msgpack map keys must be str, so pairs)."""
    return [[i, list(partitions[i])] for i in sorted(partitions)]


def partitions_from_wire(value: Any, what: str) -> dict[int, list[str]]:
    """The map of ``[[index, [peer ids]], ...]``; a repeated index or a bad pair raises ``LocalProtocolError``."""
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise LocalProtocolError(f"consensus: {what} must be a list of [partition index, [peer ids]] pairs")
    out = {i: peers for i, peers in value if isinstance(i, int) and not isinstance(i, bool)}
    if len(out) != len(value):
        raise LocalProtocolError(f"consensus: {what} repeats a partition index or has a non-int one")
    return out


@dataclass(frozen=True, slots=True)
class ModelPlacement:
    """Which peers serve each partition of one model, the cluster revision that set it, and the request.

    ``partitions`` maps a partition index to peer ids, most preferred first.
    ``revision`` is what a ``PlacementSet`` compares against (like a config
    entry's); ``request`` is the id the setting ``PlacementSet`` carried, so a
    retried one recognises its own write ("" after a peer was dropped).
    """

    partitions: Mapping[int, tuple[str, ...]]
    revision: int
    request: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "partitions", check_partitions(self.partitions, "placement", allow_empty=True))
        check_count(self.revision, "placement revision")
        check_request(self.request)

    def peers(self) -> frozenset[str]:
        """Every peer placed on any partition."""
        return frozenset(p for peers in self.partitions.values() for p in peers)

    def to_dict(self, model: str) -> dict:
        """``{"model", "placement_revision", "partitions": [{"partition", "peers"}]}``: plain, JSON-friendly."""
        return {
            "model": model,
            "placement_revision": self.revision,
            "partitions": [{"partition": i, "peers": list(self.partitions[i])} for i in sorted(self.partitions)],
        }


@dataclass(frozen=True, slots=True)
class ClusterState:
    """Everything the voters agree on, at one revision.

    ``revision`` is bumped by exactly one for every write command that applied
    without refusal; reads and refused writes leave it alone. ``members`` maps a
    peer id to its Raft address: the voter set as the application knows it.
    ``admitted`` is the admitted-peer list (peer id -> ``AdmittedPeer``): empty
    means an open mesh (anyone holding the mesh key may join); once it has an
    entry it is enforced, and it never turns off again by itself.
    ``tasks`` maps a task name to its ``TaskLease``; ``fence`` is the last
    fencing token handed out (tokens come from this one counter, so they only
    grow); ``clock`` is the cluster clock, the largest command time any task
    write carried (``consensus.leases``). ``placement`` maps a registered
    model's name to its ``ModelPlacement`` (``consensus.placement``). The
    mappings are read-only views.
    """

    revision: int = 0
    config: Mapping[str, ConfigEntry] = field(default_factory=dict)
    models: Mapping[str, ModelRecord] = field(default_factory=dict)
    members: Mapping[str, str] = field(default_factory=dict)
    admitted: Mapping[str, AdmittedPeer] = field(default_factory=dict)
    tasks: Mapping[str, TaskLease] = field(default_factory=dict)
    fence: int = 0
    clock: float = 0.0
    placement: Mapping[str, ModelPlacement] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_count(self.revision, "cluster revision")
        check_count(self.fence, "fencing counter")
        object.__setattr__(self, "clock", check_seconds(self.clock, "cluster clock"))
        for name in ("config", "models", "members", "admitted", "tasks", "placement"):
            object.__setattr__(self, name, _frozen_map(getattr(self, name)))

    @property
    def admission_enforced(self) -> bool:
        """Whether the admitted-peer list is on (it has at least one entry)."""
        return bool(self.admitted)

    def is_admitted(self, peer_id: str) -> bool:
        """Whether ``peer_id`` may be part of the mesh: the list is off, or lists it unrevoked."""
        if not self.admitted:
            return True
        entry = self.admitted.get(peer_id)
        return entry is not None and not entry.revoked


def encode_state(state: ClusterState) -> bytes:
    """The snapshot bytes of ``state`` (versioned msgpack, keys sorted: equal states give equal bytes)."""
    return msgpack.packb(
        {
            "v": STATE_VERSION,
            "revision": state.revision,
            # Sorted: a HAMT iterates in hash order, which differs between processes.
            "config": {k: {**e.to_dict(), "request": e.request} for k, e in sorted(state.config.items())},
            "models": {k: r.to_wire() for k, r in sorted(state.models.items())},
            "members": dict(sorted(state.members.items())),
            "admitted": {p: e.to_wire() for p, e in sorted(state.admitted.items())},
            "tasks": {t: lease.to_wire() for t, lease in sorted(state.tasks.items())},
            "fence": state.fence,
            "clock": state.clock,
            "placement": {
                m: {"partitions": partitions_to_wire(p.partitions), "revision": p.revision, "request": p.request}
                for m, p in sorted(state.placement.items())
            },
        },
        use_bin_type=True,
    )


def decode_state(data: bytes) -> ClusterState:
    """Read a snapshot; corrupt or foreign bytes raise ``RemoteProtocolError``."""
    try:
        raw = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise RemoteProtocolError(f"consensus: snapshot is not msgpack ({exc})") from None
    version = raw.get("v") if isinstance(raw, dict) else None
    if type(version) is not int or version not in _READABLE_VERSIONS:
        raise RemoteProtocolError(
            f"consensus: snapshot version must be one of {list(_READABLE_VERSIONS)}, got "
            f"{version if isinstance(raw, dict) else type(raw).__name__!r}"
        )
    maps = ("config", "models", "members") + (("admitted",) if version >= 2 else ()) + (
        ("tasks",) if version >= 3 else ()
    ) + (("placement",) if version >= 4 else ())
    scalars = ("fence", "clock") if version >= 3 else ()
    if set(raw) != {"v", "revision", *maps, *scalars}:
        raise RemoteProtocolError(f"consensus: snapshot version {version} has the wrong fields {sorted(raw)}")
    if not all(isinstance(raw[k], dict) for k in maps):
        raise RemoteProtocolError(f"consensus: snapshot {', '.join(maps)} must be maps")
    with wire_errors("snapshot"):
        config = {}
        entry_fields = {"value", "revision"} | ({"request"} if version >= 3 else set())
        for key, entry in raw["config"].items():
            check_key(key, "config key")
            if not isinstance(entry, dict) or set(entry) != entry_fields:
                raise LocalProtocolError(f"consensus: config entry {key!r} must be {{{', '.join(sorted(entry_fields))}}}")
            config[key] = ConfigEntry(entry["value"], entry["revision"], entry.get("request", ""))
        models = {}
        for name, record in raw["models"].items():
            models[name] = ModelRecord.from_wire(record)
            if models[name].name != name:
                raise LocalProtocolError(
                    f"consensus: model filed under {name!r} is named {models[name].name!r}"
                )
        members = {check_key(p, "member peer id"): check_addr(a) for p, a in raw["members"].items()}
        admitted = {}
        for peer, entry in raw.get("admitted", {}).items():
            check_peer_id(peer, "admitted peer id")
            if not isinstance(entry, dict) or set(entry) != {"name", "revoked", "revision"}:
                raise LocalProtocolError(f"consensus: admitted entry {peer!r} must be {{name, revoked, revision}}")
            admitted[peer] = AdmittedPeer(entry["name"], entry["revoked"], entry["revision"])
        tasks = {}
        for task, lease in raw.get("tasks", {}).items():
            check_key(task, "task name")
            if not isinstance(lease, dict) or set(lease) != {"holder", "token", "acquired_at", "expires_at"}:
                raise LocalProtocolError(
                    f"consensus: task {task!r} must be {{holder, token, acquired_at, expires_at}}"
                )
            tasks[task] = TaskLease(**lease)
        placement = {}
        for model, entry in raw.get("placement", {}).items():
            check_key(model, "placed model name")
            if not isinstance(entry, dict) or set(entry) != {"partitions", "revision", "request"}:
                raise LocalProtocolError(f"consensus: placement of {model!r} must be {{partitions, revision, request}}")
            if model not in models:
                raise LocalProtocolError(f"consensus: placement of {model!r}, which is not a registered model")
            placement[model] = ModelPlacement(
                partitions_from_wire(entry["partitions"], f"placement of {model!r}"), entry["revision"], entry["request"]
            )
        return ClusterState(
            revision=raw["revision"], config=config, models=models, members=members, admitted=admitted,
            tasks=tasks, fence=raw.get("fence", 0), clock=raw.get("clock", 0.0), placement=placement,
        )
