"""The chaos harness's partitions without root: a fault filter in this node's transports (test-only).

Theory of operation
-------------------
With root, the chaos harness cuts links with packet filters inside network
namespaces (``mesh.netlab``). Without root it cannot touch the network, so the
node cuts them itself: every connection this node makes or accepts, on libp2p
and on pysyncobj's Raft port, is checked against a list of peers it must not
talk to, and connections already up to a listed peer are closed.

This is a **test-only switch**: only when the process was started with the
environment variable ``MESHNODE_CHAOS_FILTER`` set to a file path (the chaos
harness's local backend does this; nothing else should) does the node read
that JSON file::

    {"peers": ["12D3KooW..."], "raft": ["127.0.0.1:40123"]}

``peers`` are libp2p peer ids, ``raft`` Raft addresses (pysyncobj's). A
missing file is an empty list (how the harness heals). A file that is not such
a document is logged once and treated as empty: a broken test switch must
never take the node down. Without the variable, ``FaultFilter.blocks_*`` are
always False and cost one attribute read.

What it models: a partition between two nodes, both ways. TCP needs both
directions (a one-way packet drop ends the connection just the same), so the
harness writes each blocked pair into both nodes' files; a one-way partition
is not offered on this backend. Everything above TCP behaves as in a real
partition: dials fail, streams break, Raft messages stop, the failure detector
notices and heals when the file empties.

Cost: the file is looked at (one ``stat``) at most every ``RELOAD_S`` seconds
and parsed only when it changed (``mesh/watched_file.py``); the harness
replaces it atomically.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .watched_file import WatchedFile

log = logging.getLogger("meshnode.fault_filter")

CHAOS_FILTER_ENV = "MESHNODE_CHAOS_FILTER"
"""Test-only: the path of the fault filter file (set only by the chaos harness's local backend)."""

CHAOS_FILTER_FILE = "chaos-filter.json"
"""The filter file's name in a node's data dir (the harness's choice of path)."""

RELOAD_S = 0.2
"""The filter file is looked at no more often than this (monotonic seconds)."""

MAX_ENTRIES = 256


def parse(text: str | bytes) -> tuple[frozenset[str], frozenset[str]]:
    """(peer ids, Raft addresses) from a filter document; ValueError naming what is wrong."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or not set(doc) <= {"peers", "raft"}:
        raise ValueError("a filter file is an object with 'peers' and 'raft' lists")
    out = []
    for name in ("peers", "raft"):
        items = doc.get(name, [])
        if not isinstance(items, list) or len(items) > MAX_ENTRIES or not all(
            isinstance(x, str) and 0 < len(x) <= 128 for x in items
        ):
            raise ValueError(f"filter field {name!r} must be a list of at most {MAX_ENTRIES} short strings")
        out.append(frozenset(items))
    return out[0], out[1]


_NOTHING: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


class FaultFilter:
    """Who this node must not talk to, read from the harness's file (nothing when not switched on)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self._file = None if self.path is None else WatchedFile(
            self.path, parse, _NOTHING, what="chaos: the fault filter", logger=log, reload_s=RELOAD_S)

    @classmethod
    def from_env(cls) -> FaultFilter:
        """The filter this process was started with (off unless ``MESHNODE_CHAOS_FILTER`` is set)."""
        path = os.environ.get(CHAOS_FILTER_ENV)
        if path:
            log.warning("chaos: this node's transports obey the test-only fault filter %s", path)
        return cls(path or None)

    @property
    def active(self) -> bool:
        """Whether the switch is on at all."""
        return self._file is not None

    def blocks_peer(self, peer_id: str) -> bool:
        """Whether libp2p traffic with ``peer_id`` is cut."""
        return self._file is not None and peer_id in self._file.get()[0]

    def blocks_raft(self, addr: str) -> bool:
        """Whether Raft traffic with the voter at ``addr`` is cut."""
        return self._file is not None and addr in self._file.get()[1]

    def blocked_peers(self) -> frozenset[str]:
        """Every peer id cut now."""
        return self._file.get()[0] if self._file is not None else frozenset()


__all__ = ["CHAOS_FILTER_ENV", "CHAOS_FILTER_FILE", "FaultFilter", "parse"]
