"""Execution providers (preference, config override, unknown names) and the shared-pool setting."""

from __future__ import annotations

import subprocess
import sys

import onnxruntime as ort
import pytest

from inference import InferenceError, Runtime
from inference.providers import KNOWN_PROVIDERS, PROVIDER_PREFERENCE, check_providers, choose_providers

CPU = "CPUExecutionProvider"


@pytest.mark.parametrize(
    ("available", "chosen"),
    [
        ([CPU], [CPU]),
        (["AzureExecutionProvider", CPU], [CPU]),  # a remote service, never chosen on its own
        ([CPU, "CUDAExecutionProvider", "TensorrtExecutionProvider"], ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]),
        (["OpenVINOExecutionProvider", "ROCMExecutionProvider", CPU], ["ROCMExecutionProvider", "OpenVINOExecutionProvider", CPU]),
        (["DmlExecutionProvider", "CoreMLExecutionProvider", CPU], ["CoreMLExecutionProvider", "DmlExecutionProvider", CPU]),
        (["CUDAExecutionProvider"], ["CUDAExecutionProvider", CPU]),  # CPU is always the fallback
        (["XnnpackExecutionProvider", CPU], [CPU]),  # known but not preferred: only by config
    ],
)
def test_best_available_provider_first_cpu_last(available: list[str], chosen: list[str]) -> None:
    assert choose_providers(available) == chosen


def test_preference_names_are_real_providers_and_cover_the_installed_onnxruntime() -> None:
    assert set(PROVIDER_PREFERENCE) <= KNOWN_PROVIDERS
    assert set(ort.get_all_providers()) <= KNOWN_PROVIDERS
    assert PROVIDER_PREFERENCE[-1] == CPU


def test_explicit_providers_are_checked_by_name_then_availability() -> None:
    assert check_providers([CPU], [CPU, "AzureExecutionProvider"]) == [CPU]
    with pytest.raises(InferenceError, match=r"^inference: execution providers \['CUDAExecutionProvidr'\] are unknown"):
        check_providers(["CUDAExecutionProvidr", CPU], [CPU])
    with pytest.raises(InferenceError, match=r"\['CUDAExecutionProvider'\] are not available here"):
        check_providers(["CUDAExecutionProvider", CPU], [CPU])
    with pytest.raises(InferenceError, match="at least one"):
        check_providers([], [CPU])


def test_config_override_reaches_the_runtime_and_status_fields() -> None:
    from mesh.config import Config

    cfg = Config(name="n", inference={"providers": [CPU]})
    rt = Runtime(cfg.inference.providers or None)
    assert rt.providers == [CPU]
    assert rt.thread_pool in ("shared", "per-session")
    assert Config(name="n").inference.providers == []  # empty: best available


def test_config_names_an_unknown_provider() -> None:
    from pydantic import ValidationError

    from mesh.config import Config

    with pytest.raises(ValidationError) as info:
        Config(name="n", inference={"providers": ["CudaExecutionProvider"]})
    text = str(info.value)
    assert "inference.providers" in text and "unknown execution providers ['CudaExecutionProvider']" in text


def test_sessions_of_one_runtime_share_one_thread_pool_setting() -> None:
    # The pool mode is process-wide, so the shared case runs in a fresh interpreter.
    code = (
        "from inference import Runtime\n"
        "from inference.demo_model import demo_model_bytes\n"
        "from inference.spec import model_spec_from_bytes\n"
        "rt = Runtime(shared_thread_pool=True)\n"
        "for seed in (1, 2):\n"
        "    data = demo_model_bytes(seed)\n"
        "    rt.load_bytes(f'm{seed}', data, model_spec_from_bytes(data))\n"
        "opts = [rt._models[n].session.get_session_options() for n in ('m1', 'm2')]\n"
        "print(rt.thread_pool, [o.use_per_session_threads for o in opts],\n"
        "      [o.get_session_config_entry('session.intra_op.allow_spinning') for o in opts],\n"
        "      [str(o.graph_optimization_level) for o in opts])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "shared", "[False,", "False]", "['0',", "'0']",
        "['GraphOptimizationLevel.ORT_ENABLE_ALL',", "'GraphOptimizationLevel.ORT_ENABLE_ALL']",
    ]
