"""Generated benchmark CNNs: ResNet-18- and MobileNetV2-shaped, for the partitioner and planner.

No download: graphs come from ``onnx.helper`` and weights from
``numpy.random.default_rng(seed)`` (He initialisation, so activations stay in a
sane range through the stack), serialized deterministically, so one seed gives
the same bytes on every node. BatchNorm is taken as already folded into the
convolutions (each Conv has a bias), as exporters do for inference.

* ``resnet18``: conv7x7/2 + relu, maxpool/2, four stages of two basic blocks
  (64, 128, 256, 512 channels; conv-relu-conv, add the skip, relu; a 1x1/2
  projection on the skip where the shape changes), global average pool, Gemm.
  11.7M parameters at ``width=1``, like torchvision's (He et al. 2016).
* ``mobilenet_v2``: conv3x3/2 + Clip(0, 6), seventeen inverted residual blocks
  (1x1 expand + relu6, 3x3 depthwise + relu6, linear 1x1 project, add the skip
  when the shape allows; Sandler et al. 2018, table 2), 1x1 conv to 1280 +
  relu6, global average pool, Gemm. 3.5M parameters at ``width=1``.

Both take ``image [N, 3, size, size]`` (default 64, small so tests are quick;
any multiple of 32 works) and give ``logits [N, classes]``. ``width`` scales
every channel count for lighter test variants; the topology stays the same.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference.errors import InferenceError

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# Pinned like the demo model's, so the bytes do not change with the onnx package.
OPSET = 17
IR_VERSION = 8

# MobileNetV2 table 2: expansion t, output channels c, repeats n, first stride s.
_MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class _GraphBuilder:
    """Accumulates nodes and seeded weights for one generated model."""

    def __init__(self, seed: int, width: float):
        self.rng = np.random.default_rng(seed)
        self.width = width
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def channels(self, c: int) -> int:
        """``c`` scaled by the width multiplier, at least 4."""
        return max(4, int(round(c * self.width)))

    def conv(self, name: str, x: str, c_in: int, c_out: int, k: int, stride: int = 1, group: int = 1) -> str:
        fan_in = (c_in // group) * k * k
        w = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(c_out, c_in // group, k, k)).astype(np.float32)
        b = self.rng.normal(0.0, 0.01, size=(c_out,)).astype(np.float32)
        self.inits += [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
        pad = k // 2
        self.nodes.append(helper.make_node(
            "Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.out"], name=name,
            kernel_shape=[k, k], pads=[pad] * 4, strides=[stride, stride], group=group,
        ))
        return f"{name}.out"

    def relu(self, name: str, x: str) -> str:
        self.nodes.append(helper.make_node("Relu", [x], [f"{name}.out"], name=name))
        return f"{name}.out"

    def relu6(self, name: str, x: str) -> str:
        if not any(t.name == "relu6.min" for t in self.inits):
            self.inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "relu6.min"))
            self.inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "relu6.max"))
        self.nodes.append(helper.make_node("Clip", [x, "relu6.min", "relu6.max"], [f"{name}.out"], name=name))
        return f"{name}.out"

    def add(self, name: str, a: str, b: str) -> str:
        self.nodes.append(helper.make_node("Add", [a, b], [f"{name}.out"], name=name))
        return f"{name}.out"

    def head(self, x: str, c_in: int, classes: int) -> None:
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
        self.nodes.append(helper.make_node("Flatten", ["pool"], ["features"], name="flatten", axis=1))
        w = self.rng.normal(0.0, np.sqrt(1.0 / c_in), size=(classes, c_in)).astype(np.float32)
        self.inits += [numpy_helper.from_array(w, "head.w"), numpy_helper.from_array(np.zeros(classes, np.float32), "head.b")]
        self.nodes.append(helper.make_node("Gemm", ["features", "head.w", "head.b"], [OUTPUT_NAME], name="head", transB=1))

    def model(self, name: str, size: int, classes: int, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, size, size])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", classes])],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="meshnode",
                                  producer_version="cnn-1", doc_string=doc)
        model.ir_version = IR_VERSION
        return model


def resnet18(seed: int = 0, *, size: int = 64, width: float = 1.0, classes: int = 1000) -> onnx.ModelProto:
    """A ResNet-18-shaped classifier with seeded random weights (see the module doc)."""
    _check(size, width, classes)
    g = _GraphBuilder(seed, width)
    c = g.channels(64)
    x = g.relu("stem.relu", g.conv("stem", INPUT_NAME, 3, c, 7, stride=2))
    g.nodes.append(helper.make_node("MaxPool", [x], ["stem.pool"], name="stem.pool",
                                    kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]))
    x = "stem.pool"
    for stage, base in enumerate((64, 128, 256, 512), start=1):
        c_out = g.channels(base)
        for block in range(2):
            name = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            y = g.relu(f"{name}.relu1", g.conv(f"{name}.conv1", x, c, c_out, 3, stride))
            y = g.conv(f"{name}.conv2", y, c_out, c_out, 3)
            skip = x if stride == 1 and c == c_out else g.conv(f"{name}.down", x, c, c_out, 1, stride)
            x = g.relu(f"{name}.relu2", g.add(f"{name}.add", y, skip))
            c = c_out
    g.head(x, c, classes)
    return g.model("meshnode-resnet18", size, classes, f"ResNet-18-shaped benchmark CNN, seed {seed}, width {width}")


def mobilenet_v2(seed: int = 0, *, size: int = 64, width: float = 1.0, classes: int = 1000) -> onnx.ModelProto:
    """A MobileNetV2-shaped classifier with seeded random weights (see the module doc)."""
    _check(size, width, classes)
    g = _GraphBuilder(seed, width)
    c = g.channels(32)
    x = g.relu6("stem.relu6", g.conv("stem", INPUT_NAME, 3, c, 3, stride=2))
    index = 0
    for t, base, repeats, first_stride in _MOBILENET_V2_BLOCKS:
        c_out = g.channels(base)
        for r in range(repeats):
            name = f"block{index}"
            stride = first_stride if r == 0 else 1
            hidden = c * t
            y = x if t == 1 else g.relu6(f"{name}.expand.relu6", g.conv(f"{name}.expand", x, c, hidden, 1))
            y = g.relu6(f"{name}.dw.relu6", g.conv(f"{name}.dw", y, hidden, hidden, 3, stride, group=hidden))
            y = g.conv(f"{name}.project", y, hidden, c_out, 1)  # linear bottleneck: no activation
            x = g.add(f"{name}.add", y, x) if stride == 1 and c == c_out else y
            c = c_out
            index += 1
    c_last = g.channels(1280) if width > 1.0 else 1280  # torchvision keeps 1280 below width 1
    x = g.relu6("last.relu6", g.conv("last", x, c, c_last, 1))
    g.head(x, c_last, classes)
    return g.model("meshnode-mobilenet-v2", size, classes, f"MobileNetV2-shaped benchmark CNN, seed {seed}, width {width}")


BUILDERS = {"resnet18": resnet18, "mobilenet_v2": mobilenet_v2}


def cnn_bytes(name: str, seed: int = 0, **options) -> bytes:
    """The serialized benchmark CNN ``name`` (one of ``BUILDERS``) for ``seed``; deterministic."""
    try:
        build = BUILDERS[name]
    except KeyError:
        raise InferenceError(f"inference: no generated CNN called {name!r}; choose from {sorted(BUILDERS)}") from None
    return build(seed, **options).SerializeToString(deterministic=True)


def _check(size: int, width: float, classes: int) -> None:
    if size < 32 or size % 32:
        raise InferenceError(f"inference: CNN input size must be a multiple of 32 (five stride-2 stages), got {size}")
    if not width > 0 or classes < 1:
        raise InferenceError(f"inference: CNN width must be > 0 and classes >= 1, got width {width}, classes {classes}")
