"""A real node whose sensor-state file was damaged reports it, serves nothing from it and re-syncs (issue 5).

Rule: "a corrupt or truncated database is detected and reported, and the node
re-syncs from peers instead of serving garbage."

Two nodes share readings. With both stopped, ``sensors.sqlite`` of one is
truncated or has bytes of a value overwritten. That node, started alone, must
say so (status ``store_notice``, an error log line naming the file), keep the
file aside, serve none of it, and take new writes under a new writer id; once
its peer is back it has every reading again and the peer has its new write.
"""

from __future__ import annotations

import pytest

from mesh.cluster import LocalCluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 40


def _truncate(path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size * 2 // 3)


def _overwrite_value(path) -> None:
    raw = path.read_bytes()
    at = raw.index(b"reading-017")
    path.write_bytes(raw[:at] + b"reading-917" + raw[at + 11:])  # valid JSON in a valid page: only the CRC sees it


@pytest.mark.parametrize("damage", [_truncate, _overwrite_value], ids=["truncated", "overwritten"])
def test_damaged_store_is_reported_kept_aside_and_resynced_from_a_peer(tmp_path, damage):
    with LocalCluster(tmp_path) as cluster:
        keeper, victim = cluster.init_node("keeper"), cluster.init_node("victim")
        cluster.start_all()
        cluster.wait_mesh()
        expected = {f"r/{i:03d}": f"reading-{i:03d}" for i in range(N)}
        for key, value in expected.items():
            victim.client().post("/state/put", {"key": key, "value": value})

        def synced(node) -> bool:
            return {e["key"]: e["value"] for e in node.client().get("/state/list", prefix="r/")} == expected

        wait_for(lambda: synced(keeper), 20, "the keeper to have every reading")
        cluster.stop_all()
        store = victim.data_dir / "sensors.sqlite"
        assert not store.with_name("sensors.sqlite-wal").exists()
        damage(store)

        cluster.start(victim)  # alone: anything it serves now came from the damaged file
        cluster.wait_api(victim)
        status = victim.client().get("/status")
        assert "sensors.sqlite" in status["store_notice"], status["store_notice"]
        log_text = victim.log_path.read_text(errors="replace")
        assert any("ERROR" in line and "sensors.sqlite" in line and "crdt-store" in line
                   for line in log_text.splitlines()), log_text[-2000:]
        aside = list(victim.data_dir.glob("sensors.sqlite.corrupt-*"))
        assert len(aside) == 1 and aside[0].stat().st_size > 0
        assert victim.client().get("/state/list") == []
        fresh = victim.client().post("/state/put", {"key": "after/damage", "value": 1})
        assert fresh["writer"] == f"{victim.peer_id}~1"
        assert status["sensors"]["writer"] == fresh["writer"] and status["sensors"]["broken"] == ""

        cluster.start(keeper)
        cluster.wait_api(keeper)
        wait_for(lambda: synced(victim), 30, "the victim to re-sync every reading from the keeper")
        wait_for(lambda: (keeper.client().get("/state/get", key="after/damage") or {}).get("value") == 1, 30,
                 "the keeper to receive the victim's new write")
        got = victim.client().get("/state/get", key="r/017")
        assert got["value"] == "reading-017" and got["writer"] == victim.peer_id  # the original write, re-synced
