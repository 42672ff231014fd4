"""skip_matching_entries: a resent append never cuts entries a follower already holds (Raft §5.3)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.raft import skip_matching_entries


def log_of(terms: list[int], first: int = 1) -> list[tuple]:
    """A pysyncobj log: (command, index, term), indexes from ``first``."""
    return [(f"c{first + i}-{t}".encode(), first + i, t) for i, t in enumerate(terms)]


def append(prev: int, entries: list[tuple], commit: int = 0, term: int = 5) -> dict:
    prev_term = 0 if prev == 0 else 1
    return {"type": "append_entries", "term": term, "commit_index": commit,
            "prevLogIdx": prev, "prevLogTerm": prev_term, "entries": entries}


def pysyncobj_append(log: list[tuple], message: dict) -> tuple[list[tuple], int | None]:
    """What pysyncobj's follower does with an append: truncate after prevLogIdx, add the entries."""
    if "prevLogIdx" not in message:
        return list(log), None
    first = log[0][1]
    prev = message["prevLogIdx"]
    held = log[prev - first:] if prev >= first else []
    if not held or held[0][2] != message["prevLogTerm"]:
        return list(log), None
    kept = log[: prev - first + 1] + list(message["entries"])
    return kept, (message["entries"][-1][1] + 1 if message["entries"] else prev + 1)


def raft_append(log: list[tuple], entries: list[tuple]) -> list[tuple]:
    """Raft's receiver rule: truncate only at the first entry whose term differs, then add the rest."""
    out = list(log)
    first = out[0][1]
    for e in entries:
        pos = e[1] - first
        if pos < len(out):
            if out[pos][2] == e[2]:
                continue
            del out[pos:]
        out.append(e)
    return out


def test_a_resend_of_held_entries_with_more_after_them_becomes_a_heartbeat_and_an_ack():
    log = log_of([1] * 10)
    message, ack = skip_matching_entries(log, append(3, log[3:6], commit=9))
    assert "prevLogIdx" not in message and "entries" not in message
    assert message["commit_index"] == 6  # never past what this append proved to match
    assert message["term"] == 5 and message["type"] == "append_entries"
    assert ack == 7
    assert pysyncobj_append(log, message)[0] == log  # nothing cut


def test_entries_partly_held_start_the_append_after_the_held_ones():
    log = log_of([1] * 5)
    new = log_of([1] * 8)[3:]  # entries 4..8: 4 and 5 held
    message, ack = skip_matching_entries(log, append(3, new))
    assert ack is None
    assert message["prevLogIdx"] == 5 and message["prevLogTerm"] == 1
    assert [e[1] for e in message["entries"]] == [6, 7, 8]


def test_a_conflicting_entry_still_truncates_from_itself():
    log = log_of([1, 1, 1, 2, 2, 2])  # 4..6 from a deposed leader's term 2
    new = [(b"x", 4, 3), (b"y", 5, 3)]
    message, ack = skip_matching_entries(log, append(3, new))
    assert ack is None and message["prevLogIdx"] == 3 and message["entries"] == new
    assert [e[2] for e in pysyncobj_append(log, message)[0]] == [1, 1, 1, 3, 3]


def test_a_resend_up_to_the_end_of_the_log_becomes_an_empty_append_at_the_end():
    log = log_of([1] * 6)
    message, ack = skip_matching_entries(log, append(2, log[2:6], commit=6))
    assert ack is None and message["prevLogIdx"] == 6 and message["entries"] == []
    assert message["commit_index"] == 6


def test_messages_it_cannot_judge_are_passed_on_unchanged():
    log = log_of([1] * 6, first=10)  # a snapshot holds everything before 10
    before_start = append(8, log_of([1, 1, 1], first=9))
    heartbeat = {"type": "append_entries", "term": 5, "commit_index": 3, "prevLogIdx": 12, "prevLogTerm": 1,
                 "entries": []}
    chunk = dict(append(11, log[2:3]), transmission="start", data=b"")
    gap = append(11, log_of([1], first=14))  # entries not right after prevLogIdx
    snapshot = {"type": "append_entries", "term": 5, "commit_index": 3, "serialized": b"..."}
    for message in (before_start, heartbeat, chunk, gap, snapshot):
        assert skip_matching_entries(log, message) == (message, None)
    assert skip_matching_entries([], append(0, log_of([1]))) == (append(0, log_of([1])), None)


@settings(max_examples=400, deadline=None)
@given(
    held=st.lists(st.integers(1, 3), min_size=1, max_size=12).map(sorted),
    leader=st.lists(st.integers(1, 3), min_size=1, max_size=12).map(sorted),
    prev=st.integers(0, 11),
    count=st.integers(1, 8),
)
def test_the_follower_ends_with_raft_s_log_and_never_loses_what_it_matched(held, leader, prev, count):
    follower = [(b"noop", 1, 0)] + [(f"f{i}-{t}".encode(), i, t) for i, t in enumerate(held, start=2)]
    leader_log = [(b"noop", 1, 0)] + [(f"l{i}-{t}".encode(), i, t) for i, t in enumerate(leader, start=2)]
    # Entries agree wherever index and term agree (Raft's log matching): share the command then.
    follower = [next((x for x in leader_log if x[1] == e[1] and x[2] == e[2]), e) for e in follower]
    prev = min(prev + 1, len(leader_log))  # the leader's prevLogIdx, within its log
    entries = leader_log[prev: prev + count]
    if not entries or prev > len(follower) or follower[prev - 1][2] != leader_log[prev - 1][2]:
        return  # pysyncobj refuses such an append before anything is truncated
    if any(f[2] != lf[2] for f, lf in zip(follower[:prev], leader_log[:prev])):
        return  # not a prefix Raft's log matching allows
    message = {"type": "append_entries", "term": 9, "commit_index": prev + count, "prevLogIdx": prev,
               "prevLogTerm": leader_log[prev - 1][2], "entries": entries}
    rewritten, ack = skip_matching_entries(follower, message)
    after, reply = pysyncobj_append(follower, rewritten)
    assert after == raft_append(follower, entries)
    assert (reply is None) != (ack is None)  # exactly one of pysyncobj and the caller answers
    assert (reply or ack) == entries[-1][1] + 1  # matched through the last entry sent, no further
    # pysyncobj commits up to min(commit_index, its last index): never past what this append proved.
    assert min(rewritten["commit_index"], after[-1][1]) <= entries[-1][1]
