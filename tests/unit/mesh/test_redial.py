"""The redial schedule (mesh/redial.py): fast at first, backing off for a peer gone for good."""

from __future__ import annotations

import math
import random

import pytest

from crdt.errors import LocalProtocolError
from mesh.redial import RedialConfig, Redialer


def redialer(**options) -> Redialer:
    return Redialer(rng=random.Random(1), config=RedialConfig(**options))


def test_a_peer_wanted_back_is_dialled_at_once_and_then_every_interval():
    r = redialer(interval=0.25, jitter=0.0)
    assert r.next_deadline() == math.inf and r.due(0.0) == []
    r.want(["p"], 10.0)
    assert r.next_deadline() == 10.0
    assert r.due(10.0) == ["p"]
    assert r.due(10.0) == [] and r.next_deadline() == math.inf  # one attempt per peer at a time
    r.done("p", 10.4)  # e.g. the TCP connect timed out
    assert r.next_deadline() == pytest.approx(10.65)
    assert r.due(10.6) == [] and r.due(10.65) == ["p"]


def test_gaps_are_jittered_within_bounds():
    r = redialer(interval=0.25, jitter=0.2)
    gaps = [r.gap(1) for _ in range(200)]
    assert all(0.2 <= g <= 0.3 for g in gaps) and len(set(gaps)) > 100


def test_after_the_fast_attempts_the_gap_doubles_up_to_the_cap():
    r = redialer(interval=0.25, jitter=0.0, fast_attempts=3, max_interval=2.0)
    assert [r.gap(n) for n in range(1, 9)] == [0.25, 0.25, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert r.gap(10_000) == 2.0


def test_a_peer_gone_for_good_costs_few_attempts():
    r = redialer()
    r.want(["gone"], 0.0)
    now, attempts = 0.0, 0
    while now < 3600:
        now = r.next_deadline()
        assert r.due(now) == ["gone"]
        attempts += 1
        r.done("gone", now + 0.5)  # every attempt times out
    assert attempts < r.config.fast_attempts + 3600 / (r.config.max_interval * (1 - r.config.jitter)) + 10


def test_a_peer_no_longer_wanted_is_dropped_and_starts_fast_next_time():
    r = redialer(interval=0.25, jitter=0.0, fast_attempts=0)
    r.want(["p"], 0.0)
    for t in range(5):
        r.due(float(t) * 100)
        r.done("p", float(t) * 100)
    assert r.attempts("p") == 5 and r.gap(5) > 0.25
    r.want([], 600.0)  # reached again (or left, or refused)
    assert r.attempts("p") == 0 and r.next_deadline() == math.inf
    r.done("p", 600.0)  # an attempt that was still in flight ends: nothing to schedule
    r.want(["p"], 700.0)
    assert r.due(700.0) == ["p"]


def test_at_most_parallel_attempts_are_in_flight():
    r = redialer(parallel=2, jitter=0.0)
    r.want(["a", "b", "c"], 0.0)
    first = r.due(0.0)
    assert len(first) == 2 and r.due(0.0) == []
    r.done(first[0], 0.1)
    assert r.due(0.1) == sorted({"a", "b", "c"} - set(first))  # the one still waiting, not the one just done
    r.want([], 0.2)  # dropped while in flight: the slots free only when the attempts end
    r.want(["d"], 0.2)
    assert r.due(0.2) == []
    r.done(first[1], 0.3)
    assert r.due(0.3) == ["d"]


def test_bad_settings_are_refused():
    for options in ({"interval": 0}, {"interval": 20.0, "max_interval": 10.0}, {"jitter": 1.0},
                    {"parallel": 0}, {"fast_attempts": -1}):
        with pytest.raises(LocalProtocolError, match="redial"):
            RedialConfig(**options)
    with pytest.raises(LocalProtocolError, match="rng"):
        Redialer(rng=None)
