"""The voter planner (mesh/voters.py): pure, one change at a time, never below a live majority."""

from __future__ import annotations

import itertools
import random

import pytest

from mesh.voters import (
    AddVoter,
    PeerView,
    RemoveVoter,
    VoterPlanner,
    live_majority,
    rank,
    ranked_candidates,
    stale_voters,
)

A, B, C, D, E = (f"127.0.0.1:{7000 + i}" for i in range(5))
OWNERS = {A: "pa", B: "pb", C: "pc", D: "pd", E: "pe"}


def peer(pid: str, state: str = "alive", tier: str = "edge", started_at: float = 100.0, **kw) -> PeerView:
    return PeerView(peer_id=pid, tier=tier, state=state, started_at=started_at, **kw)


def voter(pid: str, state: str = "alive") -> PeerView:
    addr = next(a for a, p in OWNERS.items() if p == pid)
    return peer(pid, state, raft_addr=addr)


def planner(target: int = 3, replace_after: float = 30.0) -> VoterPlanner:
    return VoterPlanner(target=target, replace_after=replace_after)


def plan(p: VoterPlanner, voters, peers, now: float, self_addr: str = A):
    return p.plan(self_addr=self_addr, voters=voters, owners=OWNERS, peers=peers, now=now)


# -- preferences -------------------------------------------------------------------------


def test_stronger_tier_first_then_longer_lived_then_peer_id():
    peers = [
        peer("dev-old", tier="device", started_at=1.0),
        peer("edge-young", tier="edge", started_at=500.0),
        peer("edge-old", tier="edge", started_at=10.0),
        peer("cloud-unknown-start", tier="cloud", started_at=0.0),
        peer("cloud-young", tier="cloud", started_at=900.0),
        peer("cloud-b", tier="cloud", started_at=50.0),
        peer("cloud-a", tier="cloud", started_at=50.0),
    ]
    order = [p.peer_id for p in ranked_candidates(peers)]
    assert order == ["cloud-a", "cloud-b", "cloud-young", "cloud-unknown-start", "edge-old", "edge-young", "dev-old"]


def test_only_alive_admitted_non_voters_are_candidates():
    peers = [
        peer("suspect", state="suspect"),
        peer("gone", state="gone"),
        peer("left", state="left"),
        peer("refused", admitted=False),
        peer("voting", raft_addr=B),
        peer("recorded-voter"),
        peer("ok"),
    ]
    assert [p.peer_id for p in ranked_candidates(peers, voting={"recorded-voter"})] == ["ok"]


def test_a_short_mesh_adds_the_best_candidate():
    change = plan(planner(), [A, B], [voter("pb"), peer("dev", tier="device"), peer("cloud", tier="cloud")], now=0)
    assert isinstance(change, AddVoter) and change.peer_id == "cloud"


def test_a_full_mesh_keeps_its_live_voters_even_when_a_better_node_appears():
    # Every change is a window of lower fault tolerance: voters change only when one goes away.
    peers = [voter("pb"), voter("pc"), peer("cloud", tier="cloud", started_at=1.0)]
    assert plan(planner(), [A, B, C], peers, now=0) is None


def test_grows_from_one_voter():
    # The only way from one voter to two: the new node is needed for any commit, but there is no other.
    change = plan(planner(), [A], [peer("pb")], now=0)
    assert isinstance(change, AddVoter) and change.peer_id == "pb"


# -- dead voters ---------------------------------------------------------------------------


def test_a_dead_voter_is_replaced_only_after_replace_after():
    p = planner(replace_after=30.0)
    peers = [voter("pb"), voter("pc", state="gone"), peer("pd", tier="cloud")]
    assert plan(p, [A, B, C], peers, now=100.0) is None  # first seen down now
    assert p.down_since(C) == 100.0
    assert plan(p, [A, B, C], peers, now=129.9) is None
    change = plan(p, [A, B, C], peers, now=130.0)
    assert isinstance(change, RemoveVoter) and change.addr == C and change.peer_id == "pc"


def test_remove_first_then_add():
    p = planner(replace_after=5.0)
    peers = [voter("pb"), voter("pc", state="gone"), peer("pd", tier="cloud")]
    plan(p, [A, B, C], peers, now=0.0)
    assert isinstance(plan(p, [A, B, C], peers, now=5.0), RemoveVoter)
    # C is out; the next step fills its seat.
    change = plan(p, [A, B], peers, now=5.5)
    assert isinstance(change, AddVoter) and change.peer_id == "pd"


def test_a_voter_that_comes_back_restarts_the_clock():
    p = planner(replace_after=10.0)
    down = [voter("pb"), voter("pc", state="gone"), peer("pd")]
    up = [voter("pb"), voter("pc", state="alive"), peer("pd")]
    plan(p, [A, B, C], down, now=0.0)
    plan(p, [A, B, C], up, now=8.0)
    assert p.down_since(C) is None
    assert plan(p, [A, B, C], down, now=9.0) is None
    assert plan(p, [A, B, C], down, now=18.9) is None
    assert isinstance(plan(p, [A, B, C], down, now=19.0), RemoveVoter)


def test_suspect_is_not_dead():
    p = planner(replace_after=1.0)
    peers = [voter("pb"), voter("pc", state="suspect"), peer("pd")]
    for now in (0.0, 5.0, 50.0):
        assert plan(p, [A, B, C], peers, now=now) is None


def test_an_unknown_voter_counts_as_down():
    p = planner(replace_after=1.0)
    peers = [voter("pb"), peer("pd")]  # nobody knows who owns C any more
    plan(p, [A, B, C], peers, now=0.0)
    change = plan(p, [A, B, C], peers, now=1.0)
    assert isinstance(change, RemoveVoter) and change.addr == C


