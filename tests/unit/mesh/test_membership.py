"""The SWIM + Lifeguard membership core, driven by hand with a fake clock (no network)."""

from __future__ import annotations

import ast
import math
import random
from pathlib import Path

import pytest

from crdt.errors import LocalProtocolError, RemoteProtocolError
from mesh import membership as mb
from mesh.membership import (
    Ack,
    MemberAlive,
    MemberDead,
    MemberLeft,
    Membership,
    MembershipConfig,
    MemberSuspect,
    MemberUp,
    Nack,
    Ping,
    PingReq,
    State,
    Sync,
    Update,
    decode,
    encode,
)

CFG = MembershipConfig()


def core(name="a", peers=("b", "c", "d", "e"), seed=0, config=CFG) -> Membership:
    m = Membership(name, rng=random.Random(seed), config=config)
    for p in peers:
        m.join(p, 0.0)
    if peers:  # the joiner's first push-pull is answered, so it does not retry every second
        m.receive(peers[0], Sync(gossip=(), reply=False), 0.0)
    m.events()
    return m


def up(peer, state, inc, origin="x") -> Update:
    return Update(peer=peer, state=State(state), incarnation=inc, origin=origin)


def answer(m: Membership, now: float, silent: set[str]) -> None:
    """Play every peer except ``silent`` as a prompt, healthy node for what ``m`` just sent."""
    for dest, msg in m.outgoing():
        if isinstance(msg, Ping) and dest not in silent:
            m.receive(dest, Ack(seq=msg.seq), now)
        elif isinstance(msg, PingReq) and dest not in silent:
            reply = Nack(seq=msg.seq) if msg.target in silent else Ack(seq=msg.seq)
            m.receive(dest, reply, now)


def drive(m: Membership, until: float, silent: set[str] = frozenset()) -> list:
    """Tick ``m`` at each of its deadlines up to ``until``; returns (time, event) pairs."""
    seen = []
    answer(m, 0.0, silent)
    while (t := m.next_deadline()) <= until:
        m.tick(t)
        answer(m, t, silent)
        seen += [(t, e) for e in m.events()]
    return seen


# ---- probing --------------------------------------------------------------------------------


def test_probe_answered_by_ack_keeps_everyone_alive_and_health_good():
    m = core()
    events = drive(m, 60.0)
    assert events == []
    assert {p: s.state for p, s in m.members().items()} == dict.fromkeys("abcde", State.ALIVE)
    assert m.local_health == 0 and m.statistics()["probes"] == 121  # one per 0.5 s period, 0 to 60 s inclusive


def test_probe_targets_every_member_once_per_round():
    """SWIM §4.3: round-robin over a random permutation bounds the time to probe anyone."""
    m = core()
    targets = []
    for i in range(8):
        m.tick(i * 0.5)
        pings = [(d, msg) for d, msg in m.outgoing() if isinstance(msg, Ping)]
        targets += [d for d, _ in pings]
        for d, msg in pings:
            m.receive(d, Ack(seq=msg.seq), i * 0.5)
    assert sorted(targets[:4]) == sorted(targets[4:]) == ["b", "c", "d", "e"]


def test_missed_ack_leads_to_indirect_probes_then_suspect_then_dead():
    m = core()
    m.tick(0.0)
    [(target, ping)] = [(d, x) for d, x in m.outgoing() if isinstance(x, Ping)]
    assert ping.target == target
    m.tick(0.25)  # probe timeout: ask k helpers (SWIM §3.1)
    reqs = m.outgoing()
    assert len(reqs) == 3 and all(isinstance(r, PingReq) and r.target == target and r.seq == ping.seq for _, r in reqs)
    assert target not in {h for h, _ in reqs}
    for helper, req in reqs:  # the helpers cannot reach it either (Lifeguard nacks)
        m.receive(helper, Nack(seq=req.seq), 0.45)
    m.tick(0.5)
    assert m.events() == [MemberSuspect(peer=target, incarnation=0)]
    assert m.local_health == 0, "every nack arrived, so the trouble is not ours"
    # Unconfirmed, the suspicion lasts β · α · max(1, log10 5) · T = 4 · 1.5 s (Lifeguard eq. 1).
    events = drive(m, 20.0, silent={target})
    deaths = [(t, e) for t, e in events if isinstance(e, MemberDead)]
    assert deaths == [(pytest.approx(6.5), MemberDead(peer=target, incarnation=0))]
    assert m.members()[target].state is State.DEAD


