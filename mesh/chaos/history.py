"""Operation histories recorded by the chaos harness, and their file format.

Theory of operation. A client process invokes an operation at one runner time
and learns its outcome at a later one; the pair is one ``Op``. The outcome is
one of three (Jepsen's vocabulary):

* ``ok`` — it took effect, and ``result`` is what the client saw;
* ``fail`` — it definitely did not take effect (refused before doing anything);
* ``unknown`` — the client cannot tell (a timeout, a dropped connection). The
  operation may have taken effect at any moment after its invocation, even
  after the client gave up, or never. Checkers treat its completion time as
  +infinity (Knossos/Porcupine semantics); ``complete`` only records when the
  client stopped waiting.

Times are the runner's monotonic seconds, never wall time, so they are
comparable across every client of one run. A ``History`` is an immutable
sequence of ops; ``Recorder`` builds one while a run is going on.

The file format is JSON ``{"format": "meshnode-chaos-history", "version": 1,
"ops": [...]}``. Lists inside values are read back as tuples, so an op equals
itself after a round trip; a malformed file raises ``HistoryError`` naming the
op and the field.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from crdt.errors import MeshError

FORMAT = "meshnode-chaos-history"
VERSION = 1
STATUSES = ("ok", "fail", "unknown")
_FIELDS = ("process", "kind", "key", "value", "invoke", "complete", "status", "result")


class HistoryError(MeshError):
    """A history (or a history file) is malformed."""


def _freeze(value: Any, where: str) -> Any:
    """``value`` with lists turned into tuples, checked to be JSON data."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HistoryError(f"chaos: {where} must be JSON data, got the non-finite float {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, where) for v in value)
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise HistoryError(f"chaos: {where} must be JSON data: mapping keys must be strings")
        return {k: _freeze(v, where) for k, v in value.items()}
    raise HistoryError(f"chaos: {where} must be JSON data, got {type(value).__name__}")


