"""Which nodes vote in Raft: the voter planner (sans-IO).

Theory of operation
-------------------
Only the Raft leader plans. Once per tick its driver hands the planner the
current voter set (Raft addresses), who owns each address, every peer it knows
(tier, start time, membership state, admitted or not) and ``now`` (monotonic
seconds). The planner answers with at most one change — ``AddVoter`` or
``RemoveVoter`` — or ``None``. The driver carries it out and waits for it to
commit before asking again, so changes happen one at a time, as pysyncobj
requires (it refuses a membership change while another is uncommitted).

Rules, in order (the first that applies wins):

1. A voter that is leaving gracefully (it asked, ``leaving``) is removed at
   once, if the voters that remain still hold a live majority.
2. A voter that has been down (membership state ``gone`` or ``left``, or not
   known at all) for ``replace_after`` seconds is removed — the one down
   longest — but only when a candidate is ready to take its seat and the
   remaining voters hold a live majority. Without a candidate a dead voter
   stays: removing it would not make the cluster tolerate one more failure,
   and it may come back.
3. While there are fewer than ``target`` voters, the best candidate is added
   — if the live voters alone are a majority of the grown set, or every
   voter is up (the only way to grow from one voter to two).

Why remove first, then add (rules 2 before 3). pysyncobj switches to a new
voter set when the change is appended, one change at a time. With voters
{A, B, C} and C dead, adding D first makes four voters whose majority is three
of A, B, D: nothing commits until D has caught up, and should D fail before
that, {A, B} is two of four — no majority, and no way to remove anyone. Removing
C first leaves {A, B}, which commit exactly when they did before (both were
needed already: two of three with C dead); adding D then needs two of
{A, B, D}, which A and B give at once while D catches up. So every step keeps
a majority made of nodes that are up now, and no step depends on the new node.

Candidates are alive, admitted peers that do not vote, ranked stronger first
(cloud, edge, device), then longer-lived (earlier start time; an unknown start
ranks last), then by peer id so every run chooses alike. A candidate whose
promotion failed is skipped for ``retry_after`` seconds. A live voter is never
replaced just because a better candidate appeared: every change is a window
with less fault tolerance, so voters change only when one goes away.

Nothing here reads a clock or does IO.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .config import TIERS

UP_STATES = frozenset({"alive", "suspect"})  # suspect is not dead: the failure detector has not decided
RETRY_AFTER = 10.0  # seconds a candidate whose promotion failed is passed over


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerView:
    """What the planner needs to know about one peer."""

    peer_id: str
    tier: str
    state: str  # alive / suspect / gone / left (mesh.peers.PeerRecord.state)
    started_at: float = 0.0  # unix seconds the peer's process started; 0 = unknown
    raft_addr: str = ""  # advertised only by voters
    admitted: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class AddVoter:
    """Ask ``peer_id`` to start Raft with the current voters as partners, then add it."""

    peer_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveVoter:
    """Remove the voter at ``addr`` (owned by ``peer_id``, "" when unknown)."""

    addr: str
    peer_id: str
    reason: str


Change = AddVoter | RemoveVoter


def rank(peer: PeerView) -> tuple:
    """Sort key of a candidate: stronger tier, then longer-lived, then peer id."""
    started = peer.started_at if peer.started_at > 0 else math.inf
    return (-TIERS.index(peer.tier), started, peer.peer_id)


def ranked_candidates(peers: Iterable[PeerView], voting: Iterable[str] = ()) -> list[PeerView]:
    """Peers that could take a seat (alive, admitted, not voting), best first."""
    voting = set(voting)
    return sorted(
        (p for p in peers if p.state == "alive" and p.admitted and not p.raft_addr and p.peer_id not in voting),
        key=rank,
    )


def live_majority(voters: Iterable[str], up: set[str]) -> bool:
    """Whether the voters that are up are more than half of ``voters``."""
    voters = set(voters)
    return bool(voters) and 2 * len(voters & up) > len(voters)


def stale_voters(voters: Iterable[str], peers: Iterable[PeerView]) -> list[str]:
    """Peers that still advertise a Raft address the voter set no longer has (removed while away)."""
    voters = set(voters)
    return sorted(p.peer_id for p in peers if p.raft_addr and p.raft_addr not in voters and p.state == "alive")


class VoterPlanner:
    """Plans one voter change at a time; remembers since when each voter is down."""

    def __init__(self, *, target: int, replace_after: float, retry_after: float = RETRY_AFTER) -> None:
        self.target = target
        self.replace_after = replace_after
        self.retry_after = retry_after
        self._down_since: dict[str, float] = {}
        self._failed: dict[str, float] = {}  # candidate peer id -> when its promotion failed
        self._leaving: set[str] = set()  # voter addresses that asked to be replaced

    def leaving(self, addr: str) -> None:
        """The voter at ``addr`` is stopping gracefully: remove it first."""
        self._leaving.add(addr)

    def failed(self, peer_id: str, now: float) -> None:
        """Promoting ``peer_id`` failed: pass it over for ``retry_after`` seconds."""
        self._failed[peer_id] = now

    def down_since(self, addr: str) -> float | None:
        """When the planner first saw the voter at ``addr`` down, or None while it is up."""
        return self._down_since.get(addr)

    def plan(
        self,
        *,
        self_addr: str,
        voters: Iterable[str],
        owners: Mapping[str, str],
        peers: Iterable[PeerView],
        now: float,
    ) -> Change | None:
        """At most one change to the voter set, as seen by the leader at ``self_addr`` at ``now``."""
        voters = sorted(set(voters) | {self_addr})
        by_id = {p.peer_id: p for p in peers}
        up = {self_addr} | {v for v in voters if (p := by_id.get(owners.get(v, ""))) and p.state in UP_STATES}
        self._observe(voters, up, now)
        voting_ids = {owners[v] for v in voters if v in owners}
        candidates = [
            p for p in ranked_candidates(by_id.values(), voting_ids)
            if now - self._failed.get(p.peer_id, -math.inf) >= self.retry_after
        ]

        def removable(addr: str) -> bool:
            rest = [v for v in voters if v != addr]
            return addr != self_addr and live_majority(rest, up)

        for addr in voters:  # rule 1
            if addr in self._leaving and removable(addr):
                return RemoveVoter(addr=addr, peer_id=owners.get(addr, ""), reason="it is leaving")
        overdue = sorted(
            (since, addr) for addr in voters
            if addr not in up and (since := self._down_since[addr]) + self.replace_after <= now
        )
        if candidates:  # rule 2
            for since, addr in overdue:
                if removable(addr):
                    return RemoveVoter(
                        addr=addr, peer_id=owners.get(addr, ""),
                        reason=f"down for {now - since:.1f} s (replace_after {self.replace_after:g} s); "
                        f"{candidates[0].peer_id} takes its seat",
                    )
        if candidates and len(voters) < self.target:  # rule 3
            grown = len(voters) + 1
            if len(up) == len(voters) or 2 * len(up) > grown:
                return AddVoter(peer_id=candidates[0].peer_id,
                                reason=f"{len(voters)} of {self.target} voters; best candidate "
                                f"({candidates[0].tier})")
        return None

    def _observe(self, voters: list[str], up: set[str], now: float) -> None:
        for addr in voters:
            if addr in up:
                self._down_since.pop(addr, None)
            else:
                self._down_since.setdefault(addr, now)
        for addr in set(self._down_since) - set(voters):
            del self._down_since[addr]
        self._leaving &= set(voters)
        self._failed = {p: t for p, t in self._failed.items() if now - t < self.retry_after}
