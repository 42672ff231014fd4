"""The replicated state machine: ``apply(state, command) -> (state, result)``.

Theory of operation
-------------------
Every voter applies the same committed commands in the same order, so
``apply`` must be a pure function of its arguments: no clock, no randomness,
no IO, no iteration over anything whose order could differ between nodes.

``apply`` never raises. pysyncobj calls it from its tick thread while applying
the log; an exception there would leave the entry unapplied and be retried on
every tick, wedging this replica for good. A command that cannot apply returns
``Refusal(reason)`` with the state unchanged, on every replica alike; the
caller that submitted it turns the refusal into ``ConsensusError``.

Results are plain msgpack data (the mesh sends them back over RPC):

==============  ===================================================  =====================
command         result                                               revision
==============  ===================================================  =====================
ConfigSet       ``{"key", "value", "revision"}``                     +1
ConfigGet       ``{"value", "revision"}`` of the entry, or ``None``  unchanged
ConfigCas       ``{"key", "swapped", "exists", "value",``           +1 if swapped, else
                ``"entry_revision", "revision"}``                    unchanged
ConfigDelete    ``{"key", "deleted", "revision"}``                   +1
ConfigList      ``{"revision", "entries": [{key, value,``            unchanged
                ``revision}]}`` sorted by key
ModelRegister   ``{"name", "sha256", "revision"}``                   +1 (refused: unchanged)
MemberAdd       ``{"peer_id", "raft_addr", "replaced", "revision"}`` +1
MemberRemove    ``{"peer_id", "removed", "revision"}``               +1
PeerAdmit       ``{"peer_id", "name", "revoked", "changed",``        +1
                ``"also_admitted", "revision"}``
PeerRevoke      the same, ``revoked`` True                           +1 (refused: unchanged)
TaskAcquire     the lease (``task, holder, token, acquired_at,``    +1 if acquired
                ``expires_at``) + ``acquired``, ``revision``
TaskRenew       the lease + ``renewed``, ``revision``                +1 if renewed
TaskRelease     the lease + ``released``, ``revision``               +1 if released
TaskCheck       the live lease + ``valid``, ``checked_token``        unchanged
TaskList        ``{"revision", "clock", "fence", "tasks": [...]}``  unchanged
PlacementSet    ``{"model", "placement_revision", "partitions",``   +1 if swapped, else
                ``"swapped", "exists", "revision"}``                 unchanged (refused: too)
PlacementClear  ``{"model", "cleared", "revision"}``                 +1
PlacementGet    ``{"model", "placement_revision", "partitions":``   unchanged
                ``[{partition, peers}]}``, or ``None``
PlacementList   ``{"revision", "placements": [...]}`` by model      unchanged
==============  ===================================================  =====================

Compare-and-set (etcd's ``txn`` with a ``mod_revision`` compare): ``ConfigCas``
swaps when the key's entry is at ``expected_revision``, or, with 0, when the
key does not exist. Otherwise it is an answer, not a refusal: ``swapped``
False, the current entry, nothing written. A CAS applied twice (the Raft
adapter retried it) finds the entry it wrote itself, marked with its
``request`` id, and reports ``swapped`` again without writing. Only a
non-empty id counts, so two callers sending equal commands never both win (a
lost update for a counter). Not covered: a retry that lands after a later
write replaced the entry reports ``swapped`` False although the first copy
swapped; closing that needs per-client sessions (Raft thesis §6.3). Task
commands are in ``consensus.leases``, placement commands in
``consensus.placement``, each with its theory of operation.
``MemberRemove``, ``PeerRevoke`` and ``PeerAdmit`` also drop the peers they
take out of the mesh from every placement (``consensus.placement``).

The admitted-peer list (``state.admitted``). Empty: an open mesh, anyone with
the mesh key may join. The first ``PeerAdmit`` or ``PeerRevoke`` turns it on,
and it stays on. Turning it on must not lock the running mesh out, so that
command also admits the peers it carries in ``members`` (what the submitting
node sees) and every recorded Raft voter (``state.members``); they are listed
in ``also_admitted``. A revoked peer stays listed as revoked: it is refused
until a ``PeerAdmit`` names it again — members carried by later commands never
re-admit anyone. A revoke that would leave no peer admitted is refused: every
node would then refuse every other.

``revision`` moves by exactly one per write that is not refused, including
writes that change nothing (re-setting a value, removing an absent member),
except a compare that fails (a CAS that does not swap, a task held by another,
a stale token): that is an answer, writes nothing and leaves ``revision``
alone. It counts accepted writes, like etcd's revision counts puts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from crdt.errors import LocalProtocolError

from ._checks import check_addr, check_key, check_name, check_peer_id, is_peer_id
from .commands import (
    Command,
    ConfigCas,
    ConfigDelete,
    ConfigGet,
    ConfigList,
    ConfigSet,
    MemberAdd,
    MemberRemove,
    ModelRegister,
    PeerAdmit,
    PeerRevoke,
    PlacementClear,
    PlacementGet,
    PlacementList,
    PlacementSet,
    TaskAcquire,
    TaskCheck,
    TaskList,
    TaskRelease,
    TaskRenew,
    check_prefix,
)
from .leases import apply_task
from .placement import apply_placement, drop_peers
from .state import AdmittedPeer, ClusterState, ConfigEntry


@dataclass(frozen=True, slots=True)
class Refusal:
    """The result of a command the state machine refused; ``reason`` says why."""

    reason: str


def apply(state: ClusterState, command: Command) -> tuple[ClusterState, Any]:
    """Apply one committed command; returns the new state and the command's result."""
    try:
        return _apply(state, command)
    except LocalProtocolError as exc:
        # A field check failed: only reachable for a command built around its
        # constructor's checks, but refusing beats wedging the log.
        return state, Refusal(str(exc))
    except Exception as exc:  # a bug here must not stop the replicated log
        return state, Refusal(f"consensus: could not apply {type(command).__name__}: {exc!r}")


