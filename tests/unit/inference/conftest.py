"""Shared fixtures: the demo model, built once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference import ModelSpec, build_demo_model, read_model_spec


@pytest.fixture(scope="session")
def demo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_model(tmp_path_factory.mktemp("models") / "demo.onnx", seed=0)


@pytest.fixture(scope="session")
def demo_spec(demo_path: Path) -> ModelSpec:
    return read_model_spec(demo_path)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((2, 3, 32, 32)).astype(np.float32)
