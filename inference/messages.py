"""Wire messages of the inference package: model specs, tensors, requests, replies.

Everything here is plain data that crosses a process boundary (msgpack over the
mesh RPC, or the Raft model registry). Each type builds from keywords or
positionally, validates itself when built (our own misuse raises
``LocalProtocolError``) and has ``to_wire()`` / ``from_wire()``; anything
malformed from a peer raises ``RemoteProtocolError`` and nothing else.

Tensor wire format (version 1), one entry per tensor name::

    {name: {"dtype": "float32", "shape": [2, 3], "data": <bytes>}}

``data`` is the C-order, little-endian bytes of the array. Only the dtypes in
``WIRE_DTYPES`` travel: fixed-size numbers and bool, nothing that numpy would
have to interpret as objects. Decoded arrays are read-only views of the
received bytes (no copy); copy them before writing into them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crdt.errors import LocalProtocolError, RemoteProtocolError

WIRE_DTYPES = frozenset(
    ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]
)
# The mesh RPC refuses frames over 16 MiB (mesh.wire.MAX_FRAME); tensors bigger
# than that need a side channel anyway.
MAX_TENSOR_BYTES = 16 * 1024 * 1024
MAX_RANK = 32  # numpy allows 64; no model we carry comes close
MAX_HOPS = 8  # an offloaded request may be passed on at most this many times
MAX_PARTITIONS = 16  # partitions a served model is cut into, at most (inference/serving.py)
# What a model may declare: the numpy-native ONNX element types ("object" is
# ONNX STRING). bfloat16, float8 and int4 need ml_dtypes and are not supported.
SPEC_DTYPES = WIRE_DTYPES | frozenset(["uint16", "uint32", "uint64", "complex64", "complex128", "object"])
_SHA256_HEX = frozenset("0123456789abcdef")

Dim = int | str | None
Tensors = dict[str, np.ndarray]


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A declared model input or output: name, numpy dtype name and shape.

    A dimension is a fixed ``int``, a symbolic name such as ``"N"`` (the same
    symbol means the same size everywhere in one call) or ``None`` (unknown).
    ``shape`` itself is ``None`` when the model does not declare a rank.
    """

    name: str
    dtype: str
    shape: tuple[Dim, ...] | None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise LocalProtocolError(f"inference: tensor name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.dtype, str) or self.dtype not in SPEC_DTYPES:
            raise LocalProtocolError(
                f"inference: tensor {self.name!r} dtype must be one of {sorted(SPEC_DTYPES)}, "
                f"got {self.dtype!r}"
            )
        if self.shape is None:
            return
        if isinstance(self.shape, list):
            object.__setattr__(self, "shape", tuple(self.shape))
        if not isinstance(self.shape, tuple) or len(self.shape) > MAX_RANK:
            raise LocalProtocolError(
                f"inference: tensor {self.name!r} shape must be a tuple of at most "
                f"{MAX_RANK} dims, got {self.shape!r}"
            )
        for dim in self.shape:
            ok = (
                dim is None
                or (isinstance(dim, str) and dim != "")
                or (type(dim) is int and dim >= 0)
            )
            if not ok:
                raise LocalProtocolError(
                    f"inference: tensor {self.name!r} has bad dim {dim!r}; expected a "
                    "non-negative int, a symbol name or None"
                )

    def to_wire(self) -> dict[str, Any]:
        """A msgpack-able dict."""
        shape = None if self.shape is None else list(self.shape)
        return {"name": self.name, "dtype": self.dtype, "shape": shape}

    @classmethod
    def from_wire(cls, obj: Any) -> TensorSpec:
        """Parse a peer's dict; RemoteProtocolError if malformed."""
        fields = _exact_keys(obj, ("name", "dtype", "shape"), "tensor spec")
        shape = fields["shape"]
        if shape is not None and not isinstance(shape, (list, tuple)):
            raise RemoteProtocolError(f"inference: tensor spec shape must be a list, got {shape!r}")
        try:
            return cls(
                fields["name"], fields["dtype"], None if shape is None else tuple(shape)
            )
        except LocalProtocolError as exc:
            raise RemoteProtocolError(str(exc)) from None

    def format_shape(self) -> str:
        """The shape as people write it, e.g. ``[N, 3, 32, 32]``."""
        if self.shape is None:
            return "[any rank]"
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What identifies a model and how to call it: content hash, size, inputs, outputs."""

    sha256: str
    size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def __post_init__(self) -> None:
        if not (
            isinstance(self.sha256, str)
            and len(self.sha256) == 64
            and set(self.sha256) <= _SHA256_HEX
        ):
            raise LocalProtocolError(
                f"inference: sha256 must be 64 lowercase hex digits, got {self.sha256!r}"
            )
        if type(self.size) is not int or self.size < 0:
            raise LocalProtocolError(f"inference: model size must be an int >= 0, got {self.size!r}")
        for kind in ("inputs", "outputs"):
            specs = getattr(self, kind)
            if isinstance(specs, list):
                specs = tuple(specs)
                object.__setattr__(self, kind, specs)
            if not isinstance(specs, tuple) or not all(isinstance(s, TensorSpec) for s in specs):
                raise LocalProtocolError(f"inference: model {kind} must be a tuple of TensorSpec")
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                raise LocalProtocolError(f"inference: model {kind} have duplicate names: {names}")
        if not self.outputs:
            raise LocalProtocolError("inference: a model must have at least one output")

    @property
    def input_names(self) -> list[str]:
        """Input names in declaration order."""
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        """Output names in declaration order."""
        return [s.name for s in self.outputs]

    def to_wire(self) -> dict[str, Any]:
        """A msgpack-able dict."""
        return {
            "sha256": self.sha256,
            "size": self.size,
            "inputs": [s.to_wire() for s in self.inputs],
            "outputs": [s.to_wire() for s in self.outputs],
        }

    @classmethod
    def from_wire(cls, obj: Any) -> ModelSpec:
        """Parse a peer's dict; RemoteProtocolError if malformed."""
        fields = _exact_keys(obj, ("sha256", "size", "inputs", "outputs"), "model spec")
        parsed = {}
        for kind in ("inputs", "outputs"):
            if not isinstance(fields[kind], (list, tuple)):
                raise RemoteProtocolError(f"inference: model spec {kind} must be a list")
            parsed[kind] = tuple(TensorSpec.from_wire(s) for s in fields[kind])
        try:
            return cls(fields["sha256"], fields["size"], parsed["inputs"], parsed["outputs"])
        except LocalProtocolError as exc:
            raise RemoteProtocolError(str(exc)) from None


# --------------------------------------------------------------------------- tensors


def encode_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Tensors as a msgpack-able dict (see the module docstring for the format)."""
    out: dict[str, dict[str, Any]] = {}
    for name, array in tensors.items():
        if not isinstance(name, str) or not name:
            raise LocalProtocolError(f"inference: tensor names must be non-empty str, got {name!r}")
        if not isinstance(array, np.ndarray):
            raise LocalProtocolError(
                f"inference: tensor {name!r} must be a numpy array, got {type(array).__name__}"
            )
        dtype = array.dtype.name
        if dtype not in WIRE_DTYPES:
            raise LocalProtocolError(
                f"inference: tensor {name!r} has dtype {dtype}, which cannot travel; "
                f"allowed: {sorted(WIRE_DTYPES)}"
            )
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        out[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data": np.ascontiguousarray(little).tobytes(),
        }
    return out


def decode_tensors(obj: Any, max_bytes: int = MAX_TENSOR_BYTES) -> Tensors:
    """Parse a peer's tensor dict; RemoteProtocolError on anything malformed.

    ``max_bytes`` bounds the total data of all tensors together.
    """
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"inference: tensors must be a map, got {type(obj).__name__}")
    total = 0
    out: Tensors = {}
    for name, entry in obj.items():
        if not isinstance(name, str) or not name:
            raise RemoteProtocolError(f"inference: tensor names must be non-empty str, got {name!r}")
        fields = _exact_keys(entry, ("dtype", "shape", "data"), f"tensor {name!r}")
        dtype, shape, data = fields["dtype"], fields["shape"], fields["data"]
        if not isinstance(dtype, str) or dtype not in WIRE_DTYPES:
            raise RemoteProtocolError(
                f"inference: tensor {name!r} has dtype {dtype!r}; allowed: {sorted(WIRE_DTYPES)}"
            )
        if (
            not isinstance(shape, (list, tuple))
            or len(shape) > MAX_RANK
            or not all(type(d) is int and d >= 0 for d in shape)
        ):
            raise RemoteProtocolError(
                f"inference: tensor {name!r} shape must be a list of at most {MAX_RANK} "
                f"non-negative ints, got {shape!r}"
            )
        if not isinstance(data, (bytes, bytearray)):
            raise RemoteProtocolError(
                f"inference: tensor {name!r} data must be bytes, got {type(data).__name__}"
            )
        wire_dtype = np.dtype(dtype).newbyteorder("<")
        expected = math.prod(shape) * wire_dtype.itemsize
        if len(data) != expected:
            raise RemoteProtocolError(
                f"inference: tensor {name!r} has {len(data)} data bytes, expected {expected} "
                f"for {dtype} {list(shape)}"
            )
        total += expected
        if total > max_bytes:
            raise RemoteProtocolError(
                f"inference: tensors exceed the {max_bytes}-byte limit (tensor {name!r})"
            )
        if dtype == "bool" and data and np.frombuffer(data, dtype=np.uint8).max() > 1:
            # numpy would accept other byte values and produce bools that are
            # neither True nor False.
            raise RemoteProtocolError(f"inference: tensor {name!r} holds bool bytes other than 0/1")
        try:
            out[name] = np.frombuffer(data, dtype=wire_dtype).reshape(shape)
        except (ValueError, OverflowError, MemoryError) as exc:
            raise RemoteProtocolError(f"inference: tensor {name!r} cannot be built: {exc}") from None
    return out


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True, eq=False)
class InferRequest:
    """Run ``model`` on ``inputs``; sent to a peer when offloading.

    ``deadline_s`` is the time budget left when the request was sent, in
    seconds (monotonic clocks do not agree between machines, so it is relative);
    ``hops`` counts how often the request has been passed on already.

    Added later as optional wire keys (an older sender omits them):
    ``request_id`` names the request so a server that receives it twice (a
    retry over a new connection) runs it once; ``start`` > 0 asks for the
    model's partitions ``start..K-1`` only, fed the activation at boundary
    ``start`` (split execution), and then ``cuts`` must be the signature of the
    cut list the sender split at (``inference.serving.cut_signature``), so both
    ends agree on what boundary ``start`` is; ``sha256`` is the model file the
    sender means (a node with another version refuses rather than answer for it).
    """

    model: str
    inputs: Tensors = field(repr=False)
    deadline_s: float
    hops: int = 0
    request_id: str = ""
    start: int = 0
    cuts: str = ""
    sha256: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise LocalProtocolError(f"inference: model name must be a non-empty str, got {self.model!r}")
        if not isinstance(self.inputs, dict):
            raise LocalProtocolError("inference: request inputs must be a dict of numpy arrays")
        if (
            not isinstance(self.deadline_s, (int, float))
            or isinstance(self.deadline_s, bool)
            or not math.isfinite(self.deadline_s)
            or self.deadline_s <= 0
        ):
            raise LocalProtocolError(
                f"inference: deadline_s must be a finite number of seconds > 0, got {self.deadline_s!r}"
            )
        if type(self.hops) is not int or not 0 <= self.hops <= MAX_HOPS:
            raise LocalProtocolError(f"inference: hops must be an int in [0, {MAX_HOPS}], got {self.hops!r}")
        for name, limit in (("request_id", 64), ("cuts", 128), ("sha256", 64)):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > limit:
                raise LocalProtocolError(f"inference: {name} must be a str of at most {limit} chars, got {value!r}")
        if type(self.start) is not int or not 0 <= self.start <= MAX_PARTITIONS:
            raise LocalProtocolError(f"inference: start must be an int in [0, {MAX_PARTITIONS}], got {self.start!r}")
        if self.start > 0 and not self.cuts:
            raise LocalProtocolError("inference: a request for partitions from start > 0 must name its cuts")

    def to_wire(self) -> dict[str, Any]:
        """A msgpack-able dict (the optional keys only when set)."""
        wire: dict[str, Any] = {
            "model": self.model,
            "inputs": encode_tensors(self.inputs),
            "deadline_s": float(self.deadline_s),
            "hops": self.hops,
        }
        for key, value in (("id", self.request_id), ("start", self.start), ("cuts", self.cuts),
                           ("sha256", self.sha256)):
            if value:
                wire[key] = value
        return wire

    @classmethod
    def from_wire(cls, obj: Any, max_bytes: int = MAX_TENSOR_BYTES) -> InferRequest:
        """Parse a peer's dict; RemoteProtocolError if malformed."""
        fields = _keys(obj, ("model", "inputs", "deadline_s", "hops"), ("id", "start", "cuts", "sha256"),
                       "infer request")
        inputs = decode_tensors(fields["inputs"], max_bytes)
        try:
            return cls(fields["model"], inputs, fields["deadline_s"], fields["hops"],
                       request_id=fields.get("id", ""), start=fields.get("start", 0),
                       cuts=fields.get("cuts", ""), sha256=fields.get("sha256", ""))
        except LocalProtocolError as exc:
            raise RemoteProtocolError(str(exc)) from None


@dataclass(frozen=True, slots=True, eq=False)
class InferReply:
    """The outputs of a request, which node ran it, how long the run took and how long it waited there first.

    ``waited_ms`` (an optional wire key, added later) is the server's queue
    wait: the caller subtracts both from its wall time to learn the link's cost.
    """

    outputs: Tensors = field(repr=False)
    ran_on: str
    elapsed_ms: float
    waited_ms: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.outputs, dict):
            raise LocalProtocolError("inference: reply outputs must be a dict of numpy arrays")
        if not isinstance(self.ran_on, str) or not self.ran_on:
            raise LocalProtocolError(f"inference: ran_on must be a non-empty str, got {self.ran_on!r}")
        if (
            not isinstance(self.elapsed_ms, (int, float))
            or isinstance(self.elapsed_ms, bool)
            or not math.isfinite(self.elapsed_ms)
            or self.elapsed_ms < 0
        ):
            raise LocalProtocolError(
                f"inference: elapsed_ms must be a finite number >= 0, got {self.elapsed_ms!r}"
            )
        w = self.waited_ms
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
            raise LocalProtocolError(f"inference: waited_ms must be a finite number >= 0, got {w!r}")

    def to_wire(self) -> dict[str, Any]:
        """A msgpack-able dict."""
        return {
            "outputs": encode_tensors(self.outputs),
            "ran_on": self.ran_on,
            "elapsed_ms": float(self.elapsed_ms),
            "waited_ms": float(self.waited_ms),
        }

    @classmethod
    def from_wire(cls, obj: Any, max_bytes: int = MAX_TENSOR_BYTES) -> InferReply:
        """Parse a peer's dict; RemoteProtocolError if malformed."""
        fields = _keys(obj, ("outputs", "ran_on", "elapsed_ms"), ("waited_ms",), "infer reply")
        outputs = decode_tensors(fields["outputs"], max_bytes)
        try:
            return cls(outputs, fields["ran_on"], fields["elapsed_ms"], fields.get("waited_ms", 0.0))
        except LocalProtocolError as exc:
            raise RemoteProtocolError(str(exc)) from None


