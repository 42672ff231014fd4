"""The leader's placement decision (inference.placement): who serves a model, and when to rewrite it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.state import MAX_PARTITION_PEERS as CONSENSUS_MAX_PARTITION_PEERS
from consensus.state import MAX_PARTITIONS as CONSENSUS_MAX_PARTITIONS
from crdt.errors import LocalProtocolError
from inference.placement import (
    MAX_PARTITION_PEERS,
    MAX_PARTITIONS,
    TIERS,
    ServingNode,
    eligible,
    placement_changed,
    plan_placement,
)
from mesh.config import TIERS as MESH_TIERS

MB = 1_000_000


def node(peer, tier="edge", *, alive=True, mem=None, speed=None, caps=()):
    return ServingNode(peer=peer, tier=tier, alive=alive, memory_free_bytes=mem, speed_ms=speed, capabilities=caps)


def changed(current, planned, nodes, need=MB, **kw):
    return placement_changed(current, planned, nodes, model_bytes_needed=need, **kw)


def test_mirrored_constants_match_their_homes():
    """inference may not import mesh or consensus, so it mirrors their limits; they must agree."""
    assert MAX_PARTITION_PEERS == CONSENSUS_MAX_PARTITION_PEERS
    assert MAX_PARTITIONS == CONSENSUS_MAX_PARTITIONS
    assert TIERS == MESH_TIERS


# -- eligibility ------------------------------------------------------------------------------

def test_only_alive_nodes_with_the_memory_and_capabilities_are_placed():
    """Rule: alive, enough free memory (unknown counts as enough), every required capability."""
    nodes = [
        node("dead", alive=False),
        node("small", mem=MB - 1),
        node("exact", mem=MB),
        node("unknown", mem=None),
        node("nogpu", caps=("npu",)),
        node("gpu", caps=("gpu", "npu")),
    ]
    plan = plan_placement("m", MB, nodes, required_capabilities=("gpu",))
    assert plan == {0: ("gpu",)}
    plan = plan_placement("m", MB, nodes)
    assert set(plan[0]) == {"exact", "unknown", "nogpu", "gpu"}


def test_no_eligible_node_places_nothing():
    """Rule: an empty eligible set gives {} (the caller skips the write), never an error."""
    assert plan_placement("m", MB, []) == {}
    assert plan_placement("m", MB, [node("a", alive=False), node("b", mem=0)]) == {}
    assert not changed({0: ("a",)}, {}, [node("a", alive=False)])


# -- ranking ----------------------------------------------------------------------------------

def test_strong_order_measured_fastest_first_then_unmeasured_by_tier_then_peer_id():
    """Rule: measured nodes first, fastest first; unmeasured after, cloud > edge > device; ties by peer id."""
    nodes = [
        node("d-slow", "device", speed=90.0),
        node("c-fast", "cloud", speed=5.0),
        node("e-mid", "edge", speed=20.0),
        node("u-device", "device"),
        node("u-cloud-b", "cloud"),
        node("u-cloud-a", "cloud"),
        node("u-edge", "edge"),
        node("tie-edge", "edge", speed=20.0),
        node("tie-cloud", "cloud", speed=20.0),
    ]
    assert plan_placement("m", MB, nodes) == {0: (
        "c-fast", "tie-cloud", "e-mid", "tie-edge", "d-slow", "u-cloud-a", "u-cloud-b", "u-edge", "u-device",
    )}


def test_at_most_max_peers_the_best_ones():
    nodes = [node(f"p{i:02}", speed=float(i)) for i in range(20)]
    assert plan_placement("m", MB, nodes) == {0: tuple(f"p{i:02}" for i in range(MAX_PARTITION_PEERS))}
    assert plan_placement("m", MB, nodes, max_peers=3) == {0: ("p00", "p01", "p02")}


def test_two_partitions_front_on_the_data_side_back_on_the_strong_nodes():
    """Rule: partition 0 ranks device, edge, cloud first (near the data); partition 1 ranks as a whole model."""
    nodes = [node("cam", "device", speed=80.0), node("gw", "edge", speed=30.0), node("gpu", "cloud", speed=4.0),
             node("cam2", "device")]
    assert plan_placement("m", MB, nodes, partitions=2) == {
        0: ("cam", "cam2", "gw", "gpu"),
        1: ("gpu", "gw", "cam", "cam2"),
    }


@pytest.mark.parametrize("kwargs, match", [
    ({"partitions": 0}, "partitions"),
    ({"partitions": 65}, "partitions"),
    ({"max_peers": 0}, "max_peers"),
    ({"max_peers": 17}, "max_peers"),
])
def test_bad_arguments_name_the_field(kwargs, match):
    with pytest.raises(LocalProtocolError, match=f"^inference: .*{match}"):
        plan_placement("m", MB, [node("a")], **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"peer": ""}, "peer id"),
    ({"tier": "mainframe"}, "tier"),
    ({"alive": 1}, "alive"),
    ({"memory_free_bytes": -1}, "memory_free_bytes"),
    ({"speed_ms": float("nan")}, "speed_ms"),
    ({"speed_ms": -1.0}, "speed_ms"),
    ({"capabilities": ["gpu"]}, "capabilities"),
])
def test_serving_node_is_validated(kwargs, match):
    base = {"peer": "a", "tier": "edge", "alive": True}
    with pytest.raises(LocalProtocolError, match=f"^inference: .*{match}"):
        ServingNode(**{**base, **kwargs})


def test_a_peer_given_twice_is_refused():
    with pytest.raises(LocalProtocolError, match="^inference: .*twice"):
        plan_placement("m", MB, [node("a"), node("a", "cloud")])


# -- when to write ----------------------------------------------------------------------------

def test_rule_1_no_placement_yet_or_other_partitions():
    nodes = [node("a"), node("b")]
    plan = plan_placement("m", MB, nodes)
    assert changed(None, plan, nodes)
    assert changed({}, plan, nodes)
    assert changed({0: ("a", "b"), 1: ("a", "b")}, plan, nodes)


def test_rule_2_a_placed_peer_that_died_left_or_lost_memory_is_replaced():
    """Rule 2: a placed peer is no longer eligible (dead, left, unknown, out of memory, lacking a capability)."""
    current = {0: ("a", "b")}
    for b in (node("b", alive=False, caps=("gpu",)), node("b", mem=10, caps=("gpu",)), node("b")):
        nodes = [node("a", caps=("gpu",)), b]
        plan = plan_placement("m", MB, nodes, required_capabilities=("gpu",))
        assert plan == {0: ("a",)}
        assert changed(current, plan, nodes, required_capabilities=("gpu",))
    nodes = [node("a")]  # b unknown to the leader: gone from its peer table
    assert changed(current, plan_placement("m", MB, nodes), nodes)


def test_rule_3_a_node_that_joins_is_added_while_there_is_room():
    current = {0: ("a",)}
    nodes = [node("a", speed=10.0), node("b", "device")]
    assert changed(current, plan_placement("m", MB, nodes), nodes)


def test_a_reordering_by_noise_does_not_write():
    """Rule 4: the top moves only when the new first peer is clearly better (20% faster by default)."""
    current = {0: ("a", "b")}
    nodes = [node("a", speed=10.5), node("b", speed=10.0)]  # b now 5% faster: noise
    plan = plan_placement("m", MB, nodes)
    assert plan == {0: ("b", "a")}
    assert not changed(current, plan, nodes)


def test_the_top_moves_when_a_peer_is_clearly_faster():
    current = {0: ("a", "b")}
    nodes = [node("a", speed=10.0), node("b", speed=7.9)]
    assert changed(current, plan_placement("m", MB, nodes), nodes)
    nodes = [node("a", speed=10.0), node("b", speed=8.5)]
    assert not changed(current, plan_placement("m", MB, nodes), nodes)
    assert changed(current, plan_placement("m", MB, nodes), nodes, threshold=0.1)


def test_a_measurement_appearing_or_expiring_alone_does_not_write():
    """Rule: measured vs unmeasured is not 'clearly better' (an advert late by a few seconds drops a speed)."""
    current = {0: ("c", "d")}
    nodes = [node("c", "cloud"), node("d", "device", speed=50.0)]  # d measured now, ranks first
    plan = plan_placement("m", MB, nodes)
    assert plan == {0: ("d", "c")}
    assert not changed(current, plan, nodes)


def test_unmeasured_top_moves_to_a_stronger_tier():
    current = {0: ("e", "c")}
    nodes = [node("e", "edge"), node("c", "cloud")]
    assert changed(current, plan_placement("m", MB, nodes), nodes)


def test_a_full_placement_takes_only_a_clearly_better_newcomer():
    """Rule 4: at max_peers, a newcomer displaces the worst placed peer only when clearly better."""
    current = {0: ("a", "b")}
    close = [node("a", speed=10.0), node("b", speed=20.0), node("n", speed=19.0)]
    plan = plan_placement("m", MB, close, max_peers=2)
    assert plan == {0: ("a", "n")}
    assert not changed(current, plan, close)
    far = [node("a", speed=10.0), node("b", speed=20.0), node("n", speed=12.0)]
    plan = plan_placement("m", MB, far, max_peers=2)
    assert plan == {0: ("a", "n")}
    assert changed(current, plan, far)


def test_front_partition_moves_to_a_weaker_tier_near_the_data():
    current = {0: ("gw",), 1: ("gpu",)}
    nodes = [node("gw", "edge"), node("gpu", "cloud"), node("cam", "device")]
    plan = plan_placement("m", MB, nodes, partitions=2, max_peers=1)
    assert plan == {0: ("cam",), 1: ("gpu",)}
    assert changed(current, plan, nodes)


# -- properties -------------------------------------------------------------------------------

PEERS = [f"peer{i}" for i in range(12)]


@st.composite
def node_sets(draw):
    peers = draw(st.lists(st.sampled_from(PEERS), unique=True, max_size=len(PEERS)))
    return [
        ServingNode(
            peer=p,
            tier=draw(st.sampled_from(TIERS)),
            alive=draw(st.booleans()),
            memory_free_bytes=draw(st.none() | st.integers(0, 4 * MB)),
            speed_ms=draw(st.none() | st.floats(0, 1000, allow_nan=False)),
            capabilities=tuple(draw(st.lists(st.sampled_from(["gpu", "npu"]), unique=True))),
        )
        for p in peers
    ]


demands = st.fixed_dictionaries({
    "model_bytes_needed": st.integers(0, 3 * MB),
    "partitions": st.integers(1, 3),
    "max_peers": st.integers(1, MAX_PARTITION_PEERS),
    "required_capabilities": st.lists(st.sampled_from(["gpu", "npu"]), unique=True).map(tuple),
})


@settings(max_examples=100, deadline=None)
@given(node_sets(), demands, st.randoms(use_true_random=False))
def test_plan_is_the_same_whatever_the_input_order(nodes, demand, rng):
    """Every node computes the leader's plan alike: the order facts arrive in does not matter."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    assert plan_placement("m", nodes=nodes, **demand) == plan_placement("m", nodes=shuffled, **demand)


