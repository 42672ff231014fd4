"""``mesh.clock``: the node's wall clock, skewed only by the chaos harness's test-only file.

Rules (issue 7, "Clock: a node's clock jumps or drifts"): normally ``wall()`` is
exactly ``time.time()``; with ``MESHNODE_CHAOS_CLOCK`` naming a file, skew =
offset_s + drift * (time.time() - since); a missing or corrupt file is no skew
and never an error; |offset| <= 1 day, |drift| <= 1; the file is looked at
again at most every ``RELOAD_S``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest

from crdt.errors import MeshError
from mesh import clock
from mesh.clock import MAX_DRIFT, MAX_OFFSET_S, RELOAD_S, Skew, SkewFile

REAL = 1_800_000_000.0  # a real Unix time the tests pass in


def write(path, doc) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    os.replace(tmp, path)


@pytest.fixture
def skew_file(tmp_path):
    return tmp_path / "chaos-clock.json"


def test_an_offset_is_added(skew_file):
    write(skew_file, {"offset_s": 60.0})
    assert SkewFile(skew_file).skew(REAL, mono=0.0) == 60.0


def test_drift_grows_with_real_time_since_it_started(skew_file):
    """skew = offset_s + drift * (time.time() - since)."""
    write(skew_file, {"offset_s": -5.0, "drift": 0.1, "since": REAL})
    source = SkewFile(skew_file)
    assert source.skew(REAL, mono=0.0) == pytest.approx(-5.0)
    assert source.skew(REAL + 100, mono=0.0) == pytest.approx(5.0)
    write(skew_file, {"drift": -0.2, "since": REAL})
    assert source.skew(REAL + 50, mono=1.0) == pytest.approx(-10.0)


def test_a_missing_file_is_no_skew_and_removing_it_heals(skew_file):
    source = SkewFile(skew_file)
    assert source.skew(REAL, mono=0.0) == 0.0
    write(skew_file, {"offset_s": 30.0})
    assert source.skew(REAL, mono=1.0) == 30.0
    skew_file.unlink()
    assert source.skew(REAL, mono=2.0) == 0.0


@pytest.mark.parametrize("text", [
    "{not json", "[1, 2]", '"60"', '{"offset_s": "60"}', '{"offset_s": true}', '{"offset_s": NaN}',
    '{"offset_s": 1, "extra": 2}', '{"drift": 0.1}', "\udcff",
])
def test_a_corrupt_file_is_no_skew_logged_once(skew_file, text, caplog):
    """"never crash on a missing/corrupt file (log once, treat as no skew)\""""
    skew_file.write_bytes(text.encode("utf-8", "surrogateescape"))
    source = SkewFile(skew_file)
    with caplog.at_level(logging.ERROR, logger="meshnode.clock"):
        assert source.skew(REAL, mono=0.0) == 0.0
        assert source.skew(REAL, mono=1.0) == 0.0
        assert source.skew(REAL, mono=2.0) == 0.0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].getMessage().startswith("clock: "), errors


@pytest.mark.parametrize("doc", [
    {"offset_s": MAX_OFFSET_S + 1}, {"offset_s": -MAX_OFFSET_S - 1},
    {"drift": MAX_DRIFT + 0.01, "since": REAL}, {"drift": -1.5, "since": REAL},
])
def test_values_out_of_bounds_are_refused_as_no_skew(skew_file, doc):
    """"bound values (|offset| <= 1 day, |drift| <= 1.0)\""""
    write(skew_file, doc)
    assert SkewFile(skew_file).skew(REAL, mono=0.0) == 0.0
    with pytest.raises(MeshError, match=r"^clock: (offset_s|drift) must be within"):
        Skew(**doc)


def test_the_bounds_themselves_are_allowed_and_a_long_drift_stops_at_a_day(skew_file):
    write(skew_file, {"offset_s": -MAX_OFFSET_S})
    assert SkewFile(skew_file).skew(REAL, mono=0.0) == -MAX_OFFSET_S
    write(skew_file, {"offset_s": MAX_OFFSET_S, "drift": MAX_DRIFT, "since": REAL})
    assert SkewFile(skew_file).skew(REAL + 1000, mono=0.0) == MAX_OFFSET_S


def test_the_file_is_looked_at_again_only_after_reload_s(skew_file):
    """"Re-read the file at most every ~0.2 s.\""""
    write(skew_file, {"offset_s": 10.0})
    source = SkewFile(skew_file)
    assert source.skew(REAL, mono=100.0) == 10.0
    write(skew_file, {"offset_s": 20.0})
    assert source.skew(REAL, mono=100.0 + RELOAD_S / 2) == 10.0, "cached until RELOAD_S has passed"
    assert source.skew(REAL, mono=100.0 + RELOAD_S) == 20.0


def test_a_replaced_file_of_the_same_size_and_mtime_is_read_again(skew_file):
    """os.replace gives a new inode: the cache key must see it even when size and mtime match."""
    write(skew_file, {"offset_s": 11.0})
    st = skew_file.stat()
    source = SkewFile(skew_file)
    assert source.skew(REAL, mono=0.0) == 11.0
    write(skew_file, {"offset_s": 22.0})
    os.utime(skew_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert source.skew(REAL, mono=1.0) == 22.0


def test_wall_is_time_time_unless_configured(skew_file):
    try:
        clock.configure(None)
        before = time.time()
        now = clock.wall()
        assert before <= now <= time.time()
        write(skew_file, {"offset_s": 3600.0})
        clock.configure(skew_file)
        before = time.time()
        assert before + 3600 <= clock.wall() <= time.time() + 3600
        assert clock.wall_ms() >= int((before + 3600) * 1000)
    finally:
        clock.configure(os.environ.get(clock.CHAOS_CLOCK_ENV) or None)


def test_only_the_environment_variable_turns_the_skew_on(skew_file):
    """The test-only switch: a fresh process reads the file only when MESHNODE_CHAOS_CLOCK names it."""
    write(skew_file, {"offset_s": -7200.0})
    code = "import time; from mesh import clock; print(clock.wall() - time.time())"
    env = {k: v for k, v in os.environ.items() if k != clock.CHAOS_CLOCK_ENV}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    on = subprocess.run([sys.executable, "-c", code], env={**env, clock.CHAOS_CLOCK_ENV: str(skew_file)},
                        capture_output=True, text=True, check=True)
    assert abs(float(off.stdout)) < 1.0
    assert float(on.stdout) == pytest.approx(-7200.0, abs=1.0)


def test_an_unreadable_path_is_no_skew_logged_once(tmp_path, caplog):
    not_a_dir = tmp_path / "plain"
    not_a_dir.write_text("")
    source = SkewFile(not_a_dir / "chaos-clock.json")  # stat fails with NotADirectoryError on every look
    with caplog.at_level(logging.ERROR, logger="meshnode.clock"):
        assert [source.skew(REAL, mono=float(i)) for i in range(3)] == [0.0, 0.0, 0.0]
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
