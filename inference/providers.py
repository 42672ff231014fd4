"""Which onnxruntime execution providers a node uses: preference order and name checks.

Pure (no onnxruntime import), so the config can check provider names without
loading onnxruntime; ``inference/runtime.py`` asks onnxruntime what is available
and passes that list here.
"""

from __future__ import annotations

from collections.abc import Sequence

from inference.errors import InferenceError

# Best first: dedicated inference engines, then GPU runtimes, then vendor CPU/NPU
# paths, then plain CPU. Azure's provider (present in the default CPU wheel) is
# a remote service, not local hardware, so it is never chosen on its own.
PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "MIGraphXExecutionProvider",
    "ROCMExecutionProvider",
    "OpenVINOExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "QNNExecutionProvider",
    "CPUExecutionProvider",
)

# Every provider name onnxruntime knows (``onnxruntime.get_all_providers()`` in
# 1.32, plus ROCm, removed there but still built by older wheels). A test checks
# this still covers the installed onnxruntime.
KNOWN_PROVIDERS = frozenset({
    "TensorrtExecutionProvider", "CUDAExecutionProvider", "MIGraphXExecutionProvider",
    "ROCMExecutionProvider", "OpenVINOExecutionProvider", "DnnlExecutionProvider",
    "VitisAIExecutionProvider", "QNNExecutionProvider", "NnapiExecutionProvider",
    "VSINPUExecutionProvider", "JsExecutionProvider", "CoreMLExecutionProvider",
    "DmlExecutionProvider", "RknpuExecutionProvider", "WebNNExecutionProvider",
    "WebGpuExecutionProvider", "XnnpackExecutionProvider", "CANNExecutionProvider",
    "AzureExecutionProvider", "CPUExecutionProvider",
})


def choose_providers(available: Sequence[str]) -> list[str]:
    """The available providers in preference order; CPU always last as the fallback."""
    chosen = [p for p in PROVIDER_PREFERENCE if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def unknown_providers(names: Sequence[str]) -> list[str]:
    """The names in ``names`` that are no onnxruntime execution provider (typos, say)."""
    return [n for n in names if n not in KNOWN_PROVIDERS]


def check_providers(wanted: Sequence[str], available: Sequence[str]) -> list[str]:
    """``wanted`` if every name is known and available here, else an error naming the bad ones."""
    if not wanted:
        raise InferenceError("inference: an explicit provider list must name at least one provider")
    unknown = unknown_providers(wanted)
    if unknown:
        raise InferenceError(
            f"inference: execution providers {unknown} are unknown to onnxruntime (a typo?); "
            f"known: {sorted(KNOWN_PROVIDERS)}"
        )
    missing = [p for p in wanted if p not in available]
    if missing:
        raise InferenceError(
            f"inference: execution providers {missing} are not available here; "
            f"this onnxruntime offers {list(available)}"
        )
    return list(wanted)