def test_long_dead_members_are_forgotten_and_may_rejoin():
    """The table stays bounded: a member dead longer than ``forget_after`` is dropped."""
    m = core(config=MembershipConfig(forget_after=30.0))
    events = drive(m, 20.0, silent={"e"})
    assert any(isinstance(e, MemberDead) and e.peer == "e" for _, e in events)
    assert "e" in m.members()
    drive(m, 60.0, silent={"e"})
    assert "e" not in m.members() and set(m.members()) == set("abcd")
    assert m.statistics()["forgotten"] == 1
    m.join("e", 61.0)
    assert m.events() == [MemberUp(peer="e", incarnation=0)]


def test_forget_after_must_be_positive():
    with pytest.raises(LocalProtocolError, match="forget_after"):
        MembershipConfig(forget_after=0)


def test_a_dead_member_heard_from_again_is_pinged_at_once_and_comes_back():
    m = core(peers=("b", "c"))
    m.receive("c", Ping(seq=1, target="a", gossip=(up("b", "dead", 0),)), 0.0)
    m.outgoing(), m.events()
    m.join("b", 3.0)  # b's hello or advert reached us: the partition healed
    [(dest, ping)] = m.outgoing()
    assert dest == "b" and isinstance(ping, Ping) and up("b", "dead", 0, "a") in ping.gossip
    m.join("b", 3.1)  # another advert within the probe interval: no second ping
    assert m.outgoing() == []
    m.receive("b", Ack(seq=ping.seq, gossip=(up("b", "alive", 1, "b"),)), 3.2)  # b refuted
    assert m.events() == [MemberUp(peer="b", incarnation=1)]
    m.join("b", 4.0)  # alive again: join is a no-op
    assert [msg for _, msg in m.outgoing() if isinstance(msg, Ping)] == []


def test_a_suspect_heard_from_is_pinged_with_its_accusation():
    m = core(peers=("b", "c"))
    m.receive("c", Ping(seq=1, target="a", gossip=(up("b", "suspect", 0),)), 0.0)
    m.outgoing(), m.events()
    m.join("b", 0.1)
    [(dest, ping)] = m.outgoing()
    assert dest == "b" and up("b", "suspect", 0, "a") in ping.gossip


def test_dead_members_are_not_probed():
    m = core(peers=("b",))
    m.receive("b", Ping(seq=1, target="a", gossip=(up("b", "dead", 0),)), 0.0)
    m.tick(0.0)
    assert not [msg for _, msg in m.outgoing() if isinstance(msg, (Ping, PingReq)) and msg.seq != 1]


def test_independent_confirmations_shrink_the_suspicion_to_the_minimum():
    """Lifeguard dynamic suspicion: K independent suspicions bring the timeout down to α·log10(N)·T."""
    m = core()
    m.receive("b", Ping(seq=1, target="a", gossip=(up("e", "suspect", 0, origin="b"),)), 10.0)
    assert m.events() == [MemberSuspect(peer="e", incarnation=0)]
    for origin in ("c", "d", "x"):
        m.receive(origin, Ping(seq=2, target="a", gossip=(up("e", "suspect", 0, origin=origin),)), 10.0)
    m.outgoing()
    events = drive(m, 30.0, silent={"e"})
    assert (pytest.approx(11.5), MemberDead(peer="e", incarnation=0)) in events  # 10 + 3·1·0.5


