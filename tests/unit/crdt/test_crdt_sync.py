"""SyncCore: push, relay, digest pull and repair, driven through a tiny in-test network."""

from __future__ import annotations

from typing import Callable

import msgpack
import pytest

from crdt.sync import ANNOUNCE_EVERY
from crdt import (
    CausalContext,
    Delta,
    HybridLogicalClock,
    LocalProtocolError,
    LWWMap,
    SyncCore,
    SyncDelta,
    SyncDigest,
    SyncSummary,
    Timestamp,
    decode_message,
    encode_message,
)

INTERVAL = 0.5


class Net:
    """Cores joined by links; every message goes through the codec and msgpack, like the real driver."""

    def __init__(self, names: str, links: str = "", **core_options) -> None:
        self.now = 0.0
        self.maps = {n: LWWMap(n) for n in names}
        self.clocks = {n: HybridLogicalClock(n) for n in names}
        self.cores = {n: SyncCore(self.maps[n], interval=INTERVAL, **core_options) for n in names}
        pairs = links.split() if links else [a + b for a in names for b in names if a < b]
        for a, b in pairs:
            self.cores[a].add_peer(b, self.now)
            self.cores[b].add_peer(a, self.now)
        self.drop: Callable[[str, str, object], bool] = lambda src, dst, msg: False
        self.log: list[tuple[str, str, object]] = []

    def write(self, node: str, key: str, value: object) -> None:
        delta = self.maps[node].put(key, value, self.clocks[node].now(int(self.now * 1000)))
        self.cores[node].local_write(delta, self.now)

    def delete(self, node: str, key: str) -> None:
        delta = self.maps[node].delete(key, self.clocks[node].now(int(self.now * 1000)))
        self.cores[node].local_write(delta, self.now)

    def step(self) -> int:
        """One round: collect everything due, then deliver what is not dropped. Returns messages sent."""
        sent = [(src, dst, msg) for src, core in self.cores.items() for dst, msg in core.outgoing(self.now)]
        for src, dst, msg in sent:
            self.log.append((src, dst, msg))
            if self.drop(src, dst, msg):
                continue
            wire = msgpack.unpackb(msgpack.packb(encode_message(msg)))
            for entry in self.cores[dst].receive(src, decode_message(wire), self.now):
                self.clocks[dst].observe(entry.ts, int(self.now * 1000))
        return len(sent)

    def run(self, seconds: float, dt: float = 0.1) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = round(self.now + dt, 6)
            self.step()

    def settle(self) -> None:
        """Rounds without advancing time until nothing is due."""
        for _ in range(20):
            if not self.step():
                return
        raise AssertionError("exchange did not terminate")

    def converged(self) -> bool:
        first = next(iter(self.maps.values()))
        return all(m.entries() == first.entries() and m.context == first.context for m in self.maps.values())

    def deltas(self, src: str, dst: str) -> list[SyncDelta]:
        return [m for s, d, m in self.log if (s, d) == (src, dst) and isinstance(m, SyncDelta)]


def test_two_cores_converge():
    net = Net("ab")
    net.settle()  # the initial digest exchange
    net.write("a", "x", 1)
    net.write("b", "y", 2)
    net.settle()
    assert net.converged()
    assert [e.key for e in net.maps["a"].entries()] == ["x", "y"]


def test_three_cores_converge_on_concurrent_writes_to_one_key():
    net = Net("abc")
    net.settle()
    net.now = 1.0
    net.write("a", "k", "a")
    net.write("b", "k", "b")
    net.write("c", "k", "c")  # same wall time and counter everywhere: the node id decides
    net.settle()
    assert net.converged()
    assert net.maps["a"].get("k").value == "c"


def test_a_write_crosses_a_chain_by_relay_before_any_digest_is_due():
    net = Net("abc", links="ab bc")
    net.settle()
    net.now = 0.1
    net.write("a", "x", 1)
    net.step()
    assert net.maps["b"].get("x") is not None and net.maps["c"].get("x") is None
    net.step()
    assert net.maps["c"].get("x").value == 1
    assert not any(isinstance(m, SyncDigest) for _, _, m in net.log[-2:])
    net.settle()
    assert net.converged()


