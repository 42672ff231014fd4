"""Tensor codec laws: encode/decode round-trips; anything corrupted raises RemoteProtocolError.

"A malformed message from a peer raises RemoteProtocolError" (STYLE.md, 5):
never a numpy, msgpack or Python error, and never a silently wrong array.
"""

from __future__ import annotations

import copy
from typing import Any

import msgpack
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from crdt.errors import RemoteProtocolError
from inference import (
    WIRE_DTYPES,
    InferReply,
    InferRequest,
    ModelSpec,
    decode_tensors,
    encode_tensors,
)

dtypes = st.sampled_from(sorted(WIRE_DTYPES)).flatmap(
    lambda name: st.sampled_from([np.dtype(name), np.dtype(name).newbyteorder(">")])
)
arrays = dtypes.flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
)
names = st.text(min_size=1, max_size=8)
tensor_maps = st.dictionaries(names, arrays, max_size=4)

# Anything msgpack can carry, for corrupting fields and whole messages.
wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def through_msgpack(obj: Any) -> Any:
    return msgpack.unpackb(msgpack.packb(obj, use_bin_type=True), raw=False, strict_map_key=False)


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    # Byte-for-byte, so NaNs and -0.0 count as preserved only if they are.
    return (
        a.shape == b.shape
        and a.dtype.name == b.dtype.name
        and np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes() == b.tobytes()
    )


@settings(max_examples=150, deadline=None)
@given(tensor_maps)
def test_round_trip_through_msgpack(tensors: dict[str, np.ndarray]) -> None:
    back = decode_tensors(through_msgpack(encode_tensors(tensors)))
    assert set(back) == set(tensors)
    for name, array in tensors.items():
        assert same_array(array, back[name])


@settings(max_examples=50, deadline=None)
@given(tensor_maps, st.floats(min_value=1e-3, max_value=1e6), st.integers(0, 8), names)
def test_request_and_reply_round_trip(tensors, deadline_s, hops, model) -> None:
    req = InferRequest.from_wire(through_msgpack(InferRequest(model, tensors, deadline_s, hops).to_wire()))
    assert (req.model, req.deadline_s, req.hops) == (model, deadline_s, hops)
    assert all(same_array(tensors[n], req.inputs[n]) for n in tensors)
    rep = InferReply.from_wire(through_msgpack(InferReply(tensors, model, deadline_s).to_wire()))
    assert all(same_array(tensors[n], rep.outputs[n]) for n in tensors)


def decodes_or_refuses(wire: Any, max_bytes: int = 1 << 20) -> None:
    """The property: a valid result or RemoteProtocolError, nothing else."""
    try:
        out = decode_tensors(wire, max_bytes=max_bytes)
    except RemoteProtocolError as exc:
        assert str(exc).startswith("inference: ")
        return
    for name, array in out.items():
        entry = wire[name]
        assert array.dtype.name == entry["dtype"]
        assert list(array.shape) == list(entry["shape"])
        assert array.nbytes == len(entry["data"])
        if array.dtype == np.bool_:
            assert set(np.frombuffer(array.tobytes(), np.uint8).tolist()) <= {0, 1}


@settings(max_examples=300, deadline=None)
@given(
    tensor_maps.filter(bool),
    st.sampled_from(["dtype", "shape", "data", "drop", "extra", "entry"]),
    wire_values,
    st.data(),
)
def test_a_corrupted_field_raises_remote_protocol_error(tensors, where, junk, data) -> None:
    wire = through_msgpack(encode_tensors(tensors))
    name = data.draw(st.sampled_from(sorted(wire)))
    entry = wire[name]
    if where == "drop":
        del entry[data.draw(st.sampled_from(sorted(entry)))]
    elif where == "extra":
        entry[data.draw(st.text(max_size=6))] = junk
    elif where == "entry":
        wire[name] = junk
    else:
        entry[where] = junk
    decodes_or_refuses(wire)


@settings(max_examples=200, deadline=None)
@given(tensor_maps.filter(bool), st.data())
def test_resized_data_or_shape_is_refused(tensors, data) -> None:
    wire = through_msgpack(encode_tensors(tensors))
    name = data.draw(st.sampled_from(sorted(wire)))
    entry = wire[name]
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(entry["data"]) + 9))
        entry["data"] = (entry["data"] + b"\x01" * 9)[:cut]
    else:
        entry["shape"] = data.draw(st.lists(st.integers(-3, 2**40), max_size=5))
    decodes_or_refuses(wire)


@settings(max_examples=300, deadline=None)
@given(wire_values)
def test_arbitrary_values_never_raise_anything_else(junk) -> None:
    decodes_or_refuses(junk)
    decodes_or_refuses({"t": junk})
    for parse in (InferRequest.from_wire, InferReply.from_wire, ModelSpec.from_wire):
        try:
            parse(junk)
        except RemoteProtocolError:
            pass


@settings(max_examples=100, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "model": wire_values,
            "inputs": st.just({}) | wire_values,
            "deadline_s": st.floats() | wire_values,
            "hops": st.integers(-5, 20) | wire_values,
        }
    )
)
def test_request_fields_are_each_validated(wire) -> None:
    try:
        req = InferRequest.from_wire(copy.deepcopy(wire))
    except RemoteProtocolError:
        return
    assert isinstance(req.model, str) and req.model
    assert 0 < req.deadline_s < float("inf") and 0 <= req.hops


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(WIRE_DTYPES)),
    st.lists(st.integers(0, 4), max_size=3),
    st.data(),
)
def test_random_bytes_of_the_right_length(dtype, shape, data) -> None:
    # Right size, arbitrary content: fine for numbers, but a bool byte other
    # than 0/1 must be refused rather than turned into a "bool" numpy misreads.
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    blob = data.draw(st.binary(min_size=size, max_size=size))
    decodes_or_refuses({"t": {"dtype": dtype, "shape": shape, "data": blob}})
