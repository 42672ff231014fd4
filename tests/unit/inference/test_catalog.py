"""The pretrained models that ship in registry wheels: found, pinned, licensed, and they really run.

Issue 6, "Models that ship": real pretrained models that come inside packages on
the registry (no download at run time), keeping their licences; silero-vad's
file is taken without importing its package (it wants torch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from inference import InferenceError, Runtime
from inference.catalog import INSTALL_COMMAND, SHIPPED_MODELS, shipped_model

ROOT = Path(__file__).resolve().parents[3]
NAMES = sorted(SHIPPED_MODELS)

# A 5x7 pixel font, enough to write our own name without PIL or a font file.
GLYPHS = {
    "M": ("10001", "11011", "10101", "10101", "10001", "10001", "10001"),
    "E": ("11111", "10000", "10000", "11110", "10000", "10000", "11111"),
    "S": ("01111", "10000", "10000", "01110", "00001", "00001", "11110"),
    "H": ("10001", "10001", "10001", "11111", "10001", "10001", "10001"),
    "N": ("10001", "11001", "10101", "10011", "10001", "10001", "10001"),
    "O": ("01110", "10001", "10001", "10001", "10001", "10001", "01110"),
    "D": ("11110", "10001", "10001", "10001", "10001", "10001", "11110"),
}


def render(text: str, scale: int = 4, pad: int = 6) -> np.ndarray:
    """Black ``text`` on white, grey values in [0,1], shape [7*scale+2*pad, ...]."""
    columns = []
    for ch in text:
        columns += [np.array([[c == "1" for c in row] for row in GLYPHS[ch]]), np.zeros((7, 1), bool)]
    ink = np.kron(np.concatenate(columns, axis=1), np.ones((scale, scale), bool))
    page = np.ones((ink.shape[0] + 2 * pad, ink.shape[1] + 2 * pad), np.float32)
    page[pad:-pad, pad:-pad][ink] = 0.0
    return page


def as_rgb_batch(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[None, None], 3, axis=1).astype(np.float32)


def text_line(text: str) -> np.ndarray:
    """``text`` rendered 48 pixels high (what the PP-OCR line models take), nearest-neighbour scaled."""
    line = render(text)
    rows = (np.arange(48) * line.shape[0] / 48).astype(int)
    width = round(line.shape[1] * 48 / line.shape[0])
    return line[rows][:, (np.arange(width) * line.shape[1] / width).astype(int)]


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    rt = Runtime(["CPUExecutionProvider"])
    for name in NAMES:
        model = shipped_model(name)
        rt.load(name, model.path(), model.spec())
    return rt


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_model_is_installed_with_the_pinned_bytes(name):
    model = shipped_model(name)
    data = model.path().read_bytes()
    assert len(data) == model.size
    assert hashlib.sha256(data).hexdigest() == model.sha256
    assert importlib.metadata.version(model.distribution) == model.version


def test_finding_files_imports_none_of_the_packages():
    """silero_vad's __init__ imports torch, which we do not install: find, never import."""
    for model in SHIPPED_MODELS.values():
        model.path()
    assert not {"silero_vad", "rapidocr", "torch", "cv2"} & set(sys.modules)


@pytest.mark.parametrize("name", NAMES)
def test_licence_texts_in_the_repo_are_the_ones_the_wheel_ships(name):
    model = shipped_model(name)
    dist = importlib.metadata.distribution(model.distribution)
    shipped = {Path(str(f)).name: f for f in dist.files or [] if "licenses/" in str(f)}
    assert model.license_paths()
    for ours in model.license_paths():
        upstream = shipped[ours.name.removeprefix(f"{model.distribution}-")]
        assert ours.read_text() == Path(dist.locate_file(upstream)).read_text()
    assert model.license in (dist.metadata["License-Expression"] or "") + " ".join(
        dist.metadata.get_all("Classifier") or []
    ).replace("MIT License", "MIT")


def test_docs_list_every_model_with_its_licence():
    doc = (ROOT / "docs" / "models.md").read_text()
    for model in SHIPPED_MODELS.values():
        row = next((line for line in doc.splitlines() if f"`{model.name}`" in line), "")
        assert model.license in row and model.requirement in row, model.name


def test_the_makefile_installs_exactly_the_catalog_packages():
    makefile = (ROOT / "Makefile").read_text()
    pins = re.search(r"^MODEL_PACKAGES := (.+)$", makefile, re.M).group(1).split()
    assert sorted(pins) == sorted(INSTALL_COMMAND.split("--no-deps ")[1].split())
    assert "-m pip install --quiet --no-deps $(MODEL_PACKAGES)" in makefile


