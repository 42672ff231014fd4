"""Commands of the replicated cluster state and their versioned wire codec.

A command is what goes into the Raft log. Every voter decodes the same bytes
and feeds them to ``consensus.machine.apply``; the mesh also forwards encoded
commands from non-voters to a voter (``raft.submit``).

Wire format, version 1: one msgpack map per command, with exactly these keys::

    {"v": 1, "t": "config.set",     "key": str, "value": <plain data>}
    {"v": 1, "t": "config.get",     "key": str}
    {"v": 1, "t": "config.cas",     "key": str, "expected_revision": int, "value": <plain data>,
                                    "request": str}
    {"v": 1, "t": "config.delete",  "key": str}
    {"v": 1, "t": "config.list",    "prefix": str}
    {"v": 1, "t": "model.register", "record": {name, sha256, size, inputs, outputs, origin}}
    {"v": 1, "t": "member.add",     "peer_id": str, "raft_addr": "host:port"}
    {"v": 1, "t": "member.remove",  "peer_id": str}
    {"v": 1, "t": "peer.admit",     "peer_id": str, "name": str, "members": {peer_id: name}}
    {"v": 1, "t": "peer.revoke",    "peer_id": str, "members": {peer_id: name}}
    {"v": 1, "t": "task.acquire",   "task": str, "holder": str, "lease": float, "now": float}
    {"v": 1, "t": "task.renew",     "task": str, "holder": str, "token": int, "lease": float, "now": float}
    {"v": 1, "t": "task.release",   "task": str, "holder": str, "token": int, "now": float}
    {"v": 1, "t": "task.check",     "task": str, "token": int, "now": float}
    {"v": 1, "t": "task.list"}
    {"v": 1, "t": "placement.set",   "model": str, "partitions": [[index, [peer_id, ...]], ...],
                                     "expected_revision": int, "request": str}
    {"v": 1, "t": "placement.clear", "model": str}
    {"v": 1, "t": "placement.get",   "model": str}
    {"v": 1, "t": "placement.list"}

``now`` is Unix seconds stamped by the voter that submits the command (never
read inside ``apply``); ``consensus.leases`` explains how leases use it.

Decoding is strict: an unknown type, another version, a missing or extra key
or a badly typed field raises ``RemoteProtocolError``. Unknown commands are
refused, never guessed at: a newer peer must not have its command half-applied
by an older one.

Every command must stay idempotent in effect (applying it twice leaves the
same settings, models and members; only ``revision`` moves): the Raft adapter
retries a write whose outcome it could not learn, so a write may apply twice.
A compare-and-set that meets its own earlier write (same ``request`` id) reports
it as swapped (see ``consensus.machine``); a task holder re-acquiring its live lease keeps its token;
a ``PlacementSet`` carries a request id for the same reason (``consensus.placement``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Union

import msgpack

from crdt.errors import LocalProtocolError, RemoteProtocolError

from ._checks import (
    MAX_KEY_CHARS,
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
from .state import (
    ModelRecord,
    check_partitions,
    partitions_from_wire,
    partitions_to_wire,
)

COMMAND_VERSION = 1
# A command is one Raft log entry, replicated to every voter and kept in every
# journal until compaction: keep them small. Model files never go in the log.
MAX_COMMAND_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigSet:
    """Set mesh setting ``key`` to ``value`` (plain msgpack data)."""

    TYPE: ClassVar[str] = "config.set"
    key: str
    value: Any

    def __post_init__(self) -> None:
        check_key(self.key, "config key")
        object.__setattr__(self, "value", plain_copy(self.value, f"value of config key {self.key!r}"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigGet:
    """Read mesh setting ``key`` through the log: a linearizable read."""

    TYPE: ClassVar[str] = "config.get"
    key: str

    def __post_init__(self) -> None:
        check_key(self.key, "config key")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigCas:
    """Set ``key`` to ``value`` only if its entry is at ``expected_revision`` (0: the key must not exist).

    A failed compare is an answer, not a refusal: the result says ``swapped``
    False and carries the current entry, so the caller can retry. ``request``
    is a unique id of this call (the mesh picks a random one), so that the same
    command applied twice recognises its own write.
    """

    TYPE: ClassVar[str] = "config.cas"
    key: str
    expected_revision: int
    value: Any
    request: str = ""

    def __post_init__(self) -> None:
        check_key(self.key, "config key")
        check_count(self.expected_revision, "expected revision")
        check_request(self.request)
        object.__setattr__(self, "value", plain_copy(self.value, f"value of config key {self.key!r}"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigDelete:
    """Remove mesh setting ``key`` (a no-op write when it is not set)."""

    TYPE: ClassVar[str] = "config.delete"
    key: str

    def __post_init__(self) -> None:
        check_key(self.key, "config key")


def check_prefix(value: Any) -> str:
    """``value`` as a key prefix: a str of at most ``MAX_KEY_CHARS`` characters, may be empty."""
    if not isinstance(value, str) or len(value) > MAX_KEY_CHARS:
        raise LocalProtocolError(
            f"consensus: a key prefix must be a str of at most {MAX_KEY_CHARS} characters, got {value!r:.80}"
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigList:
    """Read every setting whose key starts with ``prefix`` through the log (linearizable)."""

    TYPE: ClassVar[str] = "config.list"
    prefix: str = ""

    def __post_init__(self) -> None:
        check_prefix(self.prefix)


# The longest lease one command may ask for: a holder renews long before this.
MAX_LEASE = 86_400.0


def _check_now(command: Any) -> None:
    object.__setattr__(command, "now", check_seconds(command.now, "command time (now)"))


def _check_lease(command: Any) -> None:
    object.__setattr__(
        command, "lease", check_seconds(command.lease, "lease", positive=True, maximum=MAX_LEASE)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAcquire:
    """Take ``task`` for ``holder`` for ``lease`` seconds, unless someone else holds a live lease."""

    TYPE: ClassVar[str] = "task.acquire"
    task: str
    holder: str
    lease: float
    now: float

    def __post_init__(self) -> None:
        check_key(self.task, "task name")
        check_key(self.holder, "task holder")
        _check_lease(self)
        _check_now(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRenew:
    """Extend ``holder``'s live lease on ``task`` (the one fenced by ``token``) to ``lease`` seconds from now."""

    TYPE: ClassVar[str] = "task.renew"
    task: str
    holder: str
    token: int
    lease: float
    now: float

    def __post_init__(self) -> None:
        check_key(self.task, "task name")
        check_key(self.holder, "task holder")
        check_count(self.token, "fencing token")
        _check_lease(self)
        _check_now(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRelease:
    """Give ``task`` up, if ``holder`` still holds it under ``token``."""

    TYPE: ClassVar[str] = "task.release"
    task: str
    holder: str
    token: int
    now: float

    def __post_init__(self) -> None:
        check_key(self.task, "task name")
        check_key(self.holder, "task holder")
        check_count(self.token, "fencing token")
        _check_now(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCheck:
    """Read whether ``token`` is the live fencing token of ``task`` (through the log)."""

    TYPE: ClassVar[str] = "task.check"
    task: str
    token: int
    now: float

    def __post_init__(self) -> None:
        check_key(self.task, "task name")
        check_count(self.token, "fencing token")
        _check_now(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskList:
    """Read every task lease through the log (linearizable)."""

    TYPE: ClassVar[str] = "task.list"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRegister:
    """Register a model under ``record.name`` (refused if the name has another hash)."""

    TYPE: ClassVar[str] = "model.register"
    record: ModelRecord

    def __post_init__(self) -> None:
        if not isinstance(self.record, ModelRecord):
            raise LocalProtocolError(
                f"consensus: ModelRegister needs a ModelRecord, got {type(self.record).__name__}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberAdd:
    """Record that peer ``peer_id`` votes from Raft address ``raft_addr``."""

    TYPE: ClassVar[str] = "member.add"
    peer_id: str
    raft_addr: str

    def __post_init__(self) -> None:
        check_key(self.peer_id, "member peer id")
        check_addr(self.raft_addr)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberRemove:
    """Forget peer ``peer_id`` as a member."""

    TYPE: ClassVar[str] = "member.remove"
    peer_id: str

    def __post_init__(self) -> None:
        check_key(self.peer_id, "member peer id")


# Bounds the peers one command may bring onto the list when it turns it on.
MAX_ADMIT_MEMBERS = 1024


def _check_members(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise LocalProtocolError(f"consensus: members must be a map of peer id to name, got {type(value).__name__}")
    if len(value) > MAX_ADMIT_MEMBERS:
        raise LocalProtocolError(f"consensus: members lists {len(value)} peers, over {MAX_ADMIT_MEMBERS}")
    return MappingProxyType(
        {check_peer_id(p, "member peer id"): check_name(n, f"name of member {p}") for p, n in sorted(value.items())}
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAdmit:
    """Put ``peer_id`` on the admitted-peer list (re-admitting it if it was revoked).

    ``members`` are the peers the submitting node sees in the mesh right now
    (peer id -> name). They are admitted too, but only when this command turns
    the list on, so that turning it on never locks the running mesh out.
    Once the list is on they are ignored: a revoked peer comes back only
    through a ``PeerAdmit`` naming it.
    """

    TYPE: ClassVar[str] = "peer.admit"
    peer_id: str
    name: str = ""
    members: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_peer_id(self.peer_id)
        check_name(self.name, "peer name")
        object.__setattr__(self, "members", _check_members(self.members))


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerRevoke:
    """Mark ``peer_id`` revoked: refused by every node until explicitly admitted again.

    ``members`` works as in ``PeerAdmit``: revoking a peer of an open mesh turns
    the list on with everyone else the submitter sees.
    """

    TYPE: ClassVar[str] = "peer.revoke"
    peer_id: str
    members: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_peer_id(self.peer_id)
        object.__setattr__(self, "members", _check_members(self.members))


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacementSet:
    """Replace ``model``'s whole placement with ``partitions`` if it is at ``expected_revision`` (0: none yet).

    ``partitions`` maps a partition index (0, 1, …) to the peer ids serving it,
    most preferred first; ``consensus.placement`` has the rules. ``request`` is
    a unique id of this call, as for ``ConfigCas``.
    """

    TYPE: ClassVar[str] = "placement.set"
    model: str
    partitions: Mapping[int, tuple[str, ...]]
    expected_revision: int
    request: str = ""

    def __post_init__(self) -> None:
        check_key(self.model, "model name")
        object.__setattr__(
            self, "partitions", check_partitions(self.partitions, f"placement of {self.model!r}", allow_empty=False)
        )
        check_count(self.expected_revision, "expected placement revision")
        check_request(self.request)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacementClear:
    """Remove ``model``'s placement (a no-op write when it has none)."""

    TYPE: ClassVar[str] = "placement.clear"
    model: str

    def __post_init__(self) -> None:
        check_key(self.model, "model name")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacementGet:
    """Read ``model``'s placement through the log (linearizable)."""

    TYPE: ClassVar[str] = "placement.get"
    model: str

    def __post_init__(self) -> None:
        check_key(self.model, "model name")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacementList:
    """Read every model's placement through the log (linearizable)."""

    TYPE: ClassVar[str] = "placement.list"


Command = Union[
    ConfigSet, ConfigGet, ConfigCas, ConfigDelete, ConfigList, ModelRegister, MemberAdd, MemberRemove,
    PeerAdmit, PeerRevoke, TaskAcquire, TaskRenew, TaskRelease, TaskCheck, TaskList,
    PlacementSet, PlacementClear, PlacementGet, PlacementList,
]
COMMANDS = (
    ConfigSet, ConfigGet, ConfigCas, ConfigDelete, ConfigList, ModelRegister, MemberAdd, MemberRemove,
    PeerAdmit, PeerRevoke, TaskAcquire, TaskRenew, TaskRelease, TaskCheck, TaskList,
    PlacementSet, PlacementClear, PlacementGet, PlacementList,
)
WRITES = (
    ConfigSet, ConfigCas, ConfigDelete, ModelRegister, MemberAdd, MemberRemove, PeerAdmit, PeerRevoke,
    TaskAcquire, TaskRenew, TaskRelease, PlacementSet, PlacementClear,
)
# Reads change nothing: a node may answer them from its own applied state (a stale read).
READS = (ConfigGet, ConfigList, TaskCheck, TaskList, PlacementGet, PlacementList)
# Commands that carry the submitting voter's clock in ``now``.
TIMED = (TaskAcquire, TaskRenew, TaskRelease, TaskCheck)


def _fields(command: Command) -> dict:
    if isinstance(command, ModelRegister):
        return {"record": command.record.to_wire()}
    out = {f.name: getattr(command, f.name) for f in fields(command)}
    if "members" in out:
        out["members"] = dict(out["members"])
    if isinstance(command, PlacementSet):
        out["partitions"] = partitions_to_wire(command.partitions)
    return out


def _model_register(record: Any) -> ModelRegister:
    return ModelRegister(record=ModelRecord.from_wire(record))


def _placement_set(model: Any, partitions: Any, expected_revision: Any, request: Any) -> PlacementSet:
    return PlacementSet(model=model, partitions=partitions_from_wire(partitions, "placement partitions"),
                        expected_revision=expected_revision, request=request)


# type tag -> (fields on the wire, builder from those fields)
_DECODERS: dict[str, tuple[frozenset[str], Callable[..., Command]]] = {
    ConfigSet.TYPE: (frozenset({"key", "value"}), ConfigSet),
    ConfigGet.TYPE: (frozenset({"key"}), ConfigGet),
    ConfigCas.TYPE: (frozenset({"key", "expected_revision", "value", "request"}), ConfigCas),
    ConfigDelete.TYPE: (frozenset({"key"}), ConfigDelete),
    ConfigList.TYPE: (frozenset({"prefix"}), ConfigList),
    ModelRegister.TYPE: (frozenset({"record"}), _model_register),
    MemberAdd.TYPE: (frozenset({"peer_id", "raft_addr"}), MemberAdd),
    MemberRemove.TYPE: (frozenset({"peer_id"}), MemberRemove),
    PeerAdmit.TYPE: (frozenset({"peer_id", "name", "members"}), PeerAdmit),
    PeerRevoke.TYPE: (frozenset({"peer_id", "members"}), PeerRevoke),
    TaskAcquire.TYPE: (frozenset({"task", "holder", "lease", "now"}), TaskAcquire),
    TaskRenew.TYPE: (frozenset({"task", "holder", "token", "lease", "now"}), TaskRenew),
    TaskRelease.TYPE: (frozenset({"task", "holder", "token", "now"}), TaskRelease),
    TaskCheck.TYPE: (frozenset({"task", "token", "now"}), TaskCheck),
    TaskList.TYPE: (frozenset(), TaskList),
    PlacementSet.TYPE: (frozenset({"model", "partitions", "expected_revision", "request"}), _placement_set),
    PlacementClear.TYPE: (frozenset({"model"}), PlacementClear),
    PlacementGet.TYPE: (frozenset({"model"}), PlacementGet),
    PlacementList.TYPE: (frozenset(), PlacementList),
}


def encode_command(command: Command) -> bytes:
    """The log-entry bytes of ``command``; our own misuse raises ``LocalProtocolError``."""
    if not isinstance(command, COMMANDS):
        raise LocalProtocolError(f"consensus: not a command: {type(command).__name__}")
    data = msgpack.packb({"v": COMMAND_VERSION, "t": command.TYPE, **_fields(command)}, use_bin_type=True)
    if len(data) > MAX_COMMAND_BYTES:
        raise LocalProtocolError(
            f"consensus: {command.TYPE} encodes to {len(data)} bytes, over the {MAX_COMMAND_BYTES} byte "
            "limit of one Raft entry; keep large data out of the cluster state"
        )
    return data


def decode_command(data: bytes) -> Command:
    """Read a command; anything malformed or unknown raises ``RemoteProtocolError``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RemoteProtocolError(f"consensus: a command must be bytes, got {type(data).__name__}")
    if len(data) > MAX_COMMAND_BYTES:
        raise RemoteProtocolError(
            f"consensus: command of {len(data)} bytes is over the {MAX_COMMAND_BYTES} byte limit"
        )
    try:
        raw = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types (ExtraData, ValueError, ...)
        raise RemoteProtocolError(f"consensus: command is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise RemoteProtocolError(f"consensus: a command must be a map, got {type(raw).__name__}")
    version = raw.pop("v", None)
    if type(version) is not int or version != COMMAND_VERSION:
        raise RemoteProtocolError(
            f"consensus: command version {version!r} is not supported (this node speaks {COMMAND_VERSION}); "
            "upgrade the older node"
        )
    kind = raw.pop("t", None)
    if not isinstance(kind, str) or kind not in _DECODERS:
        raise RemoteProtocolError(
            f"consensus: unknown command type {kind!r}; known: {sorted(_DECODERS)}"
        )
    expected, build = _DECODERS[kind]
    if set(raw) != expected:
        raise RemoteProtocolError(
            f"consensus: {kind} needs exactly the fields {sorted(expected)}, got {sorted(map(str, raw))}"
        )
    with wire_errors(kind):
        return build(**raw)