def test_local_writes_are_pushed_at_the_next_outgoing_batched_into_one_message():
    net = Net("ab")
    net.settle()
    net.now = 0.1
    for i in range(5):
        net.write("a", f"k{i}", i)
    due = net.cores["a"].outgoing(net.now)
    assert len(due) == 1
    peer, msg = due[0]
    assert peer == "b" and isinstance(msg, SyncDelta) and msg.reply_context is None
    assert [e.key for e in msg.delta.entries] == [f"k{i}" for i in range(5)]
    assert net.cores["a"].outgoing(net.now) == []


def test_overwrites_between_flushes_send_the_winner_and_keep_the_context_gap_free():
    net = Net("ab")
    net.settle()
    net.now = 0.1
    for value in range(3):
        net.write("a", "k", value)
    [(_, msg)] = net.cores["a"].outgoing(net.now)
    assert [(e.key, e.value) for e in msg.delta.entries] == [("k", 2)]
    assert msg.delta.context == net.maps["a"].context  # dots 1 and 2 travel with dot 3
    net.cores["b"].receive("a", msg, net.now)
    assert net.maps["b"].context == net.maps["a"].context and not net.maps["b"].context.cloud


def test_a_lost_push_is_repaired_by_the_periodic_digest():
    net = Net("ab")
    net.settle()
    net.now = 0.1
    net.write("a", "x", 1)
    net.drop = lambda src, dst, msg: isinstance(msg, SyncDelta)
    net.step()
    assert net.maps["b"].get("x") is None
    net.drop = lambda src, dst, msg: False
    net.run(INTERVAL)  # the next digest is due within one interval ...
    net.settle()  # ... and its exchange takes two more messages
    assert net.maps["b"].get("x").value == 1
    assert net.converged()
    assert any(isinstance(m, SyncDigest) for _, _, m in net.log)


def test_a_lost_answer_is_repaired_by_the_next_digest():
    net = Net("ab")
    net.write("a", "x", 1)  # before the first exchange: only the digest answer carries it
    net.drop = lambda src, dst, msg: isinstance(msg, SyncDelta)
    net.run(0.1)
    assert net.maps["b"].get("x") is None
    net.drop = lambda src, dst, msg: False
    net.run(2 * INTERVAL)
    assert net.converged()


def test_no_delta_is_echoed_back_to_the_peer_it_came_from():
    net = Net("abc")
    net.settle()
    net.now = 0.1
    net.write("a", "x", 1)
    net.run(3 * INTERVAL)
    assert net.converged()
    for src, dst in (("b", "a"), ("c", "a")):
        echoed = [e for m in net.deltas(src, dst) for e in m.delta.entries if e.dot.node == "a"]
        assert echoed == []
    # ... while b and c do relay a's write to each other (each learned it from a, not from the other).
    assert any(e.key == "x" for m in net.deltas("b", "c") for e in m.delta.entries)


def test_entries_a_peer_already_has_are_not_pushed_to_it_again():
    net = Net("ab")
    net.settle()
    net.now = 0.1
    net.write("a", "x", 1)
    net.run(4 * INTERVAL)
    sends = [e for m in net.deltas("a", "b") for e in m.delta.entries]
    assert [e.key for e in sends] == ["x"]


def test_add_peer_starts_a_digest_exchange_at_once_and_pulls_both_ways():
    a, b = LWWMap("a"), LWWMap("b")
    a.put("x", 1, Timestamp(1, 0, "a"))
    b.put("y", 2, Timestamp(1, 0, "b"))
    ca, cb = SyncCore(a), SyncCore(b)
    ca.add_peer("b", 10.0)
    cb.add_peer("a", 10.0)
    [(peer, digest)] = ca.outgoing(10.0)
    assert peer == "b" and digest == SyncDigest(context=a.context)
    cb.outgoing(10.0)  # b's own digest, lost
    assert cb.receive("a", digest, 10.0) == []  # a reply is never returned by receive ...
    [(_, answer)] = cb.outgoing(10.0)  # ... it is due at the next outgoing
    assert [e.key for e in answer.delta.entries] == ["y"]
    assert answer.reply_context == b.context  # a has x, which b lacks: b asks for it
    assert [e.key for e in ca.receive("b", answer, 10.0)] == ["y"]
    [(_, final)] = ca.outgoing(10.0)
    assert [e.key for e in final.delta.entries] == ["x"] and final.reply_context is None
    assert [e.key for e in cb.receive("a", final, 10.0)] == ["x"]
    assert ca.outgoing(10.0) == [] and cb.outgoing(10.0) == []
    assert a.entries() == b.entries() and a.context == b.context


