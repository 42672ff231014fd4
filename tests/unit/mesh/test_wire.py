"""The RPC frame codec: round trips, limits and malformed frames (RemoteProtocolError, never a crash)."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, strategies as st

from crdt.errors import LocalProtocolError, RemoteProtocolError
from mesh.wire import FrameDecoder, Note, Reply, Request, decode_envelope, encode_envelope

bodies = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20) | st.binary(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
envelopes = st.one_of(
    st.builds(Request, id=st.integers(0, 2**32), method=st.text(min_size=1, max_size=20), body=bodies),
    st.builds(Reply, id=st.integers(0, 2**32), ok=st.just(True), body=bodies),
    st.builds(Reply, id=st.integers(0, 2**32), ok=st.just(False), error=st.text(max_size=30)),
    st.builds(Note, method=st.text(min_size=1, max_size=20), body=bodies),
)


@given(st.lists(envelopes, max_size=5), st.integers(1, 64))
def test_frames_round_trip_through_any_chunking(envs, chunk):
    data = b"".join(encode_envelope(e) for e in envs)
    dec = FrameDecoder()
    got = []
    for i in range(0, len(data), chunk):
        got += dec.feed(data[i : i + chunk])
    assert got == envs and dec.buffered() == 0


def test_oversized_frame_is_refused_both_ways():
    with pytest.raises(LocalProtocolError, match="frame limit"):
        encode_envelope(Note(method="x", body=b"a" * 100), max_frame=50)
    with pytest.raises(RemoteProtocolError, match="over the"):
        FrameDecoder(max_frame=10).feed(struct.pack(">I", 11))


@pytest.mark.parametrize(
    "obj, needle",
    [
        ([1, 2], "must be a map"),
        ({"k": "q", "id": -1, "m": "x"}, "request id"),
        ({"k": "q", "id": 1}, "method"),
        ({"k": "r", "id": 1}, "ok flag"),
        ({"k": "r", "id": 1, "ok": False}, "no message"),
        ({"k": "z", "id": 1}, "unknown envelope kind"),
        ({"k": "n", "m": ""}, "method"),
    ],
)
def test_malformed_envelopes_raise_remote_protocol_error(obj, needle):
    with pytest.raises(RemoteProtocolError, match=needle):
        decode_envelope(obj)


def test_garbage_bytes_raise_remote_protocol_error():
    payload = b"\xc1\xc1\xc1"
    with pytest.raises(RemoteProtocolError, match="msgpack"):
        FrameDecoder().feed(struct.pack(">I", len(payload)) + payload)


@given(st.binary(max_size=64))
def test_decoder_never_raises_anything_but_remote_protocol_error(data):
    try:
        FrameDecoder(max_frame=1024).feed(struct.pack(">I", len(data)) + data)
    except RemoteProtocolError:
        pass


def test_golden_frame_bytes():
    frame = encode_envelope(Request(id=7, method="hello", body={"a": 1}))
    assert frame == bytes.fromhex("00000017") + msgpack.packb({"k": "q", "id": 7, "m": "hello", "b": {"a": 1}})
    assert frame.hex() == "0000001784a16ba171a2696407a16da568656c6c6fa16281a16101"
