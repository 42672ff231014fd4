"""The result cache: keyed by model and input hash, bounded by bytes, least recently used out first."""

from __future__ import annotations

import numpy as np
import pytest

from inference import InferenceError, ResultCache, result_key

SHA = "a" * 64


def out(n_floats: int, fill: float = 1.0) -> dict[str, np.ndarray]:
    return {"probs": np.full(n_floats, fill, np.float32)}


def test_hit_after_put_and_miss_before() -> None:
    cache = ResultCache(1024)
    key = result_key(SHA, {"image": np.arange(6, dtype=np.float32).reshape(2, 3)})
    assert cache.get(key) is None
    cache.put(key, out(4, 2.0))
    again = result_key(SHA, {"image": np.arange(6, dtype=np.float32).reshape(2, 3)})
    got = cache.get(again)
    assert got is not None and np.array_equal(got["probs"], out(4, 2.0)["probs"])
    assert cache.statistics() == {"hits": 1, "misses": 1, "evictions": 0, "entries": 1, "bytes": 16, "max_bytes": 1024}


def test_same_bytes_as_another_dtype_or_shape_or_name_or_model_miss() -> None:
    base = np.arange(4, dtype=np.int32)
    key = result_key(SHA, {"x": base})
    others = [
        result_key(SHA, {"x": base.view(np.float32)}),  # same bytes, other dtype
        result_key(SHA, {"x": base.reshape(2, 2)}),  # same bytes, other shape
        result_key(SHA, {"y": base}),  # other input name
        result_key("b" * 64, {"x": base}),  # re-registered model: other sha256
    ]
    cache = ResultCache(1024)
    cache.put(key, out(1))
    assert all(cache.get(k) is None for k in others)
    assert len(set(others) | {key}) == 5


def test_input_order_does_not_matter_and_names_cannot_shift_into_bytes() -> None:
    a, b = np.zeros(2, np.float32), np.ones(3, np.float32)
    assert result_key(SHA, {"a": a, "b": b}) == result_key(SHA, {"b": b, "a": a})
    # Non-contiguous input hashes as its values.
    strided = np.arange(8, dtype=np.float32)[::2]
    assert result_key(SHA, {"a": strided}) == result_key(SHA, {"a": strided.copy()})


def test_least_recently_used_is_evicted_by_bytes() -> None:
    cache = ResultCache(3 * 16)  # three entries of four float32s
    keys = [result_key(SHA, {"x": np.array([i], np.int64)}) for i in range(4)]
    for k in keys[:3]:
        cache.put(k, out(4))
    assert cache.get(keys[0]) is not None  # 0 is now the most recent; 1 the least
    cache.put(keys[3], out(4))
    assert cache.get(keys[1]) is None
    assert all(cache.get(k) is not None for k in (keys[0], keys[2], keys[3]))
    cache.put(keys[1], out(8))  # 32 bytes: evicts two more
    stats = cache.statistics()
    assert stats["evictions"] == 3 and stats["bytes"] <= 48 and stats["entries"] == 2
    assert cache.get(keys[1]) is not None


def test_result_bigger_than_the_cache_is_not_stored() -> None:
    cache = ResultCache(8)
    key = result_key(SHA, {"x": np.zeros(1)})
    cache.put(key, out(4))
    assert cache.get(key) is None and cache.statistics()["bytes"] == 0


def test_zero_size_turns_the_cache_off() -> None:
    cache = ResultCache(0)
    key = result_key(SHA, {"x": np.zeros(1)})
    cache.put(key, out(1))
    assert not cache.enabled and cache.get(key) is None
    assert cache.statistics()["entries"] == 0


def test_outputs_cannot_be_changed_through_the_cache() -> None:
    cache = ResultCache(1024)
    key = result_key(SHA, {"x": np.zeros(1)})
    original = out(4, 3.0)
    cache.put(key, original)
    original["probs"][:] = -1  # the caller's array is not the stored one
    first = cache.get(key)
    first["probs"][:] = -2  # nor is a hit's
    second = cache.get(key)
    assert np.array_equal(second["probs"], out(4, 3.0)["probs"])
    stored = next(iter(cache._entries.values()))["probs"]
    with pytest.raises(ValueError):
        stored[0] = 0


@pytest.mark.parametrize("size", [-1, 1.5, "64"])
def test_bad_size_is_refused(size) -> None:
    with pytest.raises(InferenceError, match="inference: result cache size"):
        ResultCache(size)