def test_a_peer_that_lost_its_state_gets_everything_again_on_reconnect():
    net = Net("ab")
    net.write("a", "x", 1)
    net.write("a", "y", 2)
    net.settle()
    net.maps["b"] = LWWMap("b")  # b's disk was wiped
    net.cores["b"] = SyncCore(net.maps["b"], interval=INTERVAL)
    net.cores["b"].add_peer("a", net.now)
    net.cores["a"].add_peer("b", net.now)
    net.settle()
    assert net.converged()


def test_a_peer_that_restarted_empty_unnoticed_gets_everything_again_from_its_digest():
    net = Net("ab")
    net.write("b", "x", 1)
    net.write("b", "y", 2)
    net.run(2 * INTERVAL)  # b has had a's digests: it knows a holds x and y
    net.maps["a"] = LWWMap("a")  # a restarted from an empty disk; b never saw the link drop
    net.cores["a"] = SyncCore(net.maps["a"], interval=INTERVAL)
    net.cores["a"].add_peer("b", net.now)
    net.settle()  # a's digest alone must make b send everything again
    assert net.converged()


def test_a_buffered_relay_is_dropped_once_the_peer_shows_it_has_the_entry():
    net = Net("abc")
    net.settle()
    net.now = 0.1
    net.write("c", "x", 1)
    [push_to_a, push_to_b] = [m for _, m in sorted(net.cores["c"].outgoing(net.now), key=lambda pm: pm[0])]
    net.cores["a"].receive("c", push_to_a, net.now)  # a buffers x to relay to b ...
    net.cores["b"].receive("c", push_to_b, net.now)
    [(_, relay_from_b)] = [pm for pm in net.cores["b"].outgoing(net.now) if pm[0] == "a"]
    net.cores["a"].receive("b", relay_from_b, net.now)  # ... until b's own relay shows b has it
    assert net.cores["a"].outgoing(net.now) == []


def test_steady_state_costs_about_one_summary_per_pair_per_interval_plus_an_announcement():
    net = Net("ab")
    net.write("a", "x", 1)
    net.settle()
    net.run(2 * INTERVAL)
    start = len(net.log)
    net.run(20 * INTERVAL, dt=0.05)
    quiet = [(src, m) for src, _, m in net.log[start:]]
    # In sync: only summaries, one exchange per interval begun by a, b announcing every ANNOUNCE_EVERY-th time.
    assert all(isinstance(m, SyncSummary) for _, m in quiet), quiet
    assert 20 + 20 // ANNOUNCE_EVERY - 2 <= len(quiet) <= 20 + 20 // ANNOUNCE_EVERY + 2
    assert 20 // ANNOUNCE_EVERY - 1 <= sum(src == "b" for src, _ in quiet) <= 20 // 2
    assert all(len(msgpack.packb(encode_message(m))) < 50 for _, m in quiet)


def test_a_summary_that_does_not_match_starts_a_whole_exchange():
    # b hears from c what a never saw; a still believes b holds exactly what a holds.
    net = Net("abc", links="ab bc", relay=False)
    net.settle()
    net.run(2 * INTERVAL)
    net.write("c", "z", 3)
    net.run(4 * INTERVAL)
    kinds = [type(m).__name__ for s, d, m in net.log if (s, d) in (("a", "b"), ("b", "a"))]
    assert "SyncSummary" in kinds and "SyncDigest" in kinds
    assert net.maps["a"].get("z").value == 3 and net.converged()


def test_the_standby_side_takes_over_when_the_initiator_goes_quiet():
    net = Net("ab")
    net.settle()
    net.run(2 * INTERVAL)
    net.drop = lambda src, dst, msg: src == "a"  # a's messages stop arriving
    start = len(net.log)
    net.run(3 * INTERVAL)
    assert any(src == "b" and isinstance(m, (SyncDigest, SyncSummary)) for src, _, m in net.log[start:])


