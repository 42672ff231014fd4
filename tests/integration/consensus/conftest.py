"""Real RaftLog nodes on 127.0.0.1 in one process, each with its own data dir."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from consensus import RaftLog

PASSWORD = "test-mesh-secret"


def free_addr() -> str:
    """A loopback address with a port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` until it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Nodes:
    """Starts RaftLogs and remembers them so the fixture closes every one."""

    root: Path
    started: list[RaftLog] = field(default_factory=list)
    password = PASSWORD
    free_addr = staticmethod(free_addr)
    wait_for = staticmethod(wait_for)

    def start(self, addr: str, partners: list[str], name: str, **kwargs) -> RaftLog:
        log = RaftLog(addr, partners, PASSWORD, self.root / name, **kwargs)
        self.started.append(log)
        return log

    def cluster(self, size: int = 3, **kwargs) -> list[RaftLog]:
        """Bootstrap node 1 alone, then join the others one at a time through add_voter."""
        addrs = [free_addr() for _ in range(size)]
        first = self.start(addrs[0], [], "n1", **kwargs)
        wait_for(lambda: first.status().role == "leader", 5, "node 1 to lead its one-node cluster")
        logs = [first]
        for i, addr in enumerate(addrs[1:], start=2):
            # The joiner starts with partners = the current voters; a voter then adds it.
            joiner = self.start(addr, addrs[: i - 1], f"n{i}", **kwargs)
            first.add_voter(addr, timeout=5)
            logs.append(joiner)
        for log in logs:
            wait_for(lambda: log.status().voters == sorted(addrs), 5, f"{log} to list every voter")
        wait_for(
            lambda: len({log.status().leader for log in logs} - {None}) == 1
            and all(log.status().leader for log in logs),
            5,
            "one leader that every node agrees on",
        )
        return logs

    def close_all(self) -> None:
        for log in self.started:
            log.close()


@pytest.fixture
def nodes(tmp_path: Path):
    nodes = Nodes(tmp_path)
    try:
        yield nodes
    finally:
        nodes.close_all()
