"""``MemoryLog``: the in-memory, deterministic twin of ``RaftLog``.

It behaves like a healthy single-voter Raft log that commits at once: each
command is encoded and decoded through the real codec (so a command the real
log would refuse is refused here too) and applied with the real ``apply``.
``set_quorum(False)`` makes it behave like a node cut off from the majority:
every write and membership change raises ``ConsensusUnavailable`` and the
state stays put until ``set_quorum(True)``, which starts a new term.
``state_age()`` is 0 with quorum and counts on ``clock`` (a callable, monotonic
seconds; pass a fake one in tests) from the moment the quorum was lost.

Use it to unit-test callers of the ``Log`` port and in the simulator.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from crdt.errors import LocalProtocolError

from ._checks import check_addr, check_timeout
from .commands import Command, decode_command, encode_command
from .errors import ConsensusError, ConsensusUnavailable
from .log import RaftStatus
from .machine import Refusal, apply
from .state import ClusterState


class MemoryLog:
    """A ``Log`` held in memory: one leader that commits every command immediately."""

    def __init__(
        self,
        self_addr: str = "127.0.0.1:1",
        *,
        state: ClusterState | None = None,
        on_applied: Callable[[ClusterState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._self_addr = check_addr(self_addr, "self raft address")
        self._state = ClusterState() if state is None else state
        self._on_applied = on_applied
        self._voters = {self._self_addr}
        self._quorum = True
        self._clock = clock
        self._lost_at = 0.0
        self._term = 1
        self._index = 1  # like pysyncobj, entry 1 is the first leader's no-op
        self._closed = False
        self._lock = threading.Lock()
        self.committed: list[Command] = []  # every command committed, in order, for assertions

    def set_quorum(self, available: bool) -> None:
        """Lose (``False``) or regain (``True``) the majority; regaining starts a new term."""
        with self._lock:
            if available and not self._quorum:
                self._term += 1
            if not available and self._quorum:
                self._lost_at = self._clock()
            self._quorum = bool(available)

    def submit(self, command: Command, timeout: float) -> Any:
        """Commit and apply ``command`` now; ``ConsensusUnavailable`` without quorum."""
        check_timeout(timeout, allow_zero=False)
        data = encode_command(command)
        with self._lock:
            self._check_usable(f"commit {command.TYPE}", timeout)
            self._index += 1
            self.committed.append(decode_command(data))
            new, result = apply(self._state, self.committed[-1])
            changed = new is not self._state
            self._state = new
        if changed and self._on_applied is not None:
            self._on_applied(new)
        if isinstance(result, Refusal):
            raise ConsensusError(result.reason)
        return result

    def state(self) -> ClusterState:
        """The applied state."""
        return self._state

    def status(self) -> RaftStatus:
        """Leader of its own term while it has quorum, a follower without a leader otherwise."""
        with self._lock:
            return RaftStatus(
                role="leader" if self._quorum else "follower",
                leader=self._self_addr if self._quorum else None,
                term=self._term,
                commit_index=self._index,
                last_applied=self._index,
                voters=sorted(self._voters),
                self_addr=self._self_addr,
                last_index=self._index,
            )

    def state_age(self) -> float:
        """0 while it has quorum; else the seconds on ``clock`` since it lost it."""
        with self._lock:
            return 0.0 if self._quorum else max(self._clock() - self._lost_at, 0.0)

    def add_voter(self, addr: str, timeout: float) -> None:
        """Add ``addr`` to the voters (a membership entry in the log)."""
        addr = check_addr(addr)
        check_timeout(timeout, allow_zero=True)
        with self._lock:
            self._check_usable(f"add voter {addr}", timeout)
            if addr not in self._voters:
                self._voters.add(addr)
                self._index += 1

    def remove_voter(self, addr: str, timeout: float) -> None:
        """Remove ``addr`` from the voters; a node cannot remove itself."""
        addr = check_addr(addr)
        check_timeout(timeout, allow_zero=True)
        if addr == self._self_addr:
            raise LocalProtocolError("consensus: a node cannot remove itself as a voter; ask another voter")
        with self._lock:
            self._check_usable(f"remove voter {addr}", timeout)
            if addr in self._voters:
                self._voters.discard(addr)
                self._index += 1

    def close(self) -> None:
        """Refuse further commands; the state stays readable."""
        self._closed = True

    def _check_usable(self, what: str, timeout: float) -> None:
        if self._closed:
            raise LocalProtocolError(f"consensus: cannot {what}: the log is closed")
        if not self._quorum:
            raise ConsensusUnavailable(
                f"consensus: no majority: could not {what} within {timeout:g} s (no Raft leader known, "
                f"1 of {len(self._voters)} voters reachable); it applies only once a majority is back"
            )
