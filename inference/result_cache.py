"""A bounded LRU cache of inference results, keyed by model and input hash (pure).

Theory of operation
-------------------
A key is ``(model_sha256, input_digest)``: the sha256 of the model file as the
registry records it, and a sha256 over the inputs' names, dtypes, shapes and
bytes, taken in name order with every field length-prefixed. The model's hash
(not its name) is in the key, so a model re-registered under the same name
misses; dtype and shape are in the key, so the same bytes read as another
tensor miss. An onnxruntime model is a pure function of its inputs here (no
random ops in the models we ship), so equal keys give equal outputs.

Values are read-only copies of the output arrays, so neither the caller that
stored them nor one that got them can change what the next hit returns;
``get`` hands out fresh writable copies, so a hit looks like a run to callers.
The cache holds at most ``max_bytes`` of output data; storing past that evicts
the least recently used entries (a hit counts as a use). A result larger than
the whole cache is not stored. ``max_bytes == 0`` turns the cache off.

Not thread-safe: the node uses it from its event loop only.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from inference.errors import InferenceError

Key = tuple[str, str]


def _frame(h: "hashlib._Hash", data: bytes | memoryview) -> None:
    """Feed ``data`` with its length first, so field boundaries cannot shift."""
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)


def input_digest(inputs: Mapping[str, np.ndarray]) -> str:
    """sha256 over the inputs' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256(b"meshnode/result-cache/1")
    h.update(len(inputs).to_bytes(8, "big"))
    for name in sorted(inputs):
        array = np.ascontiguousarray(inputs[name])
        _frame(h, name.encode())
        _frame(h, array.dtype.str.encode())  # includes byte order: '<f4' and '>f4' differ
        _frame(h, b",".join(str(n).encode() for n in array.shape))
        _frame(h, array.reshape(-1).view(np.uint8).data if array.size else b"")
    return h.hexdigest()


def result_key(model_sha256: str, inputs: Mapping[str, np.ndarray]) -> Key:
    """The cache key of running the model with hash ``model_sha256`` on ``inputs``."""
    return (model_sha256, input_digest(inputs))


class ResultCache:
    """Model outputs by ``result_key``, bounded by total output bytes, least recently used out first."""

    def __init__(self, max_bytes: int) -> None:
        if type(max_bytes) is not int or max_bytes < 0:
            raise InferenceError(
                f"inference: result cache size must be an int >= 0 bytes (0 turns it off), got {max_bytes!r}"
            )
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, dict[str, np.ndarray]] = OrderedDict()
        self._sizes: dict[Key, int] = {}
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    @property
    def enabled(self) -> bool:
        """Whether the cache stores anything (``max_bytes > 0``)."""
        return self.max_bytes > 0

    def get(self, key: Key) -> dict[str, np.ndarray] | None:
        """Fresh copies of the outputs stored under ``key`` (now most recently used), or None."""
        outputs = self._entries.get(key)
        if outputs is None:
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        return {name: array.copy() for name, array in outputs.items()}

    def put(self, key: Key, outputs: Mapping[str, np.ndarray]) -> None:
        """Store read-only copies of ``outputs`` under ``key``, evicting the least recently used as needed."""
        stored = {}
        for name, value in outputs.items():
            array = np.array(value, copy=True)
            array.flags.writeable = False
            stored[name] = array
        size = sum(a.nbytes for a in stored.values())
        if size > self.max_bytes:
            return  # bigger than the whole cache (or the cache is off)
        if key in self._entries:
            self._bytes -= self._sizes.pop(key)
            del self._entries[key]
        while self._bytes + size > self.max_bytes:
            old, _ = self._entries.popitem(last=False)
            self._bytes -= self._sizes.pop(old)
            self._evictions += 1
        self._entries[key] = stored
        self._sizes[key] = size
        self._bytes += size

    def statistics(self) -> dict:
        """hits, misses, evictions, entries, bytes held and the bound."""
        return {
            "hits": self._hits,
            "misses": self._misses,
            "evictions": self._evictions,
            "entries": len(self._entries),
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
        }