# --------------------------------------------------------------------------- helpers


def _keys(obj: Any, required: tuple[str, ...], optional: tuple[str, ...], what: str) -> dict[str, Any]:
    """``obj`` as a dict with every key of ``required`` and no key outside ``required + optional``."""
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"inference: {what} must be a map, got {type(obj).__name__}")
    missing = [k for k in required if k not in obj]
    extra = sorted(repr(k) for k in obj if k not in required and k not in optional)
    if missing or extra:
        shown = ", ".join(extra[:10]) + (", ..." if len(extra) > 10 else "")
        raise RemoteProtocolError(
            f"inference: {what} must have keys {sorted(required)} (optional {sorted(optional)}); "
            f"missing {missing}, unknown [{shown}]"
        )
    return obj


def _exact_keys(obj: Any, keys: tuple[str, ...], what: str) -> dict[str, Any]:
    """``obj`` as a dict with exactly ``keys``, or RemoteProtocolError."""
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"inference: {what} must be a map, got {type(obj).__name__}")
    if set(obj) != set(keys):
        got = sorted(map(repr, obj))
        shown = ", ".join(got[:10]) + (", ..." if len(got) > 10 else "")
        raise RemoteProtocolError(f"inference: {what} must have keys {sorted(keys)}, got [{shown}]")
    return obj



# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True, slots=True, kw_only=True)
class PartProfile:
    """A node's measured figures for one model cut into ``len(compute_ms)`` partitions (carried in adverts).

    ``cuts`` is the cut-list signature (``inference.serving.cut_signature``):
    two nodes' figures describe the same partitions only when it matches.
    ``compute_ms`` per partition, ``memory_bytes`` per partition (its weights),
    ``boundary_bytes`` per boundary (input, each cut, output; fp32 bytes for
    one item).
    """

    cuts: str
    compute_ms: tuple[float, ...]
    memory_bytes: tuple[int, ...]
    boundary_bytes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.cuts, str) or not 0 < len(self.cuts) <= 128:
            raise LocalProtocolError(f"inference: profile cuts must be a signature of 1..128 chars, got {self.cuts!r}")
        k = len(self.compute_ms) if isinstance(self.compute_ms, tuple) else -1
        if not 1 <= k <= MAX_PARTITIONS or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= 86_400_000
            for x in self.compute_ms
        ):
            raise LocalProtocolError(
                f"inference: profile compute_ms must be 1..{MAX_PARTITIONS} finite ms >= 0, got {self.compute_ms!r}"
            )
        for name, want in (("memory_bytes", k), ("boundary_bytes", k + 1)):
            value = getattr(self, name)
            if not (isinstance(value, tuple) and len(value) == want
                    and all(type(x) is int and 0 <= x < 2**48 for x in value)):
                raise LocalProtocolError(f"inference: profile {name} must be {want} ints >= 0, got {value!r}")

    @property
    def partitions(self) -> int:
        """How many partitions were measured."""
        return len(self.compute_ms)

    @property
    def whole_ms(self) -> float:
        """The whole model's compute time (the sum of its partitions')."""
        return math.fsum(self.compute_ms)

    def to_wire(self) -> dict[str, Any]:
        """A msgpack-able dict."""
        return {"cuts": self.cuts, "ms": list(self.compute_ms), "mem": list(self.memory_bytes),
                "bytes": list(self.boundary_bytes)}

    @classmethod
    def from_wire(cls, obj: Any) -> PartProfile:
        """Parse a peer's dict; RemoteProtocolError if malformed."""
        fields = _exact_keys(obj, ("cuts", "ms", "mem", "bytes"), "part profile")
        if not all(isinstance(fields[k], list) for k in ("ms", "mem", "bytes")):
            raise RemoteProtocolError("inference: part profile ms, mem and bytes must be lists")
        try:
            return cls(cuts=fields["cuts"], compute_ms=tuple(float(x) if type(x) is int else x for x in fields["ms"]),
                       memory_bytes=tuple(fields["mem"]), boundary_bytes=tuple(fields["bytes"]))
        except LocalProtocolError as exc:
            raise RemoteProtocolError(str(exc)) from None
