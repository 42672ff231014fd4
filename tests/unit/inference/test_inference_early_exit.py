"""Early exit: the exit head leaves the backbone's output alone, splits at the features, and decides by threshold."""

from __future__ import annotations

import functools
import math

import numpy as np
import onnx
import pytest

from inference import InferenceError, Runtime
from inference.catalog import shipped_model
from inference.cnn import mobilenet_v2
from inference.early_exit import (
    AGREEMENT_KEY,
    ANSWER,
    DEFAULT_INPUT_SHAPE,
    ESCALATE,
    EXIT_OUTPUT,
    FEATURES_KEY,
    build_early_exit,
    decide,
    early_exit_bytes,
    split_for_exit,
    synthetic_inputs,
)
from inference.partition import run_chain
from inference.spec import model_spec_from_bytes

FIT_SEED = 0  # build_early_exit's default: the head is fitted on synthetic_inputs(shape, 64, 0)
CLS_OUTPUT = "save_infer_model/scale_0.tmp_1"


@functools.cache
def backbone(name: str) -> onnx.ModelProto:
    if name == "ppocr-cls":
        return onnx.load(str(shipped_model("ppocr-cls").path()))
    return mobilenet_v2(0, size=32, width=0.5, classes=10)


@functools.cache
def exit_model(name: str) -> onnx.ModelProto:
    return build_early_exit(None if name == "ppocr-cls" else backbone(name))


def shape_of(name: str) -> tuple[int, ...]:
    return DEFAULT_INPUT_SHAPE if name == "ppocr-cls" else (3, 32, 32)


def run(models: list[onnx.ModelProto], feeds: dict, *, optimize: bool = False) -> dict:
    runtime = Runtime(optimize=optimize)
    for k, part in enumerate(models):
        data = part.SerializeToString()
        runtime.load_bytes(f"part{k}", data, model_spec_from_bytes(data))
    return run_chain(models, feeds, lambda k, f: runtime.run(f"part{k}", f))


def feeds(name: str, count: int = 16, seed: int = 11) -> dict:
    return {backbone(name).graph.input[0].name: synthetic_inputs(shape_of(name), count, seed)}


MODELS = ["ppocr-cls", "mobilenet_v2"]


@pytest.mark.parametrize("name", MODELS)
def test_built_model_is_valid_and_keeps_the_backbone_output_exactly(name: str) -> None:
    model = exit_model(name)
    onnx.checker.check_model(model)
    final = backbone(name).graph.output[0].name
    assert [o.name for o in model.graph.output] == [final, EXIT_OUTPUT]
    got = run([model], feeds(name))
    want = run([backbone(name)], feeds(name))
    np.testing.assert_array_equal(got[final], want[final])  # the head only reads the features


def test_backbone_output_kept_with_optimisations_on() -> None:
    got = run([exit_model("ppocr-cls")], feeds("ppocr-cls"), optimize=True)
    want = run([backbone("ppocr-cls")], feeds("ppocr-cls"), optimize=True)
    np.testing.assert_allclose(got[CLS_OUTPUT], want[CLS_OUTPUT], atol=1e-4)


def test_bytes_are_deterministic_per_seed() -> None:
    assert early_exit_bytes(seed=0) == early_exit_bytes(seed=0)
    assert early_exit_bytes(seed=0) != early_exit_bytes(seed=1)


@pytest.mark.parametrize("name", MODELS)
def test_split_parts_chained_reproduce_the_final_output(name: str) -> None:
    model = exit_model(name)
    device, upper = split_for_exit(model)
    features = {p.key: p.value for p in model.metadata_props}[FEATURES_KEY]
    final = backbone(name).graph.output[0].name
    assert [o.name for o in device.graph.output] == [EXIT_OUTPUT, features]
    assert [i.name for i in upper.graph.input] == [features]
    assert [o.name for o in upper.graph.output] == [final]
    for part in (device, upper):
        onnx.checker.check_model(part)
    chained = run([device, upper], feeds(name))
    whole = run([model], feeds(name))
    np.testing.assert_array_equal(chained[final], whole[final])
    np.testing.assert_array_equal(chained[EXIT_OUTPUT], whole[EXIT_OUTPUT])


def test_split_refuses_a_model_without_an_exit_head() -> None:
    with pytest.raises(InferenceError, match="no early-exit head"):
        split_for_exit(backbone("mobilenet_v2"))


@pytest.mark.parametrize("name", MODELS)
def test_exit_probabilities_are_a_distribution(name: str) -> None:
    probs = run([exit_model(name)], feeds(name))[EXIT_OUTPUT]
    assert probs.shape[0] == 16
    assert np.all(probs >= 0) and np.all(probs <= 1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_decide_thresholds() -> None:
    """Rule: answer locally when the confidence (the largest probability) is strictly above the threshold."""
    assert decide([0.7, 0.3], 0.6) == ANSWER
    assert decide([0.7, 0.3], 0.7) == ESCALATE  # equal does not clear it
    assert decide(np.array([[0.2, 0.8]], dtype=np.float32), 0.9) == ESCALATE
    # Threshold 0 always answers (the max of a distribution is at least 1/K); 1 always escalates.
    assert decide([0.5, 0.5], 0.0) == ANSWER
    assert decide([1.0, 0.0], 1.0) == ESCALATE
    assert decide([1.0, 0.0], 1) == ESCALATE
    for bad in (math.nan, -0.1, 1.5, math.inf, "0.5", None, True):
        with pytest.raises(InferenceError, match="threshold"):
            decide([0.6, 0.4], bad)
    for probs in ([], [math.nan, 0.5], [-0.1, 1.1]):
        with pytest.raises(InferenceError, match="exit probabilities"):
            decide(probs, 0.5)


def test_median_threshold_answers_about_half_early() -> None:
    probs = run([exit_model("ppocr-cls")], feeds("ppocr-cls", count=64, seed=5))[EXIT_OUTPUT]
    threshold = float(np.median(probs.max(axis=1)))
    answered = np.mean([decide(p, threshold) == ANSWER for p in probs])
    assert 0.2 <= answered <= 0.8, answered


@pytest.mark.parametrize("name", MODELS)
def test_exit_head_agrees_with_the_full_model_on_its_fitting_inputs(name: str) -> None:
    model = exit_model(name)
    fitted = {backbone(name).graph.input[0].name: synthetic_inputs(shape_of(name), 64, FIT_SEED)}
    out = run([model], fitted)
    final = backbone(name).graph.output[0].name
    agreement = float(np.mean(out[EXIT_OUTPUT].argmax(axis=1) == out[final].argmax(axis=1)))
    assert agreement >= 0.6, agreement
    recorded = float({p.key: p.value for p in model.metadata_props}[AGREEMENT_KEY])
    assert abs(agreement - recorded) < 0.02  # float32 graph vs float64 fit may flip a near-tie