def test_a_dead_voter_stays_without_a_candidate():
    # Removing it would not let the cluster survive one more failure, and it may come back.
    p = planner(replace_after=1.0)
    peers = [voter("pb"), voter("pc", state="gone"), peer("dev", state="suspect")]
    for now in (0.0, 10.0, 100.0):
        assert plan(p, [A, B, C], peers, now=now) is None


def test_never_removes_below_a_live_majority():
    # 5 voters, 3 of them dead: the leader has no majority; removing any would leave 1 or 2 live of 4.
    p = planner(target=5, replace_after=1.0)
    peers = [voter("pb"), voter("pc", state="gone"), voter("pd", state="gone"), voter("pe", state="gone"),
             peer("new", tier="cloud")]
    for now in (0.0, 10.0):
        assert plan(p, [A, B, C, D, E], peers, now=now) is None


def test_the_voter_down_longest_goes_first():
    p = planner(target=5, replace_after=1.0)
    early = [voter("pb"), voter("pc"), voter("pd", state="gone"), voter("pe"), peer("new")]
    plan(p, [A, B, C, D, E], early, now=0.0)
    later = [voter("pb"), voter("pc", state="gone"), voter("pd", state="gone"), voter("pe"), peer("new")]
    plan(p, [A, B, C, D, E], later, now=0.5)
    change = plan(p, [A, B, C, D, E], later, now=2.0)
    assert isinstance(change, RemoveVoter) and change.addr == D


def test_no_add_that_would_make_commits_wait_for_the_new_node():
    # 5 wanted, {A, B, C} with C dead (not yet overdue): adding D makes 4 voters needing 3 acks,
    # which A and B alone cannot give; wait until C is replaced or back.
    p = planner(target=5, replace_after=60.0)
    peers = [voter("pb"), voter("pc", state="gone"), peer("pd")]
    assert plan(p, [A, B, C], peers, now=0.0) is None


def test_a_failed_promotion_passes_the_candidate_over_for_a_while():
    p = VoterPlanner(target=3, replace_after=30.0, retry_after=10.0)
    peers = [voter("pb"), peer("cloud", tier="cloud"), peer("edge")]
    p.failed("cloud", now=0.0)
    assert plan(p, [A, B], peers, now=1.0).peer_id == "edge"
    assert plan(p, [A, B], peers, now=10.0).peer_id == "cloud"


# -- graceful leave ------------------------------------------------------------------------


def test_a_leaving_voter_is_removed_at_once():
    p = planner(replace_after=1000.0)
    p.leaving(B)
    change = plan(p, [A, B, C], [voter("pb"), voter("pc")], now=0.0)
    assert isinstance(change, RemoveVoter) and change.addr == B and change.reason == "it is leaving"


def test_a_leaving_voter_that_would_break_the_majority_stays():
    p = planner()
    p.leaving(B)
    assert plan(p, [A, B, C], [voter("pb"), voter("pc", state="gone")], now=0.0) is None


def test_the_leader_is_never_removed_by_itself():
    p = planner(replace_after=0.1)
    p.leaving(A)
    assert plan(p, [A, B, C], [voter("pb"), voter("pc")], now=0.0) is None


# -- properties over many random situations --------------------------------------------------


@pytest.mark.parametrize("seed", range(200))
def test_any_change_keeps_a_live_majority_and_is_one_step(seed):
    rnd = random.Random(seed)
    target = rnd.choice([3, 5])
    n = rnd.randint(1, target + 1)
    addrs = [A, B, C, D, E, "127.0.0.1:7009"][:n]
    owners = {a: f"p{i}" for i, a in enumerate(addrs)}
    states = ["alive", "suspect", "gone", "left"]
    peers = [peer(owners[a], state=rnd.choice(states), raft_addr=a) for a in addrs[1:]]
    peers += [peer(f"c{i}", state=rnd.choice(states), tier=rnd.choice(["device", "edge", "cloud"]),
                   started_at=rnd.choice([0.0, 5.0, 50.0])) for i in range(rnd.randint(0, 3))]
    p = VoterPlanner(target=target, replace_after=rnd.choice([0.5, 2.0]))
    if rnd.random() < 0.3:
        p.leaving(rnd.choice(addrs))
    up = {addrs[0]} | {x.raft_addr for x in peers if x.raft_addr and x.state in ("alive", "suspect")}
    for now in (0.0, 1.0, 3.0):
        change = p.plan(self_addr=addrs[0], voters=addrs, owners=owners, peers=peers, now=now)
        if isinstance(change, RemoveVoter):
            assert change.addr != addrs[0]
            assert live_majority(set(addrs) - {change.addr}, up)
        elif isinstance(change, AddVoter):
            assert len(addrs) < target
            best = ranked_candidates(peers, owners.values())[0]
            assert change.peer_id == best.peer_id
            assert len(up) == len(addrs) or 2 * len(up) > len(addrs) + 1


def test_the_same_inputs_give_the_same_plan():
    peers = [voter("pb"), voter("pc", state="gone"), peer("x", tier="cloud"), peer("y", tier="cloud")]
    plans = []
    for order in itertools.permutations(peers):
        p = planner(replace_after=1.0)
        plan(p, [C, B, A], list(order), now=0.0)
        plans.append(plan(p, [A, C, B], list(order), now=1.0))
    assert len(set(plans)) == 1 and isinstance(plans[0], RemoveVoter)


def test_stale_voters_are_alive_peers_advertising_a_seat_they_lost():
    peers = [voter("pb"), voter("pc"), voter("pd", state="gone"), peer("x")]
    assert stale_voters([A, B], peers) == ["pc"]


def test_rank_puts_unknown_start_last_within_a_tier():
    assert rank(peer("a", started_at=0.0)) > rank(peer("b", started_at=1e9))
