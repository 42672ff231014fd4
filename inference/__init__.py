"""Running ONNX models on a node, and the data the mesh needs to share that work.

The mesh layer uses exactly the names in ``__all__``: model specs and input
checks (``spec``), the tensor and request codecs (``messages``), the
onnxruntime wrapper (``runtime``), the
result cache (``result_cache``) and a generated demo model (``demo_model``).
"""

from inference.demo_model import build_demo_model
from inference.errors import InferenceError, InvalidInput, Overloaded
from inference.messages import (
    MAX_HOPS,
    MAX_TENSOR_BYTES,
    WIRE_DTYPES,
    InferReply,
    InferRequest,
    ModelSpec,
    TensorSpec,
    decode_tensors,
    encode_tensors,
)
from inference.result_cache import ResultCache, result_key
from inference.runtime import Runtime
from inference.spec import read_model_spec, validate_inputs

__all__ = [
    "MAX_HOPS",
    "MAX_TENSOR_BYTES",
    "WIRE_DTYPES",
    "InferReply",
    "InferRequest",
    "InferenceError",
    "InvalidInput",
    "ModelSpec",
    "Overloaded",
    "ResultCache",
    "Runtime",
    "TensorSpec",
    "build_demo_model",
    "decode_tensors",
    "encode_tensors",
    "read_model_spec",
    "result_key",
    "validate_inputs",
]