def test_repeated_suspicion_from_the_same_origin_does_not_confirm():
    m = core()
    for _ in range(5):
        m.receive("b", Ping(seq=1, target="a", gossip=(up("e", "suspect", 0, origin="b"),)), 10.0)
    m.tick(15.99)  # unconfirmed: the full β · α · T = 6 s
    assert [e for e in m.events() if isinstance(e, MemberDead)] == []
    m.tick(16.0)
    assert [e for e in m.events() if isinstance(e, MemberDead)] == [MemberDead(peer="e", incarnation=0)]


def test_local_health_rises_when_nacks_go_missing_and_slows_probing():
    """Lifeguard local health: missed nacks mean *we* are slow; probe less often instead of accusing."""
    m = core(config=MembershipConfig(reconnect_interval=100.0))
    m.tick(0.0)
    m.outgoing()
    m.tick(0.25)
    m.outgoing()  # the helpers' nacks never arrive
    m.tick(0.5)
    assert m.local_health == 3
    assert any(isinstance(e, MemberSuspect) for e in m.events())
    [(dest, ping)] = [(d, x) for d, x in m.outgoing() if isinstance(x, Ping)]
    assert m.next_deadline() == pytest.approx(0.5 + 0.25 * 4)  # probe timeout scaled by LHM + 1
    m.receive(dest, Ack(seq=ping.seq), 0.6)
    assert m.local_health == 2, "a successful probe lowers it again"
    assert m.next_deadline() == pytest.approx(0.5 + 0.5 * 4)  # and the interval is scaled too


def test_local_health_is_capped():
    m = core()
    drive(m, 200.0, silent={"b", "c", "d", "e"})
    assert m.local_health == CFG.max_local_health


def test_helper_forwards_the_ack_or_sends_a_nack():
    h = core(name="h", peers=("a", "t"))
    h.receive("a", PingReq(seq=77, target="t"), 1.0)
    [(dest, ping)] = h.outgoing()
    assert dest == "t" and isinstance(ping, Ping) and ping.target == "t"
    h.receive("t", Ack(seq=ping.seq), 1.01)
    assert [(d, type(x), x.seq) for d, x in h.outgoing()] == [("a", Ack, 77)]

    h.receive("a", PingReq(seq=78, target="t"), 2.0)
    h.outgoing()
    h.tick(2.19)
    assert not [x for _, x in h.outgoing() if isinstance(x, Nack)]
    h.tick(2.2)  # 80 % of the probe timeout (Lifeguard)
    assert [(d, x.seq) for d, x in h.outgoing() if isinstance(x, Nack)] == [("a", 78)]


def test_ping_requests_are_bounded():
    h = core(name="h", peers=("a", "t"))
    for i in range(mb.MAX_FORWARDS + 50):
        h.receive("a", PingReq(seq=i, target="t"), 1.0)
    assert len(h.outgoing()) == mb.MAX_FORWARDS and h.statistics()["dropped"] == 50


def test_a_ping_for_someone_else_is_not_acked():
    m = core()
    m.receive("b", Ping(seq=5, target="zz"), 1.0)
    assert m.outgoing() == []


# ---- incarnations and refutation (SWIM §4.2) ---------------------------------------------------