def _apply(state: ClusterState, command: Command) -> tuple[ClusterState, Any]:
    revision = state.revision + 1
    if isinstance(command, ConfigGet):
        entry = state.config.get(check_key(command.key, "config key"))
        return state, None if entry is None else entry.to_dict()

    if isinstance(command, ConfigSet):
        key = check_key(command.key, "config key")
        entry = ConfigEntry(command.value, revision)
        new = replace(state, revision=revision, config=state.config.set(key, entry))
        return new, {"key": key, "value": entry.value, "revision": revision}

    if isinstance(command, ConfigCas):
        return _cas(state, command, revision)

    if isinstance(command, ConfigDelete):
        key = check_key(command.key, "config key")
        new = replace(state, revision=revision, config=state.config.delete(key))
        return new, {"key": key, "deleted": key in state.config, "revision": revision}

    if isinstance(command, ConfigList):
        prefix = check_prefix(command.prefix)
        keys = sorted(k for k in state.config if k.startswith(prefix))
        entries = [{"key": k, **state.config[k].to_dict()} for k in keys]
        return state, {"revision": state.revision, "entries": entries}

    if isinstance(command, (TaskAcquire, TaskRenew, TaskRelease, TaskCheck, TaskList)):
        return apply_task(state, command)

    if isinstance(command, (PlacementSet, PlacementClear, PlacementGet, PlacementList)):
        return apply_placement(state, command)

    if isinstance(command, ModelRegister):
        record = command.record
        check_key(record.name, "model name")
        known = state.models.get(record.name)
        if known is not None and known.sha256 != record.sha256:
            return state, Refusal(
                f"consensus: model {record.name!r} is already registered with sha256 "
                f"{known.sha256[:12]}…, not {record.sha256[:12]}…; "
                "register the new file under another name"
            )
        new = replace(state, revision=revision, models=state.models.set(record.name, record))
        return new, {"name": record.name, "sha256": record.sha256, "revision": revision}

    if isinstance(command, MemberAdd):
        peer_id = check_key(command.peer_id, "member peer id")
        addr = check_addr(command.raft_addr)
        # One Raft address is one voter to pysyncobj: whoever registers it last
        # owns it (a node re-created with a new identity on the same port).
        replaced = next((p for p, a in sorted(state.members.items()) if a == addr and p != peer_id), None)
        members = {p: a for p, a in state.members.items() if p != replaced}
        members[peer_id] = addr
        new = replace(state, revision=revision, members=members)
        return new, {"peer_id": peer_id, "raft_addr": addr, "replaced": replaced, "revision": revision}

    if isinstance(command, MemberRemove):
        peer_id = check_key(command.peer_id, "member peer id")
        members = {p: a for p, a in state.members.items() if p != peer_id}
        new = drop_peers(replace(state, revision=revision, members=members), lambda p: p != peer_id)
        return new, {"peer_id": peer_id, "removed": peer_id in state.members, "revision": revision}

    if isinstance(command, (PeerAdmit, PeerRevoke)):
        return _admission(state, command, revision)

    return state, Refusal(f"consensus: unknown command {type(command).__name__}; refused")


def _cas(state: ClusterState, command: ConfigCas, revision: int) -> tuple[ClusterState, Any]:
    key = check_key(command.key, "config key")
    current = state.config.get(key)
    at = 0 if current is None else current.revision
    if at == command.expected_revision:
        entry = ConfigEntry(command.value, revision, command.request)
        new = replace(state, revision=revision, config=state.config.set(key, entry))
        return new, {"key": key, "swapped": True, "exists": True, "value": entry.value,
                     "entry_revision": revision, "revision": revision}
    # Its own write, applied once already (a retried submit): report the swap again.
    again = current is not None and command.request != "" and current.request == command.request
    return state, {
        "key": key, "swapped": again, "exists": current is not None,
        "value": None if current is None else current.value, "entry_revision": at, "revision": state.revision,
    }


def _admission(state: ClusterState, command: PeerAdmit | PeerRevoke, revision: int) -> tuple[ClusterState, Any]:
    peer_id = check_peer_id(command.peer_id)
    members = {check_peer_id(p, "member peer id"): check_name(n, "member name") for p, n in command.members.items()}
    admitted = dict(state.admitted)
    also: list[str] = []
    if not admitted:
        # Turning the list on: the running mesh comes along (see the module doc).
        current = {p: "" for p in state.members if is_peer_id(p)}
        current.update(members)
        for peer, name in sorted(current.items()):
            if peer != peer_id:
                admitted[peer] = AdmittedPeer(name, False, revision)
                also.append(peer)
    old = admitted.get(peer_id)
    revoke = isinstance(command, PeerRevoke)
    if revoke:
        if not any(not e.revoked for p, e in admitted.items() if p != peer_id):
            return state, Refusal(
                f"consensus: cannot revoke {peer_id}: no other peer would stay admitted and every node "
                "would refuse every other; admit another peer first"
            )
        name = old.name if old else ""
    else:
        name = check_name(command.name, "peer name") or (old.name if old else "")
    changed = old is None or old.revoked != revoke or old.name != name
    admitted[peer_id] = AdmittedPeer(name, revoke, revision)
    new = replace(state, revision=revision, admitted=admitted)
    new = drop_peers(new, new.is_admitted)  # a revoked (or never admitted) peer serves nothing
    return new, {
        "peer_id": peer_id, "name": name, "revoked": revoke, "changed": changed,
        "also_admitted": also, "revision": revision,
    }
