"""A small generated image classifier, the model every demo and test can rely on.

It needs no download: the graph is built with ``onnx.helper`` and the weights
come from ``numpy.random.default_rng(seed)``, so the same seed always gives the
same bytes (and so the same sha256 on every node). The shape is a tiny ResNet:

    image [N,3,32,32] -> conv3x3(16)+relu
      -> conv3x3(16)+relu -> conv3x3(16) -> add(skip) -> relu     (residual block)
      -> conv3x3 stride 2 (32)+relu -> [N,32,16,16]
      -> conv3x3(32)+relu -> global average pool -> flatten -> gemm(10) -> softmax
      -> probs [N,10]

It runs in a few milliseconds on one CPU core, and its single-tensor cut points
(after each block) make it a useful subject for the partitioner later.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_NAME = "image"
OUTPUT_NAME = "probs"
NUM_CLASSES = 10
# Pinned so the bytes do not change when the installed onnx package does.
OPSET = 17
IR_VERSION = 8


def build_demo_model(path: Path, seed: int = 0) -> Path:
    """Write the demo classifier for ``seed`` to ``path`` and return ``path``."""
    path = Path(path)
    data = demo_model_bytes(seed)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # readers never see a half-written model
    return path


def demo_model_bytes(seed: int = 0) -> bytes:
    """The serialized demo classifier for ``seed`` (deterministic)."""
    model = _demo_model(seed)
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def _demo_model(seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def conv(name: str, x: str, c_in: int, c_out: int, stride: int = 1, relu: bool = True) -> str:
        # He initialisation keeps activations in a sane range through the stack.
        fan_in = c_in * 9
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(c_out, c_in, 3, 3)).astype(np.float32)
        b = rng.normal(0.0, 0.01, size=(c_out,)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"{name}.w"))
        inits.append(numpy_helper.from_array(b, f"{name}.b"))
        out = f"{name}.out"
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}.w", f"{name}.b"],
                [out],
                name=name,
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
                strides=[stride, stride],
            )
        )
        if not relu:
            return out
        nodes.append(helper.make_node("Relu", [out], [f"{name}.relu"], name=f"{name}.relu"))
        return f"{name}.relu"

    x = conv("stem", INPUT_NAME, 3, 16)
    y = conv("block1.a", x, 16, 16)
    y = conv("block1.b", y, 16, 16, relu=False)
    nodes.append(helper.make_node("Add", [y, x], ["block1.add"], name="block1.add"))
    nodes.append(helper.make_node("Relu", ["block1.add"], ["block1.out"], name="block1.relu"))
    x = conv("down", "block1.out", 16, 32, stride=2)
    x = conv("block2", x, 32, 32)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pool"], ["features"], name="flatten", axis=1))
    w = rng.normal(0.0, np.sqrt(1.0 / 32), size=(NUM_CLASSES, 32)).astype(np.float32)
    b = np.zeros((NUM_CLASSES,), dtype=np.float32)
    inits.append(numpy_helper.from_array(w, "head.w"))
    inits.append(numpy_helper.from_array(b, "head.b"))
    nodes.append(
        helper.make_node("Gemm", ["features", "head.w", "head.b"], ["logits"], name="head", transB=1)
    )
    nodes.append(helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], name="softmax", axis=-1))

    graph = helper.make_graph(
        nodes,
        "meshnode-demo-classifier",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", NUM_CLASSES])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="meshnode",
        producer_version="demo-1",
        doc_string=f"meshnode demo classifier, seed {seed}",
    )
    model.ir_version = IR_VERSION
    return model
