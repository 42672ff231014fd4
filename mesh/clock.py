"""The node's wall clock: ``wall()`` and ``wall_ms()``, with a test-only skew for the chaos harness.

Theory of operation
-------------------
Every wall-clock read that feeds the hybrid logical clock (sensor writes) or the
task leases (the ``now`` a voter stamps on task commands, ``lease_left_s``)
goes through this module, so the chaos harness's clock nemesis
(``mesh.chaos.nemesis``: ``clock-jump``, ``clock-drift``) can skew exactly
those reads in a real node process. File-name stamps and uptime keep reading
``time.time()``: skewing them tests nothing. Only this node's reads are
skewed: pysyncobj's and libp2p's timers, and every monotonic clock, are not.

Normally ``wall()`` *is* ``time.time()``. The skew is a **test-only switch**:
only when the process was started with the environment variable
``MESHNODE_CHAOS_CLOCK`` set to a file path (the chaos harness does this, for
clusters built with ``chaos_clock=True``; nothing else should) does ``wall()``
add a skew read from that JSON file::

    {"offset_s": 60.0, "drift": 0.05, "since": 1767225600.0}

    skew = offset_s + drift * (time.time() - since)

``offset_s`` is a jump (seconds, either sign), ``drift`` the seconds gained per
real second (negative: the clock runs slow) since the Unix time ``since``. A
missing file is no skew (that is how the harness heals the fault). A file that
is not such a document, or whose values are out of bounds
(|offset_s| <= ``MAX_OFFSET_S``, |drift| <= ``MAX_DRIFT``), is logged once and
treated as no skew: a broken test switch must never take the node down.

Cost: the file is looked at (one ``stat``) at most every ``RELOAD_S`` seconds of
monotonic time and parsed only when it changed (``mesh/watched_file.py``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from crdt.errors import MeshError

from .watched_file import WatchedFile

log = logging.getLogger("meshnode.clock")

CHAOS_CLOCK_ENV = "MESHNODE_CHAOS_CLOCK"
"""Test-only: the path of the skew file (set only by the chaos harness)."""

CHAOS_CLOCK_FILE = "chaos-clock.json"
"""The skew file's name in a node's data dir (the harness's choice of path)."""

RELOAD_S = 0.2
"""The skew file is looked at no more often than this (monotonic seconds)."""

MAX_OFFSET_S = 86_400.0
"""The largest jump a skew file may ask for: one day, either way."""

MAX_DRIFT = 1.0
"""The largest drift a skew file may ask for: one second gained (or lost) per second."""

_FIELDS = frozenset({"offset_s", "drift", "since"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Skew:
    """A clock skew: a jump of ``offset_s`` plus ``drift`` seconds per second since Unix time ``since``."""

    offset_s: float = 0.0
    drift: float = 0.0
    since: float = 0.0

    def __post_init__(self) -> None:
        for name in ("offset_s", "drift", "since"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise MeshError(f"clock: {name} must be a finite number, got {value!r}")
        if abs(self.offset_s) > MAX_OFFSET_S:
            raise MeshError(f"clock: offset_s must be within ±{MAX_OFFSET_S:g} s, got {self.offset_s:g}")
        if abs(self.drift) > MAX_DRIFT:
            raise MeshError(f"clock: drift must be within ±{MAX_DRIFT:g} s/s, got {self.drift:g}")

    def at(self, real: float) -> float:
        """The skew in seconds at real Unix time ``real`` (a long drift stops at ±``MAX_OFFSET_S``)."""
        return max(-MAX_OFFSET_S, min(MAX_OFFSET_S, self.offset_s + self.drift * (real - self.since)))

    def to_json(self) -> str:
        """The skew file's text."""
        return json.dumps({"offset_s": self.offset_s, "drift": self.drift, "since": self.since})

    @classmethod
    def from_json(cls, text: str) -> Skew:
        """Parse a skew file; raises ``MeshError`` naming what is wrong."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise MeshError(f"clock: the skew file is not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise MeshError(f"clock: the skew file must hold a JSON object, got {type(doc).__name__}")
        unknown = set(doc) - _FIELDS
        if unknown:
            raise MeshError(f"clock: unknown fields {sorted(unknown)} in the skew file; "
                            f"expected {sorted(_FIELDS)}")
        if doc.get("drift", 0.0) and "since" not in doc:
            raise MeshError("clock: a skew file with drift needs since (the Unix time the drift started)")
        return cls(**doc)


NO_SKEW = Skew()


def _parse_skew(data: bytes) -> Skew:
    try:
        return Skew.from_json(data.decode())
    except MeshError as exc:
        raise ValueError(str(exc).removeprefix("clock: ")) from None


def _loaded(skew: Skew) -> None:
    log.warning("clock: test-only skew: offset %+g s, drift %+g s/s", skew.offset_s, skew.drift)


class SkewFile:
    """The skew file as this process reads it: cached, re-read at most every ``RELOAD_S`` when it changed."""

    def __init__(self, path: Path | str) -> None:
        self._file = WatchedFile(path, _parse_skew, NO_SKEW, what="clock: the skew file", logger=log,
                                 reload_s=RELOAD_S, on_load=_loaded)
        self.path = self._file.path

    def skew(self, real: float, mono: float) -> float:
        """The skew (seconds) at real time ``real``, looking at the file again if ``mono`` says it is due."""
        return self._file.get(mono).at(real)


_source: SkewFile | None = None


def configure(path: Path | str | None) -> None:
    """Read the skew from ``path`` from now on (None: no skew). The node uses ``MESHNODE_CHAOS_CLOCK``."""
    global _source
    _source = None if path is None else SkewFile(path)
    if _source is not None:
        log.warning("clock: %s is set: wall-clock reads follow the test-only skew file %s",
                    CHAOS_CLOCK_ENV, _source.path)


def wall() -> float:
    """The node's wall clock in Unix seconds: ``time.time()``, plus the chaos skew when the test switch is on."""
    real = time.time()
    if _source is None:
        return real
    return real + _source.skew(real, time.monotonic())


def wall_ms() -> int:
    """``wall()`` in whole milliseconds (what the hybrid logical clock takes)."""
    return int(wall() * 1000)


configure(os.environ.get(CHAOS_CLOCK_ENV) or None)


__all__ = [
    "CHAOS_CLOCK_ENV",
    "CHAOS_CLOCK_FILE",
    "MAX_DRIFT",
    "MAX_OFFSET_S",
    "NO_SKEW",
    "RELOAD_S",
    "Skew",
    "SkewFile",
    "configure",
    "wall",
    "wall_ms",
]
