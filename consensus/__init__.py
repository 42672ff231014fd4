"""Raft-replicated cluster state: the pure state machine and its logs.

``apply(state, command)`` is the pure state machine over ``ClusterState``;
commands travel as versioned msgpack (``encode_command`` / ``decode_command``).
``Log`` is the port the mesh talks to: ``RaftLog`` runs it on pysyncobj,
``MemoryLog`` is the in-memory twin for tests and the simulator.
"""

from .commands import (
    COMMAND_VERSION,
    Command,
    ConfigGet,
    ConfigSet,
    MemberAdd,
    MemberRemove,
    ModelRegister,
    PeerAdmit,
    PeerRevoke,
    decode_command,
    encode_command,
)
from .errors import ConsensusError, ConsensusUnavailable
from .log import Log, RaftStatus
from .machine import Refusal, apply
from .memory import MemoryLog
from .raft import RaftLog
from .state import (
    AdmittedPeer,
    ClusterState,
    ConfigEntry,
    ModelRecord,
    decode_state,
    encode_state,
)

__all__ = [
    "COMMAND_VERSION",
    "AdmittedPeer",
    "ClusterState",
    "Command",
    "ConfigEntry",
    "ConfigGet",
    "ConfigSet",
    "ConsensusError",
    "ConsensusUnavailable",
    "Log",
    "MemberAdd",
    "MemberRemove",
    "MemoryLog",
    "ModelRecord",
    "ModelRegister",
    "PeerAdmit",
    "PeerRevoke",
    "RaftLog",
    "RaftStatus",
    "Refusal",
    "apply",
    "decode_command",
    "decode_state",
    "encode_command",
    "encode_state",
]
