"""The dashboard page and the chaos harness's note of the fault now in force."""

from __future__ import annotations

import json
import re
import time

from mesh.dashboard import CHAOS_NOW_FILE, PAGE, read_chaos_now, write_chaos_now


def test_the_page_loads_nothing_from_anywhere_else():
    urls = set(re.findall(r"https?://[^\s\"'<>]+", PAGE))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace is a name, never fetched
    assert "<script src" not in PAGE and "<link" not in PAGE and "@import" not in PAGE


def test_the_fault_in_force_is_shown_until_its_heal(tmp_path):
    assert read_chaos_now(tmp_path) is None
    write_chaos_now(tmp_path, "partition-halves n0,n1 | n2,n3,n4", 10.0)
    assert read_chaos_now(tmp_path) == "partition-halves n0,n1 | n2,n3,n4"
    write_chaos_now(tmp_path, None, 0.0)  # healed
    assert read_chaos_now(tmp_path) is None and not (tmp_path / CHAOS_NOW_FILE).exists()


def test_a_note_left_by_a_run_that_died_or_a_broken_one_is_ignored(tmp_path):
    (tmp_path / CHAOS_NOW_FILE).write_text(json.dumps({"fault": "kill n1", "until": time.time() - 60}))
    assert read_chaos_now(tmp_path) is None
    for text in ("{not json", json.dumps(["kill"]), json.dumps({"fault": 3, "until": time.time() + 5})):
        (tmp_path / CHAOS_NOW_FILE).write_text(text)
        assert read_chaos_now(tmp_path) is None