def _time(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HistoryError(f"chaos: {where} must be a finite number of seconds, got {value!r}")
    return float(value)


def _text(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise HistoryError(f"chaos: {where} must be a {'' if empty else 'non-empty '}string, got {value!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """One client operation: invoked at ``invoke``, completed at ``complete`` with ``status``."""

    process: str
    kind: str
    key: str
    value: Any = None
    invoke: float
    complete: float | None = None
    status: str
    result: Any = None

    def __post_init__(self) -> None:
        _text(self.process, "op field 'process'")
        _text(self.kind, "op field 'kind'")
        _text(self.key, "op field 'key'", empty=True)
        object.__setattr__(self, "value", _freeze(self.value, "op field 'value'"))
        object.__setattr__(self, "result", _freeze(self.result, "op field 'result'"))
        object.__setattr__(self, "invoke", _time(self.invoke, "op field 'invoke'"))
        if self.status not in STATUSES:
            raise HistoryError(f"chaos: op field 'status' must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.complete is None:
            if self.status != "unknown":
                raise HistoryError(f"chaos: op field 'complete' is required for a {self.status!r} op "
                                   "(only an 'unknown' op may lack a completion time)")
        else:
            complete = _time(self.complete, "op field 'complete'")
            if complete < self.invoke:
                raise HistoryError(f"chaos: op field 'complete' ({complete}) is before its 'invoke' ({self.invoke})")
            object.__setattr__(self, "complete", complete)
        if self.kind == "cas" and not (isinstance(self.value, tuple) and len(self.value) == 2):
            raise HistoryError(f"chaos: op field 'value' of a cas must be [expected, new], got {self.value!r}")

    @property
    def end(self) -> float:
        """The latest moment the op may take effect: ``complete``, or +infinity when ``unknown``."""
        return math.inf if self.status == "unknown" else self.complete  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """The op as JSON data (tuples become lists)."""
        return {name: _thaw(getattr(self, name)) for name in _FIELDS}

    @classmethod
    def from_dict(cls, obj: Any, *, where: str = "op") -> Op:
        """Read an op written by ``to_dict``; raises ``HistoryError`` naming the bad field."""
        if not isinstance(obj, Mapping):
            raise HistoryError(f"chaos: {where} must be an object, got {type(obj).__name__}")
        for name in ("process", "kind", "key", "invoke", "status"):
            if name not in obj:
                raise HistoryError(f"chaos: {where} lacks the required field {name!r}")
        extra = sorted(set(obj) - set(_FIELDS))
        if extra:
            raise HistoryError(f"chaos: {where} has unknown field(s) {', '.join(map(repr, extra))}")
        try:
            return cls(**{name: obj.get(name) for name in _FIELDS})
        except HistoryError as e:
            raise HistoryError(str(e).replace("chaos: op ", f"chaos: {where}: ", 1)) from None


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class History:
    """An immutable sequence of ops, in the order they were invoked."""

    ops: tuple[Op, ...] = field(default=())

    def __post_init__(self) -> None:
        ops = tuple(self.ops)
        for i, op in enumerate(ops):
            if not isinstance(op, Op):
                raise HistoryError(f"chaos: history entry {i} must be an Op, got {type(op).__name__}")
        object.__setattr__(self, "ops", ops)

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __getitem__(self, index: int) -> Op:
        return self.ops[index]

    def keys(self) -> list[str]:
        """The keys the ops touch, sorted."""
        return sorted({op.key for op in self.ops})

    def by_key(self) -> dict[str, History]:
        """One sub-history per key (P-compositionality: each key is checked on its own)."""
        groups: dict[str, list[Op]] = {}
        for op in self.ops:
            groups.setdefault(op.key, []).append(op)
        return {key: History(tuple(ops)) for key, ops in sorted(groups.items())}

    def filter(self, *, kinds: Iterable[str] | None = None, statuses: Iterable[str] | None = None) -> History:
        """The ops of the given kinds and statuses (all when None)."""
        kind_set = None if kinds is None else set(kinds)
        status_set = None if statuses is None else set(statuses)
        return History(tuple(op for op in self.ops
                             if (kind_set is None or op.kind in kind_set)
                             and (status_set is None or op.status in status_set)))

    def to_json(self) -> str:
        """The history file's text."""
        return json.dumps({"format": FORMAT, "version": VERSION, "ops": [op.to_dict() for op in self.ops]},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> History:
        """Read a history file; raises ``HistoryError`` naming the bad op and field."""
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise HistoryError(f"chaos: a history file must be JSON: {e}") from None
        if not isinstance(obj, dict):
            raise HistoryError("chaos: a history file must be a JSON object with 'format', 'version' and 'ops'")
        if obj.get("format") != FORMAT:
            raise HistoryError(f"chaos: history field 'format' must be {FORMAT!r}, got {obj.get('format')!r}")
        if obj.get("version") != VERSION:
            raise HistoryError(f"chaos: history field 'version' must be {VERSION}, got {obj.get('version')!r} "
                               "(written by another meshnode version?)")
        ops = obj.get("ops")
        if not isinstance(ops, list):
            raise HistoryError(f"chaos: history field 'ops' must be a list, got {type(ops).__name__}")
        return cls(tuple(Op.from_dict(o, where=f"op {i}") for i, o in enumerate(ops)))


class Recorder:
    """Builds a history while a run goes on: ``invoke`` returns a handle that ``complete`` closes.

    Thread-safe: the run's client threads record while its progress line reads the history
    (an hour-long run died on "dictionary changed size during iteration" without the lock).
    """

    def __init__(self) -> None:
        self._pending: dict[int, dict[str, Any]] = {}
        self._done: list[tuple[int, Op]] = []
        self._next = 0
        self._lock = threading.Lock()

    def invoke(self, *, process: str, kind: str, key: str, value: Any = None, now: float) -> int:
        """Record an invocation at ``now``; returns the handle to complete it with."""
        with self._lock:
            handle = self._next
            self._next += 1
            self._pending[handle] = {"process": process, "kind": kind, "key": key, "value": value, "invoke": now}
        return handle

    def complete(self, handle: int, *, status: str, now: float | None, result: Any = None) -> Op:
        """Record the outcome of invocation ``handle``; returns the finished op."""
        with self._lock:
            fields = self._pending.pop(handle, None)
            if fields is None:
                raise HistoryError(f"chaos: no pending invocation {handle} (completed twice, or never invoked)")
            try:
                op = Op(**fields, complete=now, status=status, result=result)
            except HistoryError:
                self._pending[handle] = fields  # a bad outcome leaves the invocation pending
                raise
            self._done.append((handle, op))
        return op

    def count(self) -> int:
        """How many ops were invoked so far (cheap, for progress lines)."""
        with self._lock:
            return self._next

    def history(self) -> History:
        """Every op so far in invocation order; still-pending ones count as ``unknown``."""
        with self._lock:
            done, pending = list(self._done), list(self._pending.items())
        ops = dict(done)
        for handle, fields in pending:
            ops[handle] = Op(**fields, complete=None, status="unknown")
        return History(tuple(ops[h] for h in sorted(ops)))
