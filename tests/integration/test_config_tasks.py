"""The state model on real processes: config cas/list/delete/watch, stale reads, task leases (issue 4).

One 4-node cluster for the module (3 voters and a forwarder); the tests run in
file order and the last one kills two voters on purpose.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading

import pytest

from mesh.cluster import LocalCluster, meshnode_cmd, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


def cli(node, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a client verb against ``node``."""
    return subprocess.run(meshnode_cmd(*args, "-d", str(node.data_dir)), capture_output=True, text=True, check=False,
                          timeout=timeout)


def ok_json(node, *args: str):
    out = cli(node, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("mesh"))
    for name in ("n0", "n1", "n2", "n3"):
        c.init_node(name)
    try:
        c.start_all()
        c.wait_mesh(timeout=60)
        c.wait_leader(timeout=60)
        yield c
    finally:
        c.stop_all()
        for node in c.nodes:
            if node.log_path and node.log_path.exists():
                print(f"--- {node.name} log tail ---")
                print("\n".join(node.log_path.read_text(errors="replace").splitlines()[-20:]))


def roles(cluster) -> dict[str, str]:
    return {n.name: n.client().get("/status")["raft"]["role"] for n in cluster.nodes if n.running}


def forwarder_and_voters(cluster):
    r = wait_for(lambda: (got := roles(cluster)) and list(got.values()).count("forwarder") == 1 and got,
                 30, "one forwarder and three voters")
    forwarder = next(n for n in cluster.nodes if r[n.name] == "forwarder")
    return forwarder, [n for n in cluster.nodes if n is not forwarder]


def test_cas_creates_swaps_and_refuses_a_stale_revision(cluster):
    a, b = cluster.nodes[0], cluster.nodes[3]
    created = ok_json(a, "config", "cas", "site/lock", '"n0"', "--expect", "0")
    assert created["swapped"] is True and created["value"] == "n0"

    taken = cli(b, "config", "cas", "site/lock", '"n3"', "--expect", "0")
    assert taken.returncode == 1
    assert taken.stderr.startswith("error: config: compare-and-set of 'site/lock' did not swap")
    assert taken.stdout == ""

    rev = created["entry_revision"]
    swapped = ok_json(b, "config", "cas", "site/lock", '"n3"', "--expect", str(rev))
    assert swapped["swapped"] is True and swapped["entry_revision"] > rev

    stale = cli(a, "config", "cas", "site/lock", '"again"', "--expect", str(rev), "--json")
    assert stale.returncode == 1  # --json: the current entry on stdout, to retry from
    assert json.loads(stale.stdout)["value"] == "n3"
    assert ok_json(a, "config", "get", "site/lock")["value"] == "n3"


def test_list_and_delete_through_any_node(cluster):
    a, forwarder = cluster.nodes[1], cluster.nodes[3]
    ok_json(a, "config", "set", "site/fps", "5")
    ok_json(a, "config", "set", "other", "1")
    listed = ok_json(forwarder, "config", "list", "site/")
    assert [e["key"] for e in listed["entries"]] == ["site/fps", "site/lock"]
    assert listed["stale"] is False
    table = cli(forwarder, "config", "list", "site/")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split() == ["KEY", "VALUE", "REVISION"]

    assert ok_json(forwarder, "config", "delete", "site/fps")["deleted"] is True
    assert ok_json(a, "config", "delete", "site/fps")["deleted"] is False
    assert cli(a, "config", "get", "site/fps").returncode == 1
    assert [e["key"] for e in ok_json(a, "config", "list", "site/")["entries"]] == ["site/lock"]


