"""The test-only fault filter file: who a node must not talk to, read cheaply, never fatal."""

from __future__ import annotations

import json
import os

import pytest

from mesh import fault_filter, watched_file
from mesh.fault_filter import CHAOS_FILTER_ENV, FaultFilter, parse


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(watched_file.time, "monotonic", lambda: now[0])
    return now


def write(path, doc):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    os.replace(tmp, path)


def test_off_unless_the_environment_names_a_file(monkeypatch, tmp_path):
    monkeypatch.delenv(CHAOS_FILTER_ENV, raising=False)
    off = FaultFilter.from_env()
    assert not off.active and not off.blocks_peer("p") and not off.blocks_raft("127.0.0.1:1")
    monkeypatch.setenv(CHAOS_FILTER_ENV, str(tmp_path / "f.json"))
    assert FaultFilter.from_env().active


def test_peers_and_raft_addresses_are_cut_while_listed_and_healed_when_the_file_goes(tmp_path, clock):
    path = tmp_path / "f.json"
    f = FaultFilter(path)
    assert not f.blocks_peer("A")  # no file: nothing cut
    write(path, {"peers": ["A"], "raft": ["127.0.0.1:7000"]})
    assert not f.blocks_peer("A")  # looked at most every RELOAD_S
    clock[0] += fault_filter.RELOAD_S
    assert f.blocks_peer("A") and not f.blocks_peer("B")
    assert f.blocks_raft("127.0.0.1:7000") and not f.blocks_raft("127.0.0.1:7001")
    assert f.blocked_peers() == {"A"}
    path.unlink()
    clock[0] += fault_filter.RELOAD_S
    assert not f.blocks_peer("A") and not f.blocks_raft("127.0.0.1:7000")


@pytest.mark.parametrize("doc", ["{not json", json.dumps([1]), json.dumps({"peers": "A"}),
                                 json.dumps({"peers": [1]}), json.dumps({"others": []}),
                                 json.dumps({"peers": ["x" * 500]})])
def test_a_broken_file_is_logged_and_cuts_nothing(tmp_path, clock, caplog, doc):
    path = tmp_path / "f.json"
    write(path, {"peers": ["A"]})
    f = FaultFilter(path)
    assert f.blocks_peer("A")
    write(path, doc)
    clock[0] += fault_filter.RELOAD_S
    assert not f.blocks_peer("A")
    assert "the fault filter" in caplog.text and "ignoring it" in caplog.text


def test_parse_names_the_bad_field():
    assert parse('{"peers": ["A"], "raft": []}') == (frozenset({"A"}), frozenset())
    with pytest.raises(ValueError, match="'raft'"):
        parse('{"raft": {"a": 1}}')
