"""Consistency levels for sensor state: who must answer, when a quorum is met, who wins (sans-IO).

Theory of operation (Akka Distributed Data's ``WriteLocal``/``WriteMajority``/
``ReadMajority``, on top of the delta anti-entropy that still does the rest):

- ``local`` (the default): a write returns once it is durable here; a read
  answers from this node's replica. Anti-entropy spreads writes later.
- ``majority`` write: the write is durable here first, then its delta goes to
  every other member (``crdt.write``); a peer acknowledges only after it has
  applied and persisted it. The write is done once ``n // 2 + 1`` of the ``n``
  members (this node included) hold it. A timeout never undoes anything: the
  write stays here and anti-entropy still delivers it.
- ``majority`` read: every other member is asked for its entry of the key
  (``crdt.read``); once ``n // 2 + 1`` members (this node included) have
  answered, the last-writer-wins winner among those answers is the result,
  and it is applied here (read repair) before it is returned.

A majority write and a majority read of the same ``n`` members share at least
one member, so the read sees the write (or a newer one). That holds only if
both count the same ``n``; so ``n`` counts every member this node knows that
has not said goodbye (alive, suspected, or declared dead by the failure
detector) — as Akka counts unreachable members until they are downed. If it
counted only peers judged alive, a node cut off from the rest would, once the
detector gave up on them, form a "majority" of one on its own while the other
side did the same.

Invariants: this node is always a member and always counts as acknowledged
(writes) or answered (reads); each member counts at most once, however many
answers it sends; answers from non-members are ignored; once a quorum is
done or cannot be met it stays so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from crdt import CausalContext, Delta, Entry, SyncDelta, decode_message, encode_message
from crdt.errors import LocalProtocolError, MeshError, RemoteProtocolError

LOCAL = "local"
MAJORITY = "majority"
LEVELS = (LOCAL, MAJORITY)
DEFAULT_TIMEOUT = 5.0  # seconds a majority read or write waits for its quorum
MAX_TIMEOUT = 300.0
WRITE_METHOD = "crdt.write"
READ_METHOD = "crdt.read"


class QuorumNotReached(MeshError):
    """A majority read or write did not hear from enough members in time."""


def check_level(level: Any) -> str:
    """``level`` if it is a known consistency level; otherwise an error naming the allowed ones."""
    if level is None:
        return LOCAL
    if not isinstance(level, str) or level not in LEVELS:
        allowed = ", ".join(repr(x) for x in LEVELS)
        raise LocalProtocolError(f"crdt: unknown consistency level {level!r}; use one of {allowed}")
    return level


def check_timeout(timeout: Any) -> float:
    """``timeout`` as seconds, if it is a positive number up to ``MAX_TIMEOUT``."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
            or not 0 < timeout <= MAX_TIMEOUT:
        raise LocalProtocolError(
            f"crdt: timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, got {timeout!r}"
        )
    return float(timeout)


def majority(members: int) -> int:
    """How many of ``members`` make a majority: ``members // 2 + 1``."""
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise LocalProtocolError(f"crdt: a quorum needs at least one member, got {members!r}")
    return members // 2 + 1


def counted_peers(states: Mapping[str, str]) -> list[str]:
    """The peers that count as members, from ``{peer: state}`` (``mesh.peers`` states).

    Every known peer that has not left counts, reachable or not (see the module
    doc for why a peer the failure detector gave up on still counts).
    """
    return sorted(peer for peer, state in states.items() if state != "left")


class _Quorum:
    """Members, the ones that answered, the ones that failed."""

    def __init__(self, self_id: str, peers: Iterable[str]) -> None:
        self.self_id = self_id
        self.peers = tuple(sorted(set(peers) - {self_id}))
        self.members = len(self.peers) + 1
        self.needed = majority(self.members)
        self.answered: set[str] = {self_id}
        self.failed: dict[str, str] = {}

    def fail(self, peer: str, reason: str) -> None:
        """``peer`` could not answer (error, unreachable, refused)."""
        if peer in self.peers and peer not in self.answered:
            self.failed.setdefault(peer, reason)

    @property
    def done(self) -> bool:
        """Enough members have answered."""
        return len(self.answered) >= self.needed

    @property
    def hopeless(self) -> bool:
        """Too many members failed for a quorum, however long we wait."""
        return self.members - len(self.failed) < self.needed

    def _answer(self, peer: str) -> bool:
        if peer not in self.peers or peer in self.answered:
            return False  # a stranger, or a duplicate: never counted twice
        self.answered.add(peer)
        self.failed.pop(peer, None)
        return True

    def _why(self) -> str:
        if not self.failed:
            return ""
        first = sorted(self.failed.items())[:3]
        return " (" + "; ".join(f"{peer}: {reason}" for peer, reason in first) + ")"


