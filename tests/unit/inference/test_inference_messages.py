"""Tensor codec and request/reply messages: examples and a golden vector."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from crdt.errors import LocalProtocolError, RemoteProtocolError
from inference import InferReply, InferRequest, decode_tensors, encode_tensors


def test_golden_vector_pins_the_wire_format() -> None:
    # Little-endian, C order, shape as a list: changing any of this breaks
    # nodes running the previous version.
    wire = encode_tensors({"x": np.array([[1, -2]], dtype=">i2")})
    assert wire == {"x": {"dtype": "int16", "shape": [1, 2], "data": b"\x01\x00\xfe\xff"}}
    packed = msgpack.packb(wire, use_bin_type=True)
    assert packed.hex() == (
        "81" "a178"  # {"x":
        "83" "a56474797065" "a5696e743136"  # {"dtype": "int16",
        "a57368617065" "920102"  # "shape": [1, 2],
        "a464617461" "c404" "0100feff"  # "data": bin(4)}}
    )


def test_non_contiguous_and_big_endian_arrays_round_trip() -> None:
    a = np.arange(24, dtype=">f8").reshape(2, 3, 4)[:, ::2, 1:]
    back = decode_tensors(encode_tensors({"a": a}))["a"]
    assert back.shape == a.shape
    assert np.array_equal(back, a)


def test_decoded_arrays_are_read_only_views() -> None:
    back = decode_tensors(encode_tensors({"a": np.zeros(3, np.float32)}))["a"]
    assert not back.flags.writeable


def test_unsupported_dtype_is_refused_on_encode() -> None:
    with pytest.raises(LocalProtocolError, match="complex64"):
        encode_tensors({"a": np.zeros(2, np.complex64)})
    with pytest.raises(LocalProtocolError, match="numpy array"):
        encode_tensors({"a": [1, 2]})


def test_size_limit_counts_all_tensors_together() -> None:
    wire = encode_tensors({"a": np.zeros(100, np.uint8), "b": np.zeros(100, np.uint8)})
    assert set(decode_tensors(wire, max_bytes=200)) == {"a", "b"}
    with pytest.raises(RemoteProtocolError, match="199-byte limit"):
        decode_tensors(wire, max_bytes=199)


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"dtype": "object", "shape": [1], "data": b"\0" * 8}, "dtype 'object'"),
        ({"dtype": "float32", "shape": [-1], "data": b""}, "shape"),
        ({"dtype": "float32", "shape": [2], "data": b"\0" * 7}, "7 data bytes, expected 8"),
        ({"dtype": "float32", "shape": [2], "data": "text"}, "must be bytes"),
        ({"dtype": "bool", "shape": [2], "data": b"\x01\x02"}, "bool bytes"),
        ({"dtype": "uint8", "shape": [0, 2**70], "data": b""}, "cannot be built"),
        ({"dtype": "uint8", "shape": [1], "data": b"\0", "x": 1}, "keys"),
    ],
)
def test_malformed_tensor_entries(entry: dict, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError, match="^inference: ") as info:
        decode_tensors({"t": entry})
    assert fragment in str(info.value)


def test_request_and_reply_round_trip_through_msgpack() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    req = InferRequest(model="demo", inputs={"image": x}, deadline_s=1.5, hops=1)
    wire = msgpack.unpackb(msgpack.packb(req.to_wire(), use_bin_type=True), raw=False)
    back = InferRequest.from_wire(wire)
    assert (back.model, back.deadline_s, back.hops) == ("demo", 1.5, 1)
    assert np.array_equal(back.inputs["image"], x)

    rep = InferReply(outputs={"probs": x}, ran_on="peer-a", elapsed_ms=3.25)
    back_rep = InferReply.from_wire(msgpack.unpackb(msgpack.packb(rep.to_wire(), use_bin_type=True), raw=False))
    assert (back_rep.ran_on, back_rep.elapsed_ms) == ("peer-a", 3.25)
    assert np.array_equal(back_rep.outputs["probs"], x)


@pytest.mark.parametrize(
    "wire",
    [
        {"model": "", "inputs": {}, "deadline_s": 1.0, "hops": 0},
        {"model": "m", "inputs": {}, "deadline_s": 0.0, "hops": 0},
        {"model": "m", "inputs": {}, "deadline_s": float("inf"), "hops": 0},
        {"model": "m", "inputs": {}, "deadline_s": 1.0, "hops": 99},
        {"model": "m", "inputs": {}, "deadline_s": 1.0, "hops": True},
        {"model": "m", "inputs": [], "deadline_s": 1.0, "hops": 0},
        {"model": "m", "inputs": {}, "deadline_s": 1.0},
        "not a map",
    ],
)
def test_malformed_requests(wire: object) -> None:
    with pytest.raises(RemoteProtocolError, match="^inference: "):
        InferRequest.from_wire(wire)


def test_messages_validate_when_built() -> None:
    with pytest.raises(LocalProtocolError):
        InferRequest("m", {}, -1.0, 0)
    with pytest.raises(LocalProtocolError):
        InferReply({}, "peer", -0.5)
