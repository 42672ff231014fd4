"""A small file a process keeps an eye on: parsed once per change, looked at (one ``stat``) at most every ``reload_s``.

The chaos harness steers a running node through two such files (test-only
switches): the clock skew (``mesh/clock.py``) and the fault filter
(``mesh/fault_filter.py``). Both want the same behaviour, here once:

* a missing file is the empty value (that is how the harness heals a fault);
* the file is looked at no more often than every ``reload_s`` seconds of
  monotonic time, and parsed only when its (inode, size, mtime) changed, so a
  change is in force at most ``reload_s`` after the harness replaced the file
  (it writes a temp file and ``os.replace``-s it in: a reader never sees half a
  document);
* a file that cannot be read or parsed is logged once (until the reason
  changes) and read as the empty value: a broken test switch must never take
  the node down.

Thread-safe: pysyncobj's thread and the event loop both ask.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class WatchedFile(Generic[T]):
    """The value parsed from ``path``, kept current to within ``reload_s``.

    ``parse(data)`` turns the file's bytes into a value or raises ``ValueError``
    (``MeshError`` is one) naming what is wrong. ``empty`` stands for a missing
    or broken file. A problem is logged on ``logger`` as ``"<what> <path>:
    <reason>; ignoring it"``; ``on_load(value)`` is called after each new value
    is read from the file.
    """

    def __init__(self, path: str | os.PathLike[str], parse: Callable[[bytes], T], empty: T, *, what: str,
                 logger: logging.Logger, reload_s: float = 0.2,
                 on_load: Callable[[T], None] | None = None) -> None:
        self.path = Path(path)
        self.reload_s = reload_s
        self._parse, self._empty, self._what, self._log, self._on_load = parse, empty, what, logger, on_load
        self._value: T = empty
        self._seen: tuple[int, int, int] | None = None  # (inode, size, mtime_ns) the value came from
        self._checked = -math.inf
        self._complaint = ""  # the last problem logged, so each is logged once
        self._lock = threading.Lock()

    def get(self, mono: float | None = None) -> T:
        """The current value, looking at the file again if ``mono`` (monotonic seconds; now if None) says it is due."""
        mono = time.monotonic() if mono is None else mono
        if mono - self._checked >= self.reload_s:
            with self._lock:
                if mono - self._checked >= self.reload_s:
                    self._refresh()
                    self._checked = mono
        return self._value

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._value, self._seen, self._complaint = self._empty, None, ""
            return
        except OSError as exc:
            self._give_up(f"cannot stat it: {exc.strerror or exc}", None)
            return
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        if seen == self._seen:
            return
        try:
            value = self._parse(self.path.read_bytes())
        except OSError as exc:
            self._give_up(f"cannot read it: {exc.strerror or exc}", seen)
            return
        except (ValueError, UnicodeDecodeError) as exc:
            self._give_up(str(exc), seen)
            return
        self._value, self._seen, self._complaint = value, seen, ""
        if self._on_load is not None:
            self._on_load(value)

    def _give_up(self, reason: str, seen: tuple[int, int, int] | None) -> None:
        if reason != self._complaint:  # once, not on every look
            self._log.error("%s %s: %s; ignoring it", self._what, self.path, reason)
        self._value, self._seen, self._complaint = self._empty, seen, reason


__all__ = ["WatchedFile"]