@pytest.mark.parametrize(
    "held, heard, result",
    [
        (("alive", 1), ("alive", 2), ("alive", 2)),
        (("alive", 1), ("alive", 1), ("alive", 1)),
        (("alive", 2), ("alive", 1), ("alive", 2)),
        (("alive", 1), ("suspect", 1), ("suspect", 1)),  # an accusation wins at equal incarnation
        (("alive", 2), ("suspect", 1), ("alive", 2)),  # ... but not against a refutation
        (("suspect", 1), ("alive", 1), ("suspect", 1)),  # alive needs a strictly higher one
        (("suspect", 1), ("alive", 2), ("alive", 2)),
        (("suspect", 1), ("suspect", 2), ("suspect", 2)),
        (("suspect", 1), ("dead", 1), ("dead", 1)),
        (("alive", 1), ("dead", 1), ("dead", 1)),
        (("alive", 3), ("dead", 2), ("alive", 3)),
        (("dead", 1), ("alive", 1), ("dead", 1)),
        (("dead", 1), ("alive", 2), ("alive", 2)),  # comes back after refuting
        (("dead", 1), ("suspect", 5), ("dead", 1)),
        (("alive", 1), ("left", 1), ("left", 1)),
        (("left", 1), ("suspect", 3), ("left", 1)),
        (("left", 1), ("dead", 3), ("left", 1)),
        (("left", 1), ("alive", 2), ("alive", 2)),  # rejoins
    ],
)
def test_incarnation_ordering_rules(held, heard, result):
    m = core(peers=())
    m.receive("x", Ack(seq=0, gossip=(up("b", "alive", 0),)), 0.0)
    for state, inc in (("alive", held[1]), held):
        m.receive("x", Ack(seq=0, gossip=(up("b", state, inc, origin="y"),)), 1.0)
    assert m.members()["b"].state is State(held[0]) and m.members()["b"].incarnation == held[1]
    m.receive("x", Ack(seq=0, gossip=(up("b", heard[0], heard[1], origin="z"),)), 2.0)
    got = m.members()["b"]
    assert (got.state.value, got.incarnation) == result


def test_events_report_each_transition():
    m = core(peers=())
    for state, inc in [("alive", 0), ("suspect", 0), ("alive", 1), ("dead", 1), ("alive", 2), ("left", 2)]:
        m.receive("x", Ack(seq=0, gossip=(up("b", state, inc),)), 1.0)
    assert m.events() == [
        MemberUp(peer="x", incarnation=0),  # the sender itself, introduced by its message
        MemberUp(peer="b", incarnation=0),
        MemberSuspect(peer="b", incarnation=0),
        MemberAlive(peer="b", incarnation=1),
        MemberDead(peer="b", incarnation=1),
        MemberUp(peer="b", incarnation=2),
        MemberLeft(peer="b", incarnation=2),
    ]


def test_rumours_about_strangers_do_not_add_them():
    m = core(peers=())
    m.receive("x", Ack(seq=0, gossip=(up("q", "suspect", 3), up("r", "dead", 1))), 1.0)
    assert set(m.members()) == {"a", "x"}


@pytest.mark.parametrize("accusation", ["suspect", "dead", "left"])
def test_a_node_refutes_an_accusation_with_a_higher_incarnation(accusation):
    m = core()
    m.receive("b", Ping(seq=9, target="a", gossip=(up("a", accusation, 0, origin="c"),)), 1.0)
    out = m.outgoing()
    ack = [x for d, x in out if d == "b" and isinstance(x, Ack)]
    assert m.incarnation == 1 and m.members()["a"].state is State.ALIVE
    assert up("a", "alive", 1, origin="a") in ack[0].gossip
    told = {d for d, x in out if isinstance(x, Ping) and up("a", "alive", 1, origin="a") in x.gossip}
    assert {"c"} <= told and len(told) >= 4, "the accuser and others hear the refutation directly"
    assert m.local_health == 1, "Lifeguard: being suspected counts against our own health"
    assert m.statistics()["refutations"] == 1


def test_a_stale_accusation_is_answered_with_the_refutation_again():
    m = core()
    m.receive("b", Ping(seq=1, target="a", gossip=(up("a", "suspect", 0),)), 1.0)
    for _ in range(40):  # use up the refutation's retransmissions
        m.receive("c", Ping(seq=2, target="a"), 2.0)
    m.outgoing()
    m.receive("d", Ping(seq=3, target="a", gossip=(up("a", "suspect", 0),)), 3.0)
    [(_, ack)] = m.outgoing()
    assert up("a", "alive", 1, origin="a") in ack.gossip and m.incarnation == 1


def test_an_accused_member_is_told_when_it_contacts_us():
    """How a long-paused node learns it was declared dead after the gossip has died down."""
    m = core()
    m.receive("x", Ack(seq=0, gossip=(up("b", "dead", 0),)), 1.0)
    m.receive("b", Ping(seq=4, target="a"), 2.0)
    [(dest, ack)] = m.outgoing()
    assert dest == "b" and up("b", "dead", 0, origin="a") in ack.gossip


