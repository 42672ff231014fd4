"""The state model through the embedding API: node.config cas/list/watch/stale and node.tasks."""

from __future__ import annotations

import pytest
import trio

from mesh import BackgroundNode, Config, Node
from mesh.cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]


def test_config_and_tasks_in_a_trio_program(tmp_path):
    node_dir = LocalCluster(tmp_path).init_node("solo").data_dir

    async def main():
        async with Node.start(Config.load(node_dir), serve_api=False) as node:
            with trio.fail_after(20):
                while node.raft_status()["leader"] is None:
                    await trio.sleep(0.05)
            created = await node.config.cas("site/lock", "a", expected_revision=0)
            assert created["swapped"] and created["entry_revision"] == created["revision"]
            lost = await node.config.cas("site/lock", "b", expected_revision=0)
            assert not lost["swapped"] and lost["value"] == "a"

            stale = await node.config.entry("site/lock", stale=True)
            assert stale["value"] == "a" and stale["stale"] is True and stale["age_s"] == 0.0  # a lone leader
            listed = await node.config.list("site/")
            assert [e["key"] for e in listed["entries"]] == ["site/lock"] and listed["stale"] is False

            seen: list[dict] = []

            async def watch():
                async for change in node.config.watch(prefix="site/"):
                    seen.append(change)
                    if change["deleted"]:
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                with trio.fail_after(20):
                    while not seen:  # the watch reports what it sees after it starts
                        await node.config.set("site/ping", len(seen))
                        await trio.sleep(0.1)
                    await node.config.delete("site/lock")
            assert seen[-1] == {"key": "site/lock", "value": None, "revision": seen[-1]["revision"], "deleted": True}

            first = await node.tasks.acquire("job", 60.0)
            assert first["acquired"] and first["holder"] == node.peer_id
            other = await node.tasks.acquire("job", 60.0, holder="someone-else")
            assert not other["acquired"] and other["token"] == first["token"]
            assert (await node.tasks.check("job", first["token"]))["valid"]
            assert (await node.tasks.release("job", first["token"]))["released"]
            second = await node.tasks.acquire("job", 60.0, holder="someone-else")
            assert second["token"] > first["token"]
            assert not (await node.tasks.check("job", first["token"], stale=True))["valid"]
            assert [t["holder"] for t in (await node.tasks.list())["tasks"]] == ["someone-else"]

    trio.run(main)


def test_background_node_passes_keyword_arguments(tmp_path):
    node_dir = LocalCluster(tmp_path).init_node("solo").data_dir
    with BackgroundNode(Config.load(node_dir), serve_api=False) as bg:
        bg.config.set("mode", "night")
        assert bg.config.get("mode", stale=True) == "night"
        assert bg.config.changes(key="never", timeout=0.2) == []
        lease = bg.tasks.acquire("nightly", 5.0)
        assert lease["acquired"] and bg.tasks.list(stale=True)["tasks"][0]["token"] == lease["token"]
