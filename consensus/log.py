"""The port between the mesh and a replicated log: ``Log`` and ``RaftStatus``.

Two implementations: ``consensus.raft.RaftLog`` (pysyncobj, real TCP, its own
thread) and ``consensus.memory.MemoryLog`` (in memory, deterministic, for tests
and the simulator). Callers are written against this protocol only.

Every method blocks the calling thread; from trio, call them through
``trio.to_thread.run_sync``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .commands import Command
from .state import ClusterState

Role = Literal["leader", "follower", "candidate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftStatus:
    """One node's view of Raft: its role, the leader it follows, and log positions."""

    role: Role
    leader: str | None  # Raft address of the leader this node knows, if any
    term: int
    commit_index: int
    last_applied: int
    voters: list[str]  # Raft addresses, this node included, sorted
    self_addr: str
    last_index: int = 0  # index of the last entry in this node's log (committed or not)


class Log(Protocol):
    """A replicated log of commands applied to a ``ClusterState``."""

    def submit(self, command: Command, timeout: float) -> Any:
        """Commit ``command`` and return ``apply()``'s result.

        Raises ``ConsensusUnavailable`` when no majority committed it within
        ``timeout`` seconds (outcome unknown), ``ConsensusError`` when the state
        machine refused it.
        """
        ...

    def state(self) -> ClusterState:
        """The state applied on this node (may trail the leader; read through the log to be sure)."""
        ...

    def status(self) -> RaftStatus:
        """This node's Raft role, leader, term and log positions."""
        ...

    def state_age(self) -> float | None:
        """Seconds since this node's applied state was last known current (for stale reads); None if never."""
        ...

    def add_voter(self, addr: str, timeout: float) -> None:
        """Make the node at Raft address ``addr`` a voter; raises ``ConsensusUnavailable`` on failure."""
        ...

    def remove_voter(self, addr: str, timeout: float) -> None:
        """Stop counting the node at ``addr`` as a voter; raises ``ConsensusUnavailable`` on failure."""
        ...

    def close(self) -> None:
        """Stop taking part in the log and release its files and sockets."""
        ...