def test_dead_members_are_pinged_now_and_then_so_partitions_can_heal():
    m = core(peers=("b",))
    m.receive("x", Ack(seq=0, gossip=(up("b", "dead", 0),)), 0.0)
    m.outgoing()
    sent = []
    for step in range(40):
        m.tick(step * 0.5)
        sent += [d for d, x in m.outgoing() if isinstance(x, Ping) and d == "b"]
    assert sent, "no reconnect attempt to the dead member in 20 s"


# ---- leave, join, push-pull ------------------------------------------------------------------


def test_graceful_leave_tells_everyone_at_once_and_goes_quiet():
    m = core()
    m.leave(5.0)
    out = m.outgoing()
    assert {d for d, _ in out} == {"b", "c", "d", "e"}
    assert all(up("a", "left", 0, origin="a") in x.gossip for _, x in out)
    assert m.members()["a"].state is State.LEFT and m.next_deadline() == math.inf
    m.receive("b", Ping(seq=1, target="a"), 6.0)
    m.tick(7.0)
    assert m.outgoing() == []

    other = core(name="b", peers=("a", "c"))
    other.receive("a", out[0][1], 5.0)
    assert other.events() == [MemberLeft(peer="a", incarnation=0)]
    assert drive(other, 60.0, silent={"a"}) == [], "a left member is neither probed nor suspected"


def test_join_announces_itself_and_pulls_the_member_table():
    m = Membership("new", rng=random.Random(1), config=CFG)
    m.join("seed", 0.0)
    assert m.events() == [MemberUp(peer="seed", incarnation=0)]
    m.tick(0.0)
    out = m.outgoing()
    [sync] = [x for d, x in out if isinstance(x, Sync) and d == "seed"]
    assert sync.reply and up("new", "alive", 0, origin="new") in sync.gossip
    seed = core(name="seed", peers=("p", "q"))
    seed.receive("new", sync, 0.01)
    [(dest, answer_)] = [(d, x) for d, x in seed.outgoing() if isinstance(x, Sync)]
    assert dest == "new" and not answer_.reply
    m.receive("seed", answer_, 0.02)
    assert set(m.members()) == {"new", "seed", "p", "q"}
    assert seed.members()["new"].state is State.ALIVE


# ---- gossip ------------------------------------------------------------------------------------


def test_piggyback_is_bounded_and_each_update_is_retransmitted_lambda_log_n_times():
    m = core(peers=())
    m.receive("x", Ack(seq=0, gossip=tuple(up(f"p{i}", "alive", 0) for i in range(40))), 0.0)
    m.outgoing()
    n = len(m.members())
    limit = CFG.retransmit_multiplier * math.ceil(math.log10(n + 1))
    counts: dict[str, int] = {}
    for i in range(200):
        m.receive("x", Ping(seq=i, target="a"), 1.0)
        [(_, ack)] = m.outgoing()
        assert len(ack.gossip) <= CFG.max_piggyback
        for u in ack.gossip:
            counts[u.peer] = counts.get(u.peer, 0) + 1
    assert counts and set(counts.values()) == {limit}


def test_same_seed_same_behaviour():
    def trace(seed):
        m = core(seed=seed)
        drive(m, 30.0, silent={"c"})
        return m.statistics(), {p: (s.state, s.incarnation) for p, s in m.members().items()}

    assert trace(3) == trace(3)


def test_an_unknown_sender_is_added_as_a_hint_but_cannot_undo_a_verdict():
    m = core(peers=("b",))
    m.receive("z", Ping(seq=1, target="a"), 1.0)
    assert m.members()["z"].state is State.ALIVE
    m.receive("x", Ack(seq=0, gossip=(up("b", "dead", 0),)), 2.0)
    m.receive("b", Ping(seq=2, target="a"), 3.0)
    assert m.members()["b"].state is State.DEAD


# ---- codec ---------------------------------------------------------------------------------------