def test_large_answers_are_split_and_still_converge():
    net = Net("ab", max_entries=3)
    for i in range(10):
        net.write("a", f"k{i}", i)
        net.write("a", f"k{i}", i * 10)  # superseded dots leave gaps that only a whole context fills
    net.run(3 * INTERVAL)
    assert net.converged()
    assert all(len(m.delta.entries) <= 3 for m in net.deltas("a", "b"))


def test_relay_can_be_turned_off_for_full_meshes():
    net = Net("abc", links="ab bc", relay=False)
    net.settle()
    net.now = 0.1
    net.write("a", "x", 1)
    net.step()
    net.step()
    assert net.maps["c"].get("x") is None  # not relayed ...
    net.run(2 * INTERVAL)
    assert net.converged()  # ... but the digests still carry it across


def _links_of(pairs: str):
    links = {frozenset(pair) for pair in pairs.split()}
    return lambda origin, peer: frozenset((origin, peer)) not in links  # relay unless they talk directly


def test_relay_pruning_sends_no_relays_in_a_full_mesh_and_every_write_still_arrives_at_once():
    pairs = "ab ac ad bc bd cd"
    net = Net("abcd", links=pairs, relay_to=_links_of(pairs))
    net.settle()
    net.now = 0.1
    start = len(net.log)
    net.write("a", "x", 1)
    net.write("c", "y", 2)
    net.step()
    assert all(m.get("x") and m.get("y") for m in net.maps.values())  # one round: straight from the writers
    net.step()
    pushes = [(s, d) for s, d, m in net.log[start:] if isinstance(m, SyncDelta) and m.delta.entries]
    assert sorted(pushes) == sorted([("a", p) for p in "bcd"] + [("c", p) for p in "abd"])  # no relays


def test_relay_pruning_still_relays_along_a_chain_with_a_shortcut():
    # a-b-c-d with a shortcut b-d: c learns from b, d learns from b directly; nobody needs c to relay to d.
    pairs = "ab bc cd bd"
    net = Net("abcd", links=pairs, relay_to=_links_of(pairs))
    net.settle()
    net.now = 0.1
    start = len(net.log)
    net.write("a", "x", 1)
    for _ in range(2):
        net.step()
    assert all(m.get("x") for m in net.maps.values())
    relays = {(s, d) for s, d, m in net.log[start:] if isinstance(m, SyncDelta) and m.delta.entries}
    assert relays == {("a", "b"), ("b", "c"), ("b", "d")}


def test_relay_to_must_be_callable():
    with pytest.raises(LocalProtocolError, match="relay_to must be callable"):
        SyncCore(LWWMap("a"), relay_to="everyone")  # type: ignore[arg-type]


def test_a_repeated_add_peer_keeps_what_is_known_of_the_peer():
    net = Net("ab")
    net.write("a", "x", 1)
    net.settle()
    net.run(2 * INTERVAL)  # a has b's digest: b holds x
    net.cores["a"].add_peer("b", net.now)  # b is back (the node says so only after a silence or a lost link)
    # What a knows of b stays (nothing is pushed again), but a whole digest goes at once, not a summary.
    assert [type(m) for _, m in net.cores["a"].outgoing(net.now)] == [SyncDigest]
    net.cores["a"].remove_peer("b")
    net.cores["a"].add_peer("b", net.now)  # a real reconnect: a digest at once
    assert [type(m) for _, m in net.cores["a"].outgoing(net.now)] == [SyncDigest]


def test_remove_peer_stops_all_traffic_to_it():
    net = Net("ab")
    net.cores["a"].remove_peer("b")
    net.write("a", "x", 1)
    assert net.cores["a"].outgoing(net.now) == []
    assert net.cores["a"].next_deadline() is None
    assert net.cores["a"].peers() == []
    net.cores["a"].remove_peer("b")  # a no-op


def test_a_message_from_an_unknown_peer_is_applied_but_not_answered():
    a, z = LWWMap("a"), LWWMap("z")
    delta = z.put("x", 1, Timestamp(1, 0, "z"))
    core = SyncCore(a)
    assert core.receive("z", SyncDelta(delta=delta), 0.0) == [delta.entries[0]]
    assert core.receive("z", SyncDigest(context=CausalContext()), 0.0) == []
    assert core.outgoing(0.0) == []
    assert core.statistics()["unknown_peer_messages"] == 2


