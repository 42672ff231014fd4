"""The per-attempt routing rule (inference/router.py): earliest predicted completion, exclusions, degraded, refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import LocalProtocolError
from inference.messages import PartProfile
from inference.router import DEGRADED, LOCAL, REFUSE, REMOTE, SPLIT, TRANSITIONS, Here, Peer, attempt_seconds, route

SIZES = (49152, 16384, 8192, 4000)


def profile(*ms: float, cuts: str = "sig") -> PartProfile:
    return PartProfile(cuts=cuts, compute_ms=tuple(ms), memory_bytes=tuple(1 for _ in ms),
                       boundary_bytes=SIZES[: len(ms)] + (SIZES[-1],) if len(ms) < 3 else SIZES)


SLOW = profile(30.0, 30.0, 40.0)
FAST = profile(6.0, 6.0, 8.0)


def here(p=SLOW, queue=0, limit=32, degraded=False):
    return Here(profile=p, queue=queue, limit=limit, degraded=degraded)


def test_alone_the_request_runs_here():
    assert route(here=here(), peers=[], remaining_s=30).kind == LOCAL


def test_a_much_faster_idle_peer_takes_the_whole_request():
    """"run here, send whole to a peer, or split — whichever predicts the earliest completion"."""
    r = route(here=here(), peers=[Peer(peer="B", queue=0, max_queue=4, profile=FAST)], remaining_s=30)
    assert (r.kind, r.peer, r.cut) == (REMOTE, "B", 0)
    assert r.predicted_ms < 100.0 and 0 < r.attempt_s <= 30


def test_a_slow_link_keeps_the_request_here():
    peer = Peer(peer="B", queue=0, max_queue=4, profile=FAST, bandwidth=1e5)  # 0.1 MB/s: 0.5 s for the input
    assert route(here=here(), peers=[peer], remaining_s=30).kind == LOCAL


def test_a_slow_link_with_a_light_cut_splits():
    # The input is heavy, the activation after part 0 light; the peer is far faster on the rest.
    mine = PartProfile(cuts="sig", compute_ms=(1.0, 200.0), memory_bytes=(1, 1), boundary_bytes=(1_000_000, 100, 10))
    theirs = PartProfile(cuts="sig", compute_ms=(0.2, 20.0), memory_bytes=(1, 1), boundary_bytes=(1_000_000, 100, 10))
    r = route(here=here(mine), peers=[Peer(peer="B", queue=0, max_queue=4, profile=theirs, bandwidth=1e6)],
              remaining_s=30)
    assert (r.kind, r.peer, r.cut) == (SPLIT, "B", 1)


def test_a_peer_that_cuts_differently_gets_whole_requests_only():
    mine = PartProfile(cuts="sig", compute_ms=(1.0, 200.0), memory_bytes=(1, 1), boundary_bytes=(1_000_000, 100, 10))
    theirs = PartProfile(cuts="other", compute_ms=(20.0,), memory_bytes=(1,), boundary_bytes=(1_000_000, 10))
    r = route(here=here(mine), peers=[Peer(peer="B", queue=0, max_queue=4, profile=theirs, bandwidth=1e6)],
              remaining_s=30)
    assert r.kind in (LOCAL, REMOTE) and r.cut == 0


def test_queues_count_so_load_spreads():
    busy = Peer(peer="B", queue=3, max_queue=4, profile=FAST)
    idle = Peer(peer="C", queue=0, max_queue=4, profile=profile(12.0, 12.0, 16.0))
    assert route(here=here(), peers=[busy, idle], remaining_s=30).peer == "C"
    full = Peer(peer="B", queue=4, max_queue=4, profile=FAST)
    assert route(here=here(), peers=[full], remaining_s=30).kind == LOCAL  # no room: never chosen


def test_a_failed_peer_is_not_tried_again_and_here_is_the_last_resort():
    peers = [Peer(peer="B", queue=0, max_queue=4, profile=FAST), Peer(peer="C", queue=0, max_queue=4, profile=FAST)]
    first = route(here=here(), peers=peers, remaining_s=30)
    second = route(here=here(), peers=peers, excluded=[first.peer], remaining_s=30)
    assert second.kind == REMOTE and second.peer != first.peer
    assert route(here=here(), peers=peers, excluded=["B", "C"], remaining_s=30).kind == LOCAL


def test_not_loaded_here_goes_to_a_peer_or_degrades_or_refuses_with_the_reason():
    peer = Peer(peer="B", queue=0, max_queue=4, profile=None, whole_ms=50.0)
    assert route(here=here(None), peers=[peer], remaining_s=30).kind == REMOTE
    assert route(here=here(None, degraded=True), peers=[], remaining_s=30).kind == DEGRADED
    refused = route(here=here(None), peers=[peer], excluded=["B"], remaining_s=30)
    assert refused.kind == REFUSE and "not loaded here" in refused.reason and "1 peer(s) failed" in refused.reason


def test_a_full_local_queue_with_no_peer_refuses():
    r = route(here=here(queue=32, limit=32), peers=[], remaining_s=30)
    assert r.kind == REFUSE and "32 requests queued here" in r.reason


def test_a_local_run_past_the_deadline_degrades_when_it_can():
    assert route(here=here(degraded=True), peers=[], remaining_s=0.05).kind == DEGRADED
    assert route(here=here(degraded=False), peers=[], remaining_s=0.05).kind == LOCAL  # nothing better: try


def test_offload_off_and_prefer():
    peer = Peer(peer="B", queue=0, max_queue=4, profile=FAST)
    assert route(here=here(), peers=[peer], remaining_s=30, offload="off").kind == LOCAL
    slow_peer = Peer(peer="B", queue=0, max_queue=4, profile=profile(300.0, 300.0, 400.0))
    assert route(here=here(), peers=[slow_peer], remaining_s=30, offload="prefer").peer == "B"
    with pytest.raises(LocalProtocolError, match="offload must be one of"):
        route(here=here(), peers=[], remaining_s=30, offload="sometimes")


def test_a_passed_deadline_refuses():
    assert route(here=here(), peers=[], remaining_s=0).kind == REFUSE


def test_attempts_are_bounded_by_the_time_left_and_grow_with_the_prediction():
    assert attempt_seconds(10.0, 30.0) < attempt_seconds(1000.0, 30.0) <= 30.0
    assert attempt_seconds(100_000.0, 2.0) == 2.0


def test_the_transition_table_never_leaves_a_request_without_an_end():
    ends = {"answered", "refused"}
    for state, moves in TRANSITIONS.items():
        assert moves and all(target in TRANSITIONS or target in ends for target in moves.values()), state
        assert state == "routing" or "deadline" in moves  # every running state is bounded by the deadline


@settings(max_examples=200, deadline=None)
@given(
    queue=st.integers(0, 40),
    peers=st.lists(st.tuples(st.integers(0, 6), st.floats(0.1, 500.0), st.booleans()), max_size=4),
    excluded=st.sets(st.integers(0, 3)),
    remaining=st.floats(0.01, 60.0),
)
def test_never_a_full_or_excluded_peer_never_here_when_full(queue, peers, excluded, remaining):
    ps = [Peer(peer=f"p{i}", queue=q, max_queue=4, profile=profile(ms, ms, ms) if has else None, whole_ms=ms * 3)
          for i, (q, ms, has) in enumerate(peers)]
    r = route(here=here(queue=queue), peers=ps, excluded=[f"p{i}" for i in excluded], remaining_s=remaining)
    if r.peer is not None:
        chosen = next(p for p in ps if p.peer == r.peer)
        assert chosen.has_room and int(r.peer[1:]) not in excluded
    if queue >= 32:
        assert r.kind != LOCAL


def test_a_saturated_node_passes_requests_on_even_when_here_predicts_sooner():
    """A CPU-bound node's own runs take the CPU it needs to pass its other requests on."""
    busy_peer = Peer(peer="B", queue=3, max_queue=8, profile=profile(12.0, 12.0, 16.0))  # (3+1)*40 ms > 100 ms here
    assert route(here=here(), peers=[busy_peer], remaining_s=30).kind == LOCAL
    r = route(here=Here(profile=SLOW, queue=1, limit=32, saturated=True), peers=[busy_peer], remaining_s=30)
    assert (r.kind, r.peer) == (REMOTE, "B")
    # One run at a time still goes here (it only takes CPU the node leaves idle: low-priority threads).
    assert route(here=Here(profile=SLOW, queue=0, limit=32, saturated=True), peers=[busy_peer],
                 remaining_s=30).kind == LOCAL
    # Past a peer's advertised room too (the peer refuses past its own hard limit) ...
    full = Peer(peer="B", queue=8, max_queue=8, profile=FAST)
    assert route(here=here(), peers=[full], remaining_s=30).kind == LOCAL
    assert route(here=Here(profile=SLOW, queue=1, limit=32, saturated=True), peers=[full], remaining_s=30).peer == "B"
    # ... but a peer that failed this request is not tried again, saturated or not.
    assert route(here=Here(profile=SLOW, queue=1, limit=32, saturated=True), peers=[full], excluded=["B"],
                 remaining_s=30).kind == LOCAL
