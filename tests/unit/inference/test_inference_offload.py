"""choose_target: run here while there is room, else the peer predicted to finish first."""

from __future__ import annotations

import pytest

from crdt.errors import LocalProtocolError
from inference import Overloaded, PeerLoad, choose_target


def peer(name: str, queue: int = 0, max_queue: int = 4, has_model: bool = True, rtt_ms: float = 2.0) -> PeerLoad:
    return PeerLoad(peer=name, queue=queue, max_queue=max_queue, has_model=has_model, rtt_ms=rtt_ms)


def test_runs_here_while_the_local_queue_has_room() -> None:
    assert choose_target(0, 4, [peer("a")]) is None
    assert choose_target(3, 4, []) is None


def test_full_local_queue_picks_the_least_loaded_peer_by_ratio() -> None:
    peers = [peer("a", queue=2, max_queue=4), peer("b", queue=3, max_queue=8), peer("c", queue=0, max_queue=1)]
    # a: 0.5, b: 0.375, c: 0.0
    assert choose_target(4, 4, peers) == "c"
    assert choose_target(4, 4, peers[:2]) == "b"


def test_equal_spare_capacity_goes_to_the_lower_rtt_then_the_lower_id() -> None:
    assert choose_target(4, 4, [peer("a", rtt_ms=9.0), peer("b", rtt_ms=1.0)]) == "b"
    assert choose_target(4, 4, [peer("z"), peer("y")]) == "y"


def test_peers_without_the_model_or_without_room_are_never_chosen() -> None:
    peers = [peer("nomodel", has_model=False), peer("full", queue=4, max_queue=4), peer("ok", queue=3)]
    assert choose_target(9, 4, peers) == "ok"


def test_a_node_with_no_local_capacity_always_offloads() -> None:
    assert choose_target(0, 0, [peer("a")]) == "a"


def test_overloaded_when_nobody_can_take_it() -> None:
    peers = [peer("nomodel", has_model=False), peer("full", queue=2, max_queue=2), peer("zero", max_queue=0)]
    with pytest.raises(Overloaded, match="^inference: .*busy") as info:
        choose_target(4, 4, peers)
    assert "4/4" in str(info.value)
    with pytest.raises(Overloaded):
        choose_target(0, 0, [])


def test_bad_loads_are_refused_when_built() -> None:
    with pytest.raises(LocalProtocolError):
        peer("a", queue=-1)
    with pytest.raises(LocalProtocolError):
        peer("a", rtt_ms=float("nan"))
    with pytest.raises(LocalProtocolError):
        peer("")
    with pytest.raises(LocalProtocolError):
        choose_target(-1, 4, [])


def test_equal_load_goes_to_the_stronger_tier():
    from inference import PeerLoad, choose_target

    peers = [
        PeerLoad("a-device", 0, 4, True, 0.1, strength=0),
        PeerLoad("b-cloud", 0, 4, True, 5.0, strength=2),
        PeerLoad("c-edge", 0, 4, True, 1.0, strength=1),
    ]
    assert choose_target(0, 0, peers) == "b-cloud"
    # Spare capacity still comes first.
    busy_cloud = [PeerLoad("b-cloud", 3, 4, True, 0.1, strength=2), PeerLoad("a-device", 0, 4, True, 0.1)]
    assert choose_target(0, 0, busy_cloud) == "a-device"


def test_measured_speed_predicts_the_earliest_completion() -> None:
    """(queue + 1) * run_ms + rtt_ms: a fast peer with a queue beats an idle slow one."""
    fast_busy = PeerLoad("fast", 2, 4, True, 2.0, run_ms=10.0)  # 3 * 10 + 2 = 32 ms
    slow_idle = PeerLoad("slow", 0, 4, True, 2.0, run_ms=100.0)  # 1 * 100 + 2 = 102 ms
    assert choose_target(4, 4, [slow_idle, fast_busy]) == "fast"
    # Without figures the old rule holds: most spare capacity first.
    assert choose_target(4, 4, [PeerLoad("fast", 2, 4, True, 2.0), PeerLoad("slow", 0, 4, True, 2.0)]) == "slow"


def test_an_unmeasured_peer_is_predicted_at_the_median_of_the_measured() -> None:
    peers = [PeerLoad("a", 0, 4, True, 0.0, run_ms=50.0), PeerLoad("b", 0, 4, True, 0.0, run_ms=10.0),
             PeerLoad("new", 0, 4, True, 0.0)]  # predicted at median(50, 10) = 30 ms: between the two
    assert choose_target(4, 4, peers) == "b"
    busy = PeerLoad("a", 2, 4, True, 0.0, run_ms=50.0)  # 150 ms; the new peer is predicted at 50
    assert choose_target(4, 4, [busy, PeerLoad("new", 0, 4, True, 0.0)]) == "new"
    with pytest.raises(LocalProtocolError, match="run_ms"):
        PeerLoad("a", 0, 4, True, 0.0, run_ms=float("inf"))
    with pytest.raises(LocalProtocolError, match="run_ms"):
        PeerLoad("a", 0, 4, True, 0.0, run_ms=-1.0)
