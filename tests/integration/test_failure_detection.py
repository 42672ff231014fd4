"""The failure detector on real processes: kill, short pause, long pause (issue 3 targets, 3 nodes)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from mesh.cluster import LocalCluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def states_of(observer, target) -> str:
    return {p["peer_id"]: p["state"] for p in observer.client(timeout=5).get("/peers")}.get(target.peer_id, "")


def test_kill_and_pauses(tmp_path):
    with LocalCluster(tmp_path) as cluster:
        for name in ("a", "b", "c", "d"):
            cluster.init_node(name)
        cluster.start_all()
        cluster.wait_mesh()
        a, b, c, d = cluster.nodes

        # A short pause (below the suspicion time) is never declared dead.
        os.kill(c.proc.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                assert states_of(a, c) != "gone" and states_of(b, c) != "gone"
                time.sleep(0.1)
        finally:
            os.kill(c.proc.pid, signal.SIGCONT)
        wait_for(lambda: states_of(a, c) == "alive" and states_of(b, c) == "alive", 10, "c alive after a short pause")

        # A killed node is declared dead everywhere (how fast is measured in bench/failure_detection.py;
        # the bound here is only generous enough never to flake on a loaded machine).
        d.proc.kill()
        d.proc.wait(10)
        for observer in (a, b, c):
            wait_for(lambda o=observer: states_of(o, d) == "gone", 15, f"{observer.name} to declare d dead")

        # A long pause is declared dead, and the node rejoins when it resumes, without a restart.
        pid = c.proc.pid
        os.kill(c.proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: states_of(a, c) == "gone" and states_of(b, c) == "gone", 15, "c dead while paused")
        finally:
            os.kill(c.proc.pid, signal.SIGCONT)
        wait_for(lambda: states_of(a, c) == "alive" and states_of(b, c) == "alive", 20, "c back after resuming")
        wait_for(lambda: states_of(c, a) == "alive" and states_of(c, b) == "alive", 20, "c to see a and b alive")
        assert c.running and c.proc.pid == pid  # the same process: it came back, nobody restarted it