class WriteQuorum(_Quorum):
    """Acknowledgements of one majority write. The local write is done before asking: it counts."""

    def ack(self, peer: str) -> bool:
        """``peer`` acknowledged (applied and persisted); True if it counted now."""
        return self._answer(peer)

    def error(self, key: str, timeout: float) -> QuorumNotReached:
        """The error for a write that did not reach its majority."""
        when = "could not be reached" if self.hopeless else f"did not answer within {timeout:g} s"
        return QuorumNotReached(
            f"crdt: majority write of {key!r} acknowledged by {len(self.answered)} of {self.members} members "
            f"({self.needed} needed); the others {when}{self._why()}. The write is kept on this node and "
            "still syncs to the others when they are reachable; it is not lost or rolled back"
        )


class ReadQuorum(_Quorum):
    """Answers to one majority read; keeps the last-writer-wins winner among them."""

    def __init__(self, self_id: str, peers: Iterable[str], local: Entry | None) -> None:
        super().__init__(self_id, peers)
        self.winner = local
        self.source = self_id  # who holds the winner (ourselves until a peer has a newer one)

    def answer(self, peer: str, entry: Entry | None) -> bool:
        """``peer``'s entry for the key (None: it has none); True if it counted now."""
        if not self._answer(peer):
            return False
        if entry is not None and (self.winner is None or entry.beats(self.winner)):
            self.winner, self.source = entry, peer
        return True

    @property
    def repair(self) -> SyncDelta | None:
        """The winner as a message to apply here, when a peer had a newer entry than ours."""
        if self.source == self.self_id or self.winner is None:
            return None
        return SyncDelta(delta=Delta(entries=(self.winner,), context=CausalContext.from_dots((self.winner.dot,))))

    def error(self, key: str, timeout: float) -> QuorumNotReached:
        """The error for a read that did not hear from a majority."""
        when = "could not be reached" if self.hopeless else f"did not answer within {timeout:g} s"
        return QuorumNotReached(
            f"crdt: majority read of {key!r} answered by {len(self.answered)} of {self.members} members "
            f"({self.needed} needed); the others {when}{self._why()}. Read with consistency 'local' for "
            "this node's value, or retry when more members are reachable"
        )


# -- the wire: requests and answers of crdt.write / crdt.read ----------------------


def write_request(delta: Delta) -> dict:
    """The body of ``crdt.write``: the write's delta as a sync message."""
    return encode_message(SyncDelta(delta=delta))


def read_write_request(body: Any) -> SyncDelta:
    """A peer's ``crdt.write`` body; ``RemoteProtocolError`` unless it is a delta message."""
    msg = decode_message(body)
    if not isinstance(msg, SyncDelta) or msg.reply_context is not None:
        raise RemoteProtocolError(f"crdt: {WRITE_METHOD} carries a plain delta message, got something else")
    return msg


def read_request(key: str) -> dict:
    """The body of ``crdt.read``."""
    return {"key": key}


def read_read_request(body: Any) -> str:
    """The key a peer's ``crdt.read`` asks for; ``RemoteProtocolError`` if malformed."""
    if not isinstance(body, dict) or set(body) != {"key"}:
        raise RemoteProtocolError(f"crdt: {READ_METHOD} needs a map with just 'key', got {_kind(body)}")
    key = body["key"]
    if not isinstance(key, str) or not key:
        raise RemoteProtocolError(f"crdt: {READ_METHOD} 'key' must be a non-empty string, got {_kind(key)}")
    return key


def read_answer(entry: Entry | None) -> dict:
    """The answer to ``crdt.read``: a delta message holding the entry, or none."""
    if entry is None:
        return encode_message(SyncDelta(delta=Delta(entries=(), context=CausalContext())))
    return encode_message(SyncDelta(delta=Delta(entries=(entry,), context=CausalContext.from_dots((entry.dot,)))))


def read_read_answer(body: Any, key: str) -> Entry | None:
    """The entry in a peer's answer to ``crdt.read`` for ``key``; ``RemoteProtocolError`` if malformed.

    Only the entry is kept: its context is rebuilt from its own dot, so an answer
    can never make us claim writes we have not seen.
    """
    msg = decode_message(body)
    if not isinstance(msg, SyncDelta) or msg.reply_context is not None or len(msg.delta.entries) > 1:
        raise RemoteProtocolError(f"crdt: an answer to {READ_METHOD} is a delta message with at most one entry")
    if not msg.delta.entries:
        return None
    entry = msg.delta.entries[0]
    if entry.key != key:
        raise RemoteProtocolError(f"crdt: asked {READ_METHOD} for {key!r}, the answer holds {entry.key!r}")
    return entry


def _kind(obj: Any) -> str:
    return f"a {type(obj).__name__}"
