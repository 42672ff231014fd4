"""The onnxruntime wrapper: the only module of ours that imports onnxruntime.

One ``Runtime`` per node holds one ``InferenceSession`` per loaded model.
``run()`` is blocking and thread-safe: the node calls it from worker threads
(``trio.to_thread``), onnxruntime releases the GIL while it computes, and one
session may serve many threads at once.

Threads. onnxruntime's thread pools are a process-wide choice, made by the
first ``Runtime`` and fixed from then on:

* shared (``shared_thread_pool=True``): one global intra-op pool of ``cores`` threads for all
  sessions (``set_global_thread_pool_sizes`` + ``use_per_session_threads =
  False``). Measured here: 12 chained sessions in 25 ms shared vs 171 ms with
  spinning pools of their own. Caveat, onnxruntime 1.32: the global pool
  ignores ``session.intra_op.allow_spinning``; its threads spin after every
  run (about 35 ms of CPU per idle gap on 2 cores), and the Python API has no
  way to turn that off.
* per-session (the default): each session gets ``cores`` intra-op threads
  with spinning off. Chained runs are ~1.5x slower, but idle CPU stays idle
  for the event loop, libp2p and Raft on a small node; the node can opt in to
  the shared pool (``inference.shared_thread_pool``).

Once the global pools exist, onnxruntime refuses any session that asks for its
own pool, so a process cannot mix the two; a second ``Runtime`` asking for the
other mode gets a clear error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inference.errors import InferenceError
from inference.messages import ModelSpec
from inference.providers import PROVIDER_PREFERENCE as PROVIDER_PREFERENCE  # re-exported
from inference.providers import check_providers, choose_providers
from inference.spec import validate_inputs

_SHARED = "shared"
_PER_SESSION = "per-session"
_pool_lock = threading.Lock()
_pool_mode: str | None = None  # fixed by the first Runtime in the process


def cpu_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _fix_pool_mode(shared: bool) -> str:
    """Create the global pool if asked and possible; return the process's mode."""
    global _pool_mode
    want = _SHARED if shared else _PER_SESSION
    with _pool_lock:
        if _pool_mode is None:
            setter = getattr(ort, "set_global_thread_pool_sizes", None)
            if want == _PER_SESSION or setter is None:
                _pool_mode = _PER_SESSION
            else:
                try:
                    setter(cpu_cores(), 1)
                    _pool_mode = _SHARED
                except Exception as exc:
                    # Someone else in this process created them: they can be
                    # used but never replaced.
                    if "already" not in str(exc):
                        raise InferenceError(
                            f"inference: cannot create onnxruntime's shared thread pool: {exc}"
                        ) from exc
                    _pool_mode = _SHARED
        if want == _PER_SESSION and _pool_mode == _SHARED:
            raise InferenceError(
                "inference: this process already uses onnxruntime's shared thread pool and "
                "onnxruntime cannot mix it with per-session pools; use shared_thread_pool=True"
            )
        return _pool_mode


def session_options(shared_pool: bool, optimize: bool = True) -> ort.SessionOptions:
    """Options every session gets: full graph optimisation (unless not ``optimize``), no spinning, pool per mode."""
    so = ort.SessionOptions()
    # Optimisations off is for checking partitions bit for bit against the whole model.
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # A spinning pool steals the CPU the event loop and libp2p need on a small
    # node. (Ignored by the shared pool in onnxruntime 1.32, see the module doc.)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if shared_pool:
        so.use_per_session_threads = False
    else:
        so.intra_op_num_threads = cpu_cores()
        so.inter_op_num_threads = 1
    return so


@dataclass(frozen=True, slots=True)
class _Loaded:
    spec: ModelSpec
    session: ort.InferenceSession


