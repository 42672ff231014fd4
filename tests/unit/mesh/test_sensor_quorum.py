"""The pure decisions behind sensor-state consistency levels (mesh/sensor_quorum.py), without IO."""

from __future__ import annotations

import pytest

from crdt import CausalContext, Delta, Dot, Entry, SyncDigest, Timestamp, encode_message
from crdt.errors import LocalProtocolError, RemoteProtocolError
from mesh.sensor_quorum import (
    DEFAULT_TIMEOUT,
    QuorumNotReached,
    ReadQuorum,
    WriteQuorum,
    check_level,
    check_timeout,
    counted_peers,
    majority,
    read_answer,
    read_read_answer,
    read_read_request,
    read_request,
    read_write_request,
    write_request,
)


def entry(key: str, value, wall: int, node: str, counter: int = 1) -> Entry:
    return Entry(key=key, value=value, ts=Timestamp(wall, 0, node), dot=Dot(node, counter))


# -- majority math ------------------------------------------------------------------


@pytest.mark.parametrize(("members", "needed"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_majority_is_more_than_half_of_the_members(members, needed):
    # "majority = n // 2 + 1 of the members including this node"
    assert majority(members) == needed


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_majority_of_nothing_is_refused(bad):
    with pytest.raises(LocalProtocolError, match="at least one member"):
        majority(bad)


def test_a_node_alone_is_its_own_majority():
    q = WriteQuorum("me", [])
    assert (q.members, q.needed, q.done) == (1, 1, True)


def test_two_members_need_both():
    q = WriteQuorum("me", ["b"])
    assert q.needed == 2 and not q.done
    assert q.ack("b") and q.done


def test_three_members_need_one_peer():
    q = WriteQuorum("me", ["b", "c"])
    assert q.needed == 2 and not q.done
    q.ack("c")
    assert q.done and q.answered == {"me", "c"}


def test_five_members_need_two_peers():
    q = WriteQuorum("me", ["b", "c", "d", "e"])
    assert q.needed == 3
    q.ack("b")
    assert not q.done
    q.ack("e")
    assert q.done


def test_duplicate_acks_from_one_peer_count_once():
    q = WriteQuorum("me", ["b", "c", "d", "e"])
    assert q.ack("b") is True
    assert q.ack("b") is False
    assert q.ack("b") is False
    assert len(q.answered) == 2 and not q.done


def test_acks_from_strangers_and_from_ourselves_do_not_count():
    q = WriteQuorum("me", ["b", "c"])
    assert q.ack("stranger") is False
    assert q.ack("me") is False
    assert not q.done


def test_this_node_listed_among_its_peers_is_counted_once():
    q = WriteQuorum("me", ["me", "b", "c", "b"])
    assert q.peers == ("b", "c") and q.members == 3


def test_not_enough_acks_is_a_clear_error_that_says_the_write_is_kept():
    q = WriteQuorum("me", ["b", "c", "d", "e"])
    q.ack("b")
    err = q.error("door/lock", 5.0)
    assert isinstance(err, QuorumNotReached)
    text = str(err)
    assert "2 of 5 members" in text and "3 needed" in text and "5 s" in text
    assert "kept on this node" in text and "not lost or rolled back" in text and "'door/lock'" in text


def test_a_quorum_is_hopeless_once_too_many_members_fail():
    q = WriteQuorum("me", ["b", "c"])
    q.fail("b", "mesh: connection lost")
    assert not q.hopeless
    q.fail("c", "mesh: refused")
    assert q.hopeless and not q.done
    text = str(q.error("k", 5.0))
    assert "could not be reached" in text and "b: mesh: connection lost" in text


def test_a_failure_after_an_ack_does_not_undo_it():
    q = WriteQuorum("me", ["b", "c"])
    q.ack("b")
    q.fail("b", "late error")
    assert q.done and not q.failed


def test_an_answer_after_a_failure_counts():
    q = WriteQuorum("me", ["b"])
    q.fail("b", "slow")
    assert q.hopeless
    q.ack("b")
    assert q.done and not q.hopeless


# -- read quorum: the last-writer-wins winner ----------------------------------------


def test_read_picks_the_newest_answer_and_asks_for_repair():
    mine = entry("k", "old", 100, "me")
    q = ReadQuorum("me", ["b", "c", "d", "e"], mine)
    q.answer("b", entry("k", "newer", 200, "b"))
    q.answer("c", None)
    assert q.done and q.winner.value == "newer" and q.source == "b"
    repair = q.repair
    assert repair.delta.entries == (q.winner,) and repair.delta.context.contains(Dot("b", 1))


def test_read_keeps_our_own_entry_when_it_is_newest_and_needs_no_repair():
    q = ReadQuorum("me", ["b", "c"], entry("k", "mine", 300, "me"))
    q.answer("b", entry("k", "older", 200, "b"))
    assert q.done and q.winner.value == "mine" and q.repair is None


def test_read_of_a_key_nobody_has_is_none():
    q = ReadQuorum("me", ["b", "c"], None)
    q.answer("c", None)
    assert q.done and q.winner is None and q.repair is None


def test_read_ties_are_broken_the_same_way_everywhere():
    # Equal wall time: the timestamp's node breaks the tie, whatever order the answers come in.
    a, b = entry("k", "from-a", 100, "a"), entry("k", "from-b", 100, "b")
    q1 = ReadQuorum("me", ["a", "b"], None)
    q1.answer("a", a)
    q1.answer("b", b)
    q2 = ReadQuorum("me", ["a", "b"], None)
    q2.answer("b", b)
    q2.answer("a", a)
    assert q1.winner == q2.winner == b


def test_duplicate_read_answers_count_once_and_cannot_change_the_winner():
    q = ReadQuorum("me", ["b", "c", "d", "e"], None)
    q.answer("b", entry("k", 1, 100, "b"))
    assert q.answer("b", entry("k", 2, 900, "b", counter=2)) is False
    assert q.winner.value == 1 and not q.done


def test_read_error_names_the_count():
    q = ReadQuorum("me", ["b", "c"], None)
    text = str(q.error("k", 2.5))
    assert "1 of 3 members" in text and "2 needed" in text and "2.5 s" in text and "'local'" in text


# -- levels and timeouts ---------------------------------------------------------------


def test_levels():
    assert check_level("local") == "local" and check_level("majority") == "majority"
    assert check_level(None) == "local"
    for bad in ("all", "MAJORITY", "", 2):
        with pytest.raises(LocalProtocolError, match="use one of 'local', 'majority'"):
            check_level(bad)


def test_timeouts():
    assert check_timeout(None) == DEFAULT_TIMEOUT and check_timeout(2) == 2.0
    for bad in (0, -1, float("nan"), float("inf"), 301, "5", True):
        with pytest.raises(LocalProtocolError, match="timeout must be"):
            check_timeout(bad)


def test_members_are_every_known_peer_that_has_not_left():
    # A peer the detector gave up on still counts: both sides of a partition must count the same n.
    states = {"b": "alive", "c": "suspect", "d": "gone", "e": "left"}
    assert counted_peers(states) == ["b", "c", "d"]


# -- wire ------------------------------------------------------------------------------


def test_write_request_round_trips_and_malformed_ones_are_refused():
    e = entry("k", 1, 100, "me")
    msg = read_write_request(write_request(Delta(entries=(e,), context=CausalContext.from_dots((e.dot,)))))
    assert msg.delta.entries == (e,)
    for bad in (None, {"t": "delta"}, [1, 2], encode_message(SyncDigest(context=CausalContext()))):
        with pytest.raises(RemoteProtocolError):
            read_write_request(bad)


def test_read_request_and_answer_round_trip():
    assert read_read_request(read_request("k")) == "k"
    e = entry("k", {"x": 1}, 100, "b")
    assert read_read_answer(read_answer(e), "k") == e
    assert read_read_answer(read_answer(None), "k") is None


@pytest.mark.parametrize("bad", [None, "k", {}, {"key": 3}, {"key": ""}, {"key": "k", "more": 1}, [["key", "k"]]])
def test_malformed_read_requests_are_refused(bad):
    with pytest.raises(RemoteProtocolError, match="crdt.read"):
        read_read_request(bad)


def test_malformed_read_answers_are_refused():
    other = entry("other", 1, 100, "b")
    with pytest.raises(RemoteProtocolError, match="holds 'other'"):
        read_read_answer(read_answer(other), "k")
    two = Delta(entries=(entry("a", 1, 1, "b"), entry("k", 2, 2, "c")),
                context=CausalContext.from_dots((Dot("b", 1), Dot("c", 1))))
    with pytest.raises(RemoteProtocolError, match="at most one entry"):
        read_read_answer(write_request(two), "k")
    for bad in (None, {"t": "delta", "v": 99}, encode_message(SyncDigest(context=CausalContext()))):
        with pytest.raises(RemoteProtocolError):
            read_read_answer(bad, "k")


def test_a_read_answer_cannot_smuggle_in_a_wider_context():
    # The peer's context may name writes we never saw; the repair carries only the winner's own dot.
    e = entry("k", 1, 100, "b", counter=5)
    wide = Delta(entries=(e,), context=CausalContext.from_dots([Dot("b", i) for i in range(1, 9)]))
    got = read_read_answer(write_request(wide), "k")
    q = ReadQuorum("me", ["b"], None)
    q.answer("b", got)
    assert q.repair.delta.context == CausalContext.from_dots((Dot("b", 5),))