class Watch:
    """A running `meshnode config watch --json`, its lines collected by a thread."""

    def __init__(self, node, *args: str) -> None:
        self.proc = subprocess.Popen(meshnode_cmd("config", "watch", *args, "--json", "-d", str(node.data_dir)),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def drain(self) -> list[dict]:
        """Every event printed so far."""
        while not self.lines.empty():
            self.events.append(self.lines.get())
        return self.events

    def until(self, predicate, timeout: float, what: str) -> list[dict]:
        """Every event so far, once ``predicate(events)`` holds."""
        wait_for(lambda: predicate(self.drain()), timeout, what)
        return self.events


def write_until(node, key: str, done, what: str) -> None:
    """Write ``key`` = 0, 1, 2, … until ``done()``: a watch reports only what it sees after it starts."""
    n = iter(range(10_000))

    def check() -> bool:
        if done():
            return True
        assert cli(node, "config", "set", key, str(next(n))).returncode == 0
        return False

    wait_for(check, 30, what)


def test_watch_prints_each_change_as_it_is_applied_and_stops_on_ctrl_c(cluster):
    writer, watcher_node = cluster.nodes[0], cluster.nodes[2]
    watch = Watch(watcher_node, "--prefix", "room/")
    try:
        # The watch starts from whatever it first sees: write until it reports something.
        write_until(writer, "room/ping", watch.drain, "the watch to report a write")
        ok_json(writer, "config", "set", "room/temp", "21.5")
        # The watch compares applied states at intervals: a key set and deleted between two looks
        # is never seen, so the delete goes out only once the set was reported.
        watch.until(lambda ev: any(e["key"] == "room/temp" and not e["deleted"] for e in ev), 30,
                    "the set to be reported")
        ok_json(writer, "config", "delete", "room/temp")
        ok_json(writer, "config", "set", "outside/temp", "3")  # not watched
        events = watch.until(lambda ev: any(e["deleted"] and e["key"] == "room/temp" for e in ev), 30,
                             "the delete to be reported")
        mine = [e for e in events if e["key"] == "room/temp"]
        assert [(e["value"], e["deleted"]) for e in mine] == [(21.5, False), (None, True)]
        assert all(e["key"].startswith("room/") for e in events)
        revisions = [e["revision"] for e in events]
        assert revisions == sorted(revisions)
    finally:
        watch.proc.send_signal(signal.SIGINT)
        code = watch.proc.wait(20)
    assert code == 0, watch.proc.stderr.read()


def test_watch_stops_after_count_or_timeout(cluster):
    writer, forwarder = cluster.nodes[0], cluster.nodes[3]
    quiet = cli(forwarder, "config", "watch", "never/written", "--timeout", "1", timeout=30)
    assert quiet.returncode == 0 and quiet.stdout == ""

    watch = Watch(forwarder, "door", "--count", "1")  # a forwarder's watch asks a voter
    write_until(writer, "door", lambda: watch.proc.poll() is not None, "the watch to end after one change")
    assert watch.proc.returncode == 0
    events = watch.until(lambda ev: len(ev) == 1, 5, "its one line")
    assert events[0]["key"] == "door" and events[0]["deleted"] is False


def test_tasks_have_one_holder_and_a_new_holder_fences_the_old_one_out(cluster):
    a, b = cluster.nodes[0], cluster.nodes[3]
    first = ok_json(a, "task", "acquire", "backup", "--lease", "60")
    assert first["acquired"] and first["holder"] == a.peer_id and first["token"] >= 1
    assert 0 < first["lease_left_s"] <= 60

    refused = cli(b, "task", "acquire", "backup")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: tasks: backup held by {a.peer_id} with token {first['token']}")

    listed = ok_json(b, "tasks")
    [entry] = [t for t in listed["tasks"] if t["task"] == "backup"]
    assert entry["holder"] == a.peer_id and entry["token"] == first["token"] and entry["lease_left_s"] > 0
    table = cli(b, "tasks")
    assert table.stdout.splitlines()[0].split() == ["TASK", "HOLDER", "TOKEN", "LEASE", "LEFT"]

    renewed = ok_json(a, "task", "renew", "backup", str(first["token"]), "--lease", "90")
    assert renewed["renewed"] and renewed["token"] == first["token"]
    assert cli(b, "task", "renew", "backup", str(first["token"])).returncode == 1  # not its holder

    assert ok_json(b, "task", "check", "backup", str(first["token"]))["valid"] is True
    assert ok_json(a, "task", "release", "backup", str(first["token"]))["released"] is True
    second = ok_json(b, "task", "acquire", "backup", "--lease", "60")
    assert second["holder"] == b.peer_id and second["token"] > first["token"]

    stale = cli(a, "task", "check", "backup", str(first["token"]))
    assert stale.returncode == 1 and "is not live" in stale.stderr
    assert cli(a, "task", "release", "backup", str(first["token"])).returncode == 1  # cannot free b's task
    assert ok_json(b, "task", "release", "backup", str(second["token"]))["released"] is True


def test_an_expired_lease_goes_to_the_next_holder_with_a_higher_token(cluster):
    a, b = cluster.nodes[1], cluster.nodes[2]
    first = ok_json(a, "task", "acquire", "short", "--lease", "1")
    second = wait_for(lambda: (got := cli(b, "task", "acquire", "short", "--json")).returncode == 0
                      and json.loads(got.stdout), 30, "the lease to run out")
    assert second["holder"] == b.peer_id and second["token"] > first["token"]
    lost = cli(a, "task", "renew", "short", str(first["token"]))
    assert lost.returncode == 1 and "is lost" in lost.stderr


def test_without_a_majority_stale_reads_work_and_linearizable_ones_fail(cluster):
    """Rule (issue 4): without a majority, writes and linearizable reads fail within a bounded time
    with a clear error; stale reads still work (and show their age)."""
    forwarder, voters = forwarder_and_voters(cluster)
    ok_json(forwarder, "config", "set", "before.split", '"kept"')
    survivor, doomed = voters[0], voters[1:]
    wait_for(lambda: ok_json(survivor, "config", "get", "before.split", "--stale")["value"] == "kept", 20,
             "the survivor to apply the write")
    for node in doomed:  # SIGKILL: no hand-over of the vote, the majority is simply gone
        cluster.stop(node, signal.SIGKILL)

    failed = cli(survivor, "config", "get", "before.split", timeout=30)
    assert failed.returncode == 1 and failed.stderr.startswith("error: consensus: no majority"), failed.stderr
    write = cli(forwarder, "config", "set", "after.split", "1", timeout=30)
    assert write.returncode == 1 and "no majority" in write.stderr, write.stderr

    here = ok_json(survivor, "config", "get", "before.split", "--stale")
    assert here["value"] == "kept" and here["stale"] is True and here["read_on"] == survivor.name
    aged = wait_for(lambda: (got := ok_json(survivor, "config", "get", "before.split", "--stale"))["age_s"]
                    and got["age_s"] >= 1.0 and got, 30, "the stale read's age to grow without a leader")
    assert aged["value"] == "kept"
    human = cli(survivor, "config", "get", "before.split", "--stale")
    assert human.returncode == 0 and human.stdout.strip() == "kept"
    assert human.stderr.startswith(f"(stale read on {survivor.name}: ")

    # The forwarder does not vote: its stale read is answered by the voter it can still reach.
    remote = wait_for(lambda: (got := cli(forwarder, "config", "get", "before.split", "--stale", "--json"))
                      .returncode == 0 and json.loads(got.stdout), 30, "the forwarder's stale read")
    assert remote["value"] == "kept" and remote["read_on"] == survivor.name
    assert ok_json(forwarder, "config", "list", "--stale")["stale"] is True
    assert ok_json(survivor, "tasks", "--stale")["stale"] is True
