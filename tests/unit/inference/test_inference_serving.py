"""Serving a model in partitions (inference/serving.py): the same cuts everywhere, chains equal to the whole."""

from __future__ import annotations

import numpy as np
import pytest

from inference import Runtime
from inference.cnn import cnn_bytes
from inference.early_exit import EXIT_OUTPUT, early_exit_bytes
from inference.errors import InferenceError
from inference.partition import PartitionPlan
from inference.quantize import generated_feeds
from inference.serving import MAX_SERVING_CUTS, cut_signature, prepare, run_range, serving_cuts
from inference.spec import model_spec_from_bytes


def served(data: bytes, name: str = "m"):
    spec = model_spec_from_bytes(data)
    whole, parts = Runtime(), Runtime()
    whole.load_bytes(name, data, spec)
    return whole, parts, prepare(whole, parts, name, data, spec), spec


@pytest.mark.parametrize("kind", ["resnet18", "mobilenet_v2"])
def test_every_split_point_chains_to_the_whole_model(kind):
    data = cnn_bytes(kind, seed=1)
    whole, parts, s, spec = served(data)
    assert 2 <= s.partitions <= MAX_SERVING_CUTS + 1
    assert s.profile.partitions == s.partitions and len(s.profile.boundary_bytes) == s.partitions + 1
    assert all(ms > 0 for ms in s.profile.compute_ms)
    feeds = generated_feeds(spec, 1, seed=5)[0]
    expected = whole.run("m", feeds)
    for cut in range(1, s.partitions):
        activation = run_range(parts, s, feeds, 0, cut)
        assert set(activation) == set(s.part_inputs[cut])
        rest = run_range(parts, s, activation, cut, s.partitions)
        for name, value in expected.items():
            np.testing.assert_allclose(rest[name], value, atol=1e-4)


def test_cuts_are_a_function_of_the_bytes_and_lighter_than_all_before():
    data = cnn_bytes("resnet18", seed=2)
    a, b = serving_cuts(PartitionPlan(data)), serving_cuts(PartitionPlan(data))
    assert a == b and cut_signature("x", a) == cut_signature("x", b) != cut_signature("y", a)
    sizes = [c.nbytes for c in a]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    assert cut_signature("x", a) != cut_signature("x", a[:1])


def test_the_early_exit_model_is_cut_once_after_its_head():
    data = early_exit_bytes()
    whole, parts, s, spec = served(data, "exit")
    assert s.early_exit and s.partitions == 2
    feeds = generated_feeds(spec, 1, seed=3)[0]
    front = run_range(parts, s, feeds, 0, 1)
    assert EXIT_OUTPUT in front and set(s.part_inputs[1]) <= set(front)
    rest = run_range(parts, s, {n: front[n] for n in s.part_inputs[1]}, 1, 2)
    expected = whole.run("exit", feeds)
    for name in rest:
        np.testing.assert_allclose(rest[name], expected[name], atol=1e-4)
    np.testing.assert_allclose(front[EXIT_OUTPUT], expected[EXIT_OUTPUT], atol=1e-5)


def test_bad_ranges_and_missing_activations_are_refused_by_name():
    data = cnn_bytes("mobilenet_v2", seed=1)
    _, parts, s, spec = served(data)
    feeds = generated_feeds(spec, 1, seed=5)[0]
    with pytest.raises(InferenceError, match=r"cannot run \[2, 1\)"):
        run_range(parts, s, feeds, 2, 1)
    with pytest.raises(InferenceError, match="partition 1 .* needs"):
        run_range(parts, s, feeds, 1, s.partitions)


def test_a_model_without_a_useful_cut_is_served_whole():
    from inference import build_demo_model

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        data = build_demo_model(Path(tmp) / "d.onnx", seed=1).read_bytes()
    _, _, s, _ = served(data)
    # The demo model is small; whatever it is cut into, the profile describes exactly that.
    assert s.profile.partitions == s.partitions and s.profile.cuts == s.signature