def test_text_detection_marks_the_text_and_not_the_background(runtime):
    line = render("MESHNODE")
    page = np.ones((128, 320), np.float32)
    top, left = 40, 20
    page[top : top + line.shape[0], left : left + line.shape[1]] = line
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = ((as_rgb_batch(page) - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    probs = runtime.run("ppocr-det", {"x": x})["fetch_name_0"]
    assert probs.shape == (1, 1, 128, 320)
    assert probs.min() >= 0.0 and probs.max() <= 1.0
    inner = probs[0, 0, top + 6 : top + line.shape[0] - 6, left + 6 : left + line.shape[1] - 6]
    assert inner.mean() > 0.3
    assert probs[0, 0, 100:, :].max() < 0.05


def test_text_recognition_reads_a_rendered_line(runtime):
    model = shipped_model("ppocr-rec")
    meta = {p.key: p.value for p in onnx.load(model.path()).metadata_props}
    alphabet = ["<blank>", *meta["character"].splitlines(), " "]
    line = text_line("MESHNODE")
    width = line.shape[1]
    x = as_rgb_batch((line - 0.5) / 0.5)
    probs = runtime.run("ppocr-rec", {"x": x})["fetch_name_0"]
    assert probs.shape == (1, -(-width // 8), len(alphabet))
    assert np.allclose(probs.sum(axis=-1), 1.0, atol=1e-4)
    best = probs[0].argmax(axis=-1)
    # Greedy CTC: merge repeats, drop blanks.
    text = "".join(alphabet[k] for i, k in enumerate(best) if k != 0 and (i == 0 or k != best[i - 1]))
    assert text == "MESHNODE"


def test_orientation_tells_an_upright_line_from_an_upside_down_one(runtime):
    line = text_line("NODE")
    canvas = np.ones((48, 192), np.float32)  # the model's fixed size, padded white on the right
    canvas[:, : line.shape[1]] = line
    x = np.concatenate([as_rgb_batch((canvas - 0.5) / 0.5), as_rgb_batch((canvas[::-1, ::-1] - 0.5) / 0.5)])
    probs = runtime.run("ppocr-cls", {"x": x})["save_infer_model/scale_0.tmp_1"]
    assert probs.shape == (2, 2)
    assert probs.argmax(axis=1).tolist() == [0, 1]  # 0 = upright, 1 = turned 180 degrees


def test_paddle_s_unknown_dimensions_read_as_unknown():
    """paddle2onnx writes -1 and "?" for "any size"; the spec must serve such a model, not refuse it or tie H to W."""
    (x,) = shipped_model("ppocr-cls").spec().inputs
    assert x.shape == (None, 3, None, None)


def test_voice_activity_gives_probabilities_and_carries_state(runtime):
    t = np.arange(512) / 16000
    chunks = {
        "silence": np.zeros((1, 512), np.float32),
        "tone": (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
    }
    for name, audio in chunks.items():
        state = np.zeros((2, 1, 128), np.float32)
        for _ in range(3):
            out = runtime.run("silero-vad", {"input": audio, "state": state, "sr": np.array(16000, np.int64)})
            assert out["output"].shape == (1, 1), name
            assert 0.0 <= out["output"].item() <= 1.0, name
            assert out["stateN"].shape == (2, 1, 128), name
            state = out["stateN"]
        assert np.abs(state).sum() > 0, name


def test_a_missing_package_names_itself_and_the_install_command():
    ghost = dataclasses.replace(
        shipped_model("silero-vad"), distribution="meshnode-no-such-wheel", package="meshnode_no_such_wheel"
    )
    with pytest.raises(InferenceError) as err:
        ghost.path()
    message = str(err.value)
    assert message.startswith("inference: shipped model 'silero-vad'")
    assert "meshnode-no-such-wheel is not installed" in message
    assert "python -m pip install --no-deps meshnode-no-such-wheel==6.2.3" in message


def test_a_missing_file_in_an_installed_package_says_where_it_looked():
    gone = dataclasses.replace(shipped_model("silero-vad"), resource="data/silero_vad_v99.onnx")
    with pytest.raises(InferenceError, match=r"silero-vad 6\.2\.3 is installed.*the file is missing"):
        gone.path()


def test_other_bytes_under_a_shipped_name_are_refused():
    forged = dataclasses.replace(shipped_model("silero-vad"), sha256="0" * 64)
    with pytest.raises(InferenceError, match="--force-reinstall silero-vad==6.2.3"):
        forged.spec()


def test_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(InferenceError, match="ppocr-det"):
        shipped_model("yolo")