@settings(max_examples=100, deadline=None)
@given(node_sets(), demands)
def test_plan_places_only_eligible_nodes_at_most_max_peers_without_duplicates(nodes, demand):
    plan = plan_placement("m", nodes=nodes, **demand)
    by_peer = {n.peer: n for n in nodes}
    ok = {n.peer for n in nodes if eligible(n, demand["model_bytes_needed"], demand["required_capabilities"])}
    if not ok:
        assert plan == {}
        return
    assert sorted(plan) == list(range(demand["partitions"]))
    for peers in plan.values():
        assert 0 < len(peers) <= demand["max_peers"]
        assert len(set(peers)) == len(peers)
        assert set(peers) <= ok
        assert all(by_peer[p].alive for p in peers)
        assert len(peers) == min(len(ok), demand["max_peers"])


@settings(max_examples=100, deadline=None)
@given(node_sets(), demands)
def test_a_placement_planned_from_the_same_facts_is_not_rewritten(nodes, demand):
    plan = plan_placement("m", nodes=nodes, **demand)
    again = plan_placement("m", nodes=list(reversed(nodes)), **demand)
    assert not changed(plan, again, nodes, need=demand["model_bytes_needed"],
                       required_capabilities=demand["required_capabilities"])


@settings(max_examples=100, deadline=None)
@given(node_sets(), demands, st.data())
def test_speed_noise_under_the_threshold_never_rewrites(nodes, demand, data):
    """Hysteresis: run times that wander by up to 5% (EWMA noise) never cause a write; nothing else changed."""
    plan = plan_placement("m", nodes=nodes, **demand)
    noisy = [
        n if n.speed_ms is None else ServingNode(
            peer=n.peer, tier=n.tier, alive=n.alive, memory_free_bytes=n.memory_free_bytes,
            speed_ms=n.speed_ms * data.draw(st.floats(0.95, 1.05)), capabilities=n.capabilities,
        )
        for n in nodes
    ]
    replanned = plan_placement("m", nodes=noisy, **demand)
    assert not changed(plan, replanned, noisy, need=demand["model_bytes_needed"],
                       required_capabilities=demand["required_capabilities"])