MESSAGES = [
    Ping(seq=1, target="b", gossip=(up("c", "suspect", 3, origin="a"),)),
    PingReq(seq=2**63 - 1, target="t"),
    Ack(seq=0, gossip=tuple(up(f"p{i}", s.value, i, origin="o") for i, s in enumerate(State))),
    Nack(seq=9),
    Sync(gossip=(up("a", "alive", 0), up("b", "left", 4)), reply=True),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_codec_round_trip(msg):
    wire = encode(msg)
    assert wire["v"] == 1 and isinstance(wire["t"], str)
    assert decode(wire) == msg


def test_codec_wire_form_is_pinned():
    assert encode(MESSAGES[0]) == {"v": 1, "t": "ping", "seq": 1, "target": "b", "g": [["c", "suspect", 3, "a"]]}
    assert encode(MESSAGES[4]) == {
        "v": 1, "t": "sync", "reply": True, "g": [["a", "alive", 0, "x"], ["b", "left", 4, "x"]],
    }


GOOD = {"v": 1, "t": "ping", "seq": 1, "target": "b", "g": [["c", "alive", 0, "a"]]}


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [1, 2],
        "ping",
        {**GOOD, "v": 2},
        {**GOOD, "v": True},
        {**GOOD, "t": "pong"},
        {**GOOD, "t": 3},
        {k: v for k, v in GOOD.items() if k != "seq"},
        {**GOOD, "extra": 1},
        {**GOOD, "seq": -1},
        {**GOOD, "seq": 2**64},
        {**GOOD, "seq": "1"},
        {**GOOD, "seq": True},
        {**GOOD, "seq": 1.0},
        {**GOOD, "target": ""},
        {**GOOD, "target": "x" * 1000},
        {**GOOD, "target": 5},
        {**GOOD, "g": "nope"},
        {**GOOD, "g": [["c", "alive", 0]]},
        {**GOOD, "g": [["c", "zombie", 0, "a"]]},
        {**GOOD, "g": [["c", "alive", -1, "a"]]},
        {**GOOD, "g": [["c", "alive", 0, None]]},
        {**GOOD, "g": [["c", ["alive"], 0, "a"]]},
        {**GOOD, "g": [("c", "alive", 0, "a")]},
        {**GOOD, "g": [["c", "alive", 0, "a"]] * (mb.MAX_GOSSIP + 1)},
        {"v": 1, "t": "ack", "seq": 1, "target": "b", "g": []},
        {"v": 1, "t": "sync", "reply": 1, "g": []},
        {"v": 1, "t": "sync", "seq": 1, "g": []},
    ],
)
def test_malformed_input_is_refused_with_a_remote_protocol_error(bad):
    with pytest.raises(RemoteProtocolError, match=r"^membership: "):
        decode(bad)


def test_own_misuse_is_a_local_protocol_error():
    with pytest.raises(LocalProtocolError, match=r"^membership: "):
        Ping(seq=-1, target="b")
    with pytest.raises(LocalProtocolError, match=r"^membership: "):
        Ack(seq=1, gossip=[up("a", "alive", 0)])
    with pytest.raises(LocalProtocolError, match=r"^membership: "):
        encode("ping")
    with pytest.raises(LocalProtocolError, match=r"^membership: "):
        MembershipConfig(probe_timeout=1.0, probe_interval=0.5)
    with pytest.raises(LocalProtocolError, match=r"^membership: "):
        Membership("a", rng=random, config=CFG)


def test_the_core_is_sans_io():
    """STYLE §1: no trio, libp2p, sockets, clocks or module-level randomness in a core."""
    from mesh import membership_messages

    for module in (mb, membership_messages):
        _check_sans_io(Path(module.__file__).read_text())


def _check_sans_io(source: str) -> None:
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    allowed = {"__future__", "heapq", "math", "random", "dataclasses", "enum", "crdt", "membership_messages"}
    assert imported <= allowed, imported
    module_random = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random"
    ]
    assert set(module_random) <= {"Random"}, f"module-level random state used: {module_random}"
