"""Counters in the sensor-state map: a PN-counter spread over per-writer entries.

Theory of operation. A counter ``K`` is not one entry — concurrent increments
on two nodes would be two writes to one key, and last-writer-wins would keep
only one. Instead each writer ``W`` owns the entry ``counter_key(K, W)``, whose
value is ``[P, N]``: everything ``W`` ever added to and subtracted from ``K``.
Only ``W`` writes it, each time with a newer timestamp from its own clock, so
last-writer-wins keeps ``W``'s latest totals — exactly the pointwise maximum
of a PN-counter (Shapiro et al. 2011, §3.1.2) — and the counter's value is
``sum(P - N)`` over writers. It syncs, persists and survives SIGKILL like any
other entry. A writer that lost its store comes back under a new writer id
(the store's epoch rule): its old entry keeps counting what it had added.

Sub-entry keys start with NUL, which user keys may not contain, so they never
collide with or show up among ordinary keys.

A delete of ``K`` writes a tombstone over every writer entry this node has
seen; a writer that increments concurrently keeps its entry if its write is
the newer one (last-writer-wins per writer entry).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crdt import Entry
from crdt.errors import MeshError

PREFIX = "\x00count\x00"
SEP = "\x00"
MAX_STEP = 2**53  # increments stay exact in every JSON reader


def counter_key(key: str, writer: str) -> str:
    """The entry that holds ``writer``'s totals for counter ``key``."""
    return f"{PREFIX}{key}{SEP}{writer}"


def counter_prefix(key: str = "") -> str:
    """Prefix of every writer entry of counter ``key`` (of every counter when ``key`` is empty)."""
    return f"{PREFIX}{key}{SEP}" if key else PREFIX


def parse(entry_key: str) -> tuple[str, str] | None:
    """``(counter key, writer)`` of a writer entry's key, or None for an ordinary key."""
    if not entry_key.startswith(PREFIX):
        return None
    key, sep, writer = entry_key[len(PREFIX):].rpartition(SEP)
    return (key, writer) if sep and key and writer else None


def totals(value: Any) -> tuple[int, int] | None:
    """``(P, N)`` from a writer entry's value; None if a peer sent something else (it is not counted)."""
    if (isinstance(value, list) and len(value) == 2
            and all(type(v) is int and 0 <= v <= 2**63 - 1 for v in value)):
        return value[0], value[1]
    return None


def step(current: Any, by: Any) -> list[int]:
    """The writer's new ``[P, N]`` after adding ``by`` to its ``current`` value (None: nothing yet)."""
    if type(by) is not int or by == 0 or abs(by) > MAX_STEP:
        raise MeshError(f"crdt: a counter step must be a non-zero integer of at most {MAX_STEP} either way, got {by!r}")
    p, n = totals(current) or (0, 0)
    return [p + by, n] if by > 0 else [p, n - by]


def value_of(entries: Iterable[Entry]) -> tuple[int, int]:
    """``(value, writers)`` of a counter from its writer entries (tombstones and malformed values skipped)."""
    total = writers = 0
    for entry in entries:
        pn = None if entry.deleted else totals(entry.value)
        if pn is not None:
            total += pn[0] - pn[1]
            writers += 1
    return total, writers


def group(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Writer entries grouped by counter key."""
    out: dict[str, list[Entry]] = {}
    for entry in entries:
        parsed = parse(entry.key)
        if parsed is not None:
            out.setdefault(parsed[0], []).append(entry)
    return out
