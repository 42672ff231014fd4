"""Raft-replicated cluster state: the pure state machine and its logs.

``apply(state, command)`` is the pure state machine over ``ClusterState``;
commands travel as versioned msgpack (``encode_command`` / ``decode_command``).
Task leases and fencing tokens are explained in ``consensus.leases``, partition
placement in ``consensus.placement``.
``Log`` is the port the mesh talks to: ``RaftLog`` runs it on pysyncobj,
``MemoryLog`` is the in-memory twin for tests and the simulator.
"""

from .commands import (
    COMMAND_VERSION,
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
    decode_command,
    encode_command,
)
from .errors import ConsensusError, ConsensusUnavailable
from .leases import Fence
from .log import Log, RaftStatus
from .machine import Refusal, apply
from .memory import MemoryLog
from .raft import RaftLog, discard_journal
from .state import (
    AdmittedPeer,
    ClusterState,
    ConfigEntry,
    ModelPlacement,
    ModelRecord,
    TaskLease,
    decode_state,
    encode_state,
)

__all__ = [
    "COMMAND_VERSION",
    "AdmittedPeer",
    "ClusterState",
    "Command",
    "ConfigCas",
    "ConfigDelete",
    "ConfigEntry",
    "ConfigGet",
    "ConfigList",
    "ConfigSet",
    "ConsensusError",
    "ConsensusUnavailable",
    "Fence",
    "Log",
    "MemberAdd",
    "MemberRemove",
    "MemoryLog",
    "ModelPlacement",
    "ModelRecord",
    "ModelRegister",
    "PeerAdmit",
    "PeerRevoke",
    "PlacementClear",
    "PlacementGet",
    "PlacementList",
    "PlacementSet",
    "RaftLog",
    "discard_journal",
    "RaftStatus",
    "Refusal",
    "TaskAcquire",
    "TaskCheck",
    "TaskLease",
    "TaskList",
    "TaskRelease",
    "TaskRenew",
    "apply",
    "decode_command",
    "decode_state",
    "encode_command",
    "encode_state",
]