class Runtime:
    """Loaded ONNX models on this node, run through onnxruntime."""

    def __init__(
        self, providers: list[str] | None = None, *, shared_thread_pool: bool = False, optimize: bool = True
    ):
        available = ort.get_available_providers()
        if providers is None:
            self._providers = choose_providers(available)
        else:
            self._providers = check_providers(providers, available)
        self._shared_pool = _fix_pool_mode(shared_thread_pool) == _SHARED
        self._optimize = optimize
        self._lock = threading.Lock()
        self._models: dict[str, _Loaded] = {}

    @property
    def providers(self) -> list[str]:
        """Execution providers sessions are created with, best first."""
        return list(self._providers)

    @property
    def thread_pool(self) -> str:
        """``"shared"`` (one global onnxruntime pool) or ``"per-session"``."""
        return _SHARED if self._shared_pool else _PER_SESSION

    def has(self, name: str) -> bool:
        """Whether a model called ``name`` is loaded."""
        with self._lock:
            return name in self._models

    def loaded(self) -> list[str]:
        """Names of the loaded models, sorted."""
        with self._lock:
            return sorted(self._models)

    def sha256(self, name: str) -> str | None:
        """The sha256 of the model loaded as ``name`` (what ``run`` runs now), or None."""
        with self._lock:
            loaded = self._models.get(name)
        return None if loaded is None else loaded.spec.sha256

    def load(self, name: str, path: Path, spec: ModelSpec) -> None:
        """Load ``path`` as ``name``; a no-op if the same content is already loaded.

        The file must hash to ``spec.sha256`` and declare the same inputs and
        outputs. Loading different content under a loaded name replaces it;
        runs already in flight finish on the old session.
        """
        with self._lock:
            current = self._models.get(name)
            if current is not None and current.spec.sha256 == spec.sha256:
                return
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InferenceError(f"inference: cannot read model file {path}: {exc}") from exc
        self.load_bytes(name, data, spec, origin=str(path))

    def load_bytes(self, name: str, data: bytes, spec: ModelSpec, origin: str = "<bytes>") -> None:
        """Load the serialized model ``data`` as ``name`` (a partition, say); as ``load``."""
        with self._lock:
            current = self._models.get(name)
            if current is not None and current.spec.sha256 == spec.sha256:
                return
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec.sha256:
            raise InferenceError(
                f"inference: {origin} has sha256 {digest}, expected {spec.sha256} for model "
                f"{name!r}; the file is corrupt or a different version"
            )
        try:
            # From the bytes just hashed, so what runs is what was checked.
            session = ort.InferenceSession(
                data, session_options(self._shared_pool, self._optimize), providers=self._providers
            )
        except Exception as exc:
            raise InferenceError(
                f"inference: onnxruntime cannot load model {name!r} from {origin}: {exc}"
            ) from exc
        got_in = [i.name for i in session.get_inputs()]
        got_out = [o.name for o in session.get_outputs()]
        if sorted(got_in) != sorted(spec.input_names) or sorted(got_out) != sorted(spec.output_names):
            raise InferenceError(
                f"inference: model {name!r} has inputs {got_in} and outputs {got_out}, but its "
                f"spec says {spec.input_names} and {spec.output_names}"
            )
        with self._lock:
            self._models[name] = _Loaded(spec, session)

    def run(self, name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate ``inputs`` and run model ``name``; blocking, thread-safe."""
        with self._lock:
            loaded = self._models.get(name)
        if loaded is None:
            raise InferenceError(f"inference: model {name!r} is not loaded on this node")
        validate_inputs(loaded.spec, inputs)
        names = loaded.spec.output_names
        try:
            outputs = loaded.session.run(names, dict(inputs))
        except Exception as exc:
            raise InferenceError(f"inference: model {name!r} failed to run: {exc}") from exc
        return dict(zip(names, outputs))


# -- int8 variants -----------------------------------------------------------------
# onnxruntime.quantization lives here because this is the one module that may
# import onnxruntime (tests/unit/test_layering.py); inference/quantize.py builds
# on these two calls. It is imported lazily: it pulls in extra modules that a
# node which never quantizes need not load.


def _drop_preprocess_advice(record: logging.LogRecord) -> bool:
    """Logging filter: drop the quantizer's per-call advice to pre-process the model."""
    return "pre-process" not in record.getMessage()


def _quantize_to_bytes(model: bytes, quantize) -> bytes:
    """Run ``quantize(input_path, output_path)`` on ``model`` in a scratch dir; the output's bytes."""
    with tempfile.TemporaryDirectory(prefix="meshnode-quant-") as scratch:
        src, dst = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        src.write_bytes(model)
        # The quantizer logs "consider pre-processing" through the root logger
        # itself; a filter on the root logger sees only such direct calls, not
        # records propagated from our named loggers.
        logging.root.addFilter(_drop_preprocess_advice)
        try:
            quantize(str(src), str(dst))
        except Exception as exc:
            raise InferenceError(f"inference: onnxruntime cannot quantize this model: {exc}") from exc
        finally:
            logging.root.removeFilter(_drop_preprocess_advice)
        return dst.read_bytes()


def quantize_static_qdq(model: bytes, calibration: Iterable[Mapping[str, np.ndarray]]) -> bytes:
    """A static int8 QDQ variant of ``model``: per-channel int8 weights, uint8 activations.

    Activation ranges come from running ``calibration`` (input feeds) through
    the fp32 model with min-max calibration.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(calibration)

        def get_next(self):
            feed = next(self._feeds, None)
            return None if feed is None else dict(feed)

    return _quantize_to_bytes(model, lambda src, dst: quantize_static(
        src, dst, _Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    ))


def quantize_dynamic_int8(model: bytes) -> bytes:
    """A dynamic int8 variant of ``model`` (int8 weights, activations quantized per run); for comparison."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    return _quantize_to_bytes(model, lambda src, dst: quantize_dynamic(src, dst, weight_type=QuantType.QInt8))
