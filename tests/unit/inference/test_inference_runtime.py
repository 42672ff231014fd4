"""Runtime on the demo model: shapes, softmax rows, determinism, input errors."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from inference import InferenceError, InvalidInput, ModelSpec, Runtime, build_demo_model, read_model_spec
from inference.runtime import choose_providers, cpu_cores, session_options


@pytest.fixture(scope="module")
def runtime(demo_path: Path, demo_spec: ModelSpec) -> Runtime:
    rt = Runtime()
    rt.load("demo", demo_path, demo_spec)
    return rt


def test_outputs_are_class_probabilities(runtime: Runtime, images: np.ndarray) -> None:
    out = runtime.run("demo", {"image": images})
    assert list(out) == ["probs"]
    probs = out["probs"]
    assert probs.shape == (2, 10) and probs.dtype == np.float32
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # Different images should not get identical answers (a dead network would).
    assert not np.array_equal(probs[0], probs[1])


def test_same_input_gives_identical_outputs_on_two_runtimes(
    runtime: Runtime, demo_path: Path, demo_spec: ModelSpec, images: np.ndarray
) -> None:
    # Inference is idempotent, which is what makes retrying on another node safe.
    other = Runtime()
    other.load("demo", demo_path, demo_spec)
    a = runtime.run("demo", {"image": images})["probs"]
    b = other.run("demo", {"image": images})["probs"]
    assert np.array_equal(a, b)


def test_run_is_safe_from_many_threads(runtime: Runtime, images: np.ndarray) -> None:
    expected = runtime.run("demo", {"image": images})["probs"]
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(runtime.run("demo", {"image": images})["probs"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(results) == 20
    assert all(np.array_equal(r, expected) for r in results)


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ({"image": np.zeros((2, 3, 16, 16), np.float32)}, "expected [N, 3, 32, 32]"),
        ({"image": np.zeros((3, 32, 32), np.float32)}, "rank 3"),
        ({"image": np.zeros((2, 3, 32, 32), np.float64)}, "dtype float64, expected float32"),
        ({"img": np.zeros((2, 3, 32, 32), np.float32)}, "missing input 'image'"),
        (
            {"image": np.zeros((2, 3, 32, 32), np.float32), "x": np.zeros(1, np.float32)},
            "unexpected input 'x'",
        ),
    ],
)
def test_bad_inputs_raise_invalid_input_with_clear_text(runtime: Runtime, inputs: dict, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        runtime.run("demo", inputs)
    assert str(info.value).startswith("inference: ")
    assert fragment in str(info.value)


def test_unknown_model(runtime: Runtime, images: np.ndarray) -> None:
    assert not runtime.has("x")
    with pytest.raises(InferenceError, match="^inference: model 'x' is not loaded on this node$"):
        runtime.run("x", {"image": images})


def test_load_is_idempotent_per_name_and_hash(runtime: Runtime, demo_path: Path, demo_spec: ModelSpec) -> None:
    before = runtime._models["demo"]
    runtime.load("demo", demo_path, demo_spec)
    assert runtime._models["demo"] is before


def test_loading_new_content_under_a_name_replaces_it(tmp_path: Path, images: np.ndarray) -> None:
    rt = Runtime()
    first = build_demo_model(tmp_path / "a.onnx", seed=1)
    second = build_demo_model(tmp_path / "b.onnx", seed=2)
    rt.load("m", first, read_model_spec(first))
    a = rt.run("m", {"image": images})["probs"]
    rt.load("m", second, read_model_spec(second))
    b = rt.run("m", {"image": images})["probs"]
    assert not np.array_equal(a, b)


def test_load_refuses_a_file_that_does_not_match_its_spec(tmp_path: Path, demo_spec: ModelSpec) -> None:
    other = build_demo_model(tmp_path / "other.onnx", seed=9)
    rt = Runtime()
    with pytest.raises(InferenceError, match="^inference: .* has sha256 .*, expected "):
        rt.load("demo", other, demo_spec)
    assert not rt.has("demo")


def test_load_of_a_missing_file(tmp_path: Path, demo_spec: ModelSpec) -> None:
    with pytest.raises(InferenceError, match="^inference: cannot read model file"):
        Runtime().load("demo", tmp_path / "gone.onnx", demo_spec)


def test_provider_preference() -> None:
    assert choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    # Azure is a remote service, not an accelerator: never picked.
    assert choose_providers(["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers(
        ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    ) == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["CoreMLExecutionProvider"])[-1] == "CPUExecutionProvider"


def test_default_and_explicit_providers(runtime: Runtime) -> None:
    assert runtime.providers[-1] == "CPUExecutionProvider"
    assert Runtime(["CPUExecutionProvider"]).providers == ["CPUExecutionProvider"]


def test_unavailable_provider_is_a_clear_error() -> None:
    with pytest.raises(InferenceError, match="^inference: execution providers .*NoSuchExecutionProvider"):
        Runtime(["NoSuchExecutionProvider"])


def test_session_options_for_each_pool_mode() -> None:
    shared = session_options(shared_pool=True)
    assert shared.use_per_session_threads is False
    own = session_options(shared_pool=False)
    assert own.use_per_session_threads is True
    assert own.intra_op_num_threads == cpu_cores()
    for so in (shared, own):
        assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_a_process_cannot_mix_shared_and_per_session_pools() -> None:
    # onnxruntime refuses per-session pools once the global ones exist. The pool mode is
    # process-wide, so this runs in a fresh interpreter.
    import subprocess
    import sys

    code = (
        "from inference import Runtime, InferenceError\n"
        "Runtime(shared_thread_pool=True)\n"
        "try:\n"
        "    Runtime(shared_thread_pool=False)\n"
        "except InferenceError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "cannot mix" in out.stdout


def test_loaded_lists_model_names(tmp_path):
    from inference import Runtime, build_demo_model, read_model_spec

    rt = Runtime()
    assert rt.loaded() == []
    path = build_demo_model(tmp_path / "m.onnx", seed=1)
    rt.load("zeta", path, read_model_spec(path))
    rt.load("alpha", path, read_model_spec(path))
    assert rt.loaded() == ["alpha", "zeta"]