def test_next_deadline_is_now_when_a_push_is_buffered_and_the_digest_time_otherwise():
    net = Net("ab")
    core = net.cores["a"]
    assert core.next_deadline() == 0.0  # the add_peer digest
    net.settle()
    assert core.next_deadline() == pytest.approx(INTERVAL)
    net.now = 0.2
    net.write("a", "x", 1)
    assert core.next_deadline() == 0.2
    core.outgoing(0.2)
    assert core.next_deadline() == pytest.approx(INTERVAL)


def test_statistics_count_the_traffic():
    net = Net("ab")
    net.settle()
    net.write("a", "x", 1)
    net.write("a", "y", 2)
    net.step()
    stats = net.cores["a"].statistics()
    assert stats["peers"] == 1 and stats["pending_entries"] == 0
    assert stats["digests_sent"] >= 1 and stats["entries_sent"] == 2
    received = net.cores["b"].statistics()
    assert received["entries_received"] == 2 and received["entries_changed"] == 2


def test_receive_wants_decoded_messages():
    core = SyncCore(LWWMap("a"))
    with pytest.raises(LocalProtocolError, match="decode_message"):
        core.receive("b", {"t": "digest", "v": 1}, 0.0)
    with pytest.raises(LocalProtocolError, match="^crdt: local_write"):
        core.local_write(Delta(entries=(), context=CausalContext()).to_wire(), 0.0)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="^crdt: interval"):
        SyncCore(LWWMap("a"), interval=0)


# -- deletes and tombstone collection ---------------------------------------------


def test_a_delete_reaches_every_replica_and_an_older_write_does_not_bring_the_value_back():
    net = Net("abc")
    net.write("a", "cam/1/status", "online")
    net.run(1.0)
    late = net.maps["c"].put("cam/1/status", "stale", Timestamp(1, 0, "c"))  # older than every write so far
    net.delete("b", "cam/1/status")
    net.run(0.2)
    net.cores["c"].local_write(late, net.now)
    net.run(2.0)
    for name, replica in net.maps.items():
        assert replica.get("cam/1/status") is None and "cam/1/status" not in replica and len(replica) == 0, name
        assert [e.key for e in replica.tombstones()] == ["cam/1/status"], name
    net.write("a", "cam/1/status", "back")  # a newer write after the delete does bring it back
    net.run(1.0)
    assert {name: m.get("cam/1/status").value for name, m in net.maps.items()} == dict.fromkeys("abc", "back")


def test_tombstones_are_collected_only_once_every_member_has_them():
    net = Net("abc")
    net.write("a", "k", 1)
    net.run(1.0)
    net.drop = lambda src, dst, msg: dst == "c"  # c misses the delete
    net.delete("a", "k")
    net.run(2.0)
    assert net.cores["a"].collect_garbage(["b", "c"]) == []  # c has not confirmed it
    assert net.maps["a"].tombstones() and net.maps["c"].get("k").value == 1
    net.drop = lambda src, dst, msg: False
    net.run(2.0)
    gone = net.cores["a"].collect_garbage(["b", "c"])
    assert [e.key for e in gone] == ["k"] and gone[0].deleted
    assert net.maps["a"].tombstones() == [] and net.maps["a"].get("k") is None
    assert net.cores["a"].statistics()["tombstones_collected"] == 1
    # Collected at a, still held by b and c: syncing never re-sends it to a, nor the old value anywhere.
    net.run(2.0)
    assert net.maps["a"].tombstones() == [] and all(net.maps[n].get("k") is None for n in "bc")
    # A newcomer learns neither the value nor the tombstone from a, and the key stays deleted.
    newcomer = LWWMap("d")
    newcomer.apply_delta(net.maps["a"].delta_since(newcomer.context))
    assert newcomer.get("k") is None and newcomer.tombstones() == []


def test_a_member_that_is_away_holds_tombstones_back():
    net = Net("ab")
    net.write("a", "k", 1)
    net.delete("a", "k")
    net.run(2.0)
    assert net.cores["a"].collect_garbage(["b", "z"]) == []  # z is a member a has no peer state for
    assert [e.key for e in net.cores["a"].collect_garbage(["b"])] == ["k"]
    assert net.cores["a"].collect_garbage([]) == []  # nothing left
