"""Join tokens round-trip and bad ones are named clearly."""

from __future__ import annotations

import os

import pytest

from mesh.invite import JoinToken, TokenError

ADDR = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWAbTSKC1zJBQp7U3GMtUnGqXksYj4xWQccMhqzoaARckQ"


def test_round_trip():
    token = JoinToken(mesh_key=os.urandom(32).hex(), join=(ADDR,))
    text = token.encode()
    assert text.startswith("mesh1:") and "=" not in text
    assert JoinToken.decode("  " + text + "\n") == token


@pytest.mark.parametrize(
    "text, needle",
    [
        ("hello", "starts with 'mesh1:'"),
        ("mesh1:!!!", "damaged"),
        (JoinToken(mesh_key="00" * 32, join=(ADDR,)).encode()[:-10], "damaged"),
        ("mesh1:" + "gaF2Ag", "unknown version"),
    ],
)
def test_bad_tokens_say_what_is_wrong(text, needle):
    with pytest.raises(TokenError, match=needle):
        JoinToken.decode(text)


def test_token_without_addresses_is_refused():
    import base64

    import msgpack

    body = base64.urlsafe_b64encode(msgpack.packb({"v": 1, "key": b"k" * 32, "join": []})).decode()
    with pytest.raises(TokenError, match="peer addresses"):
        JoinToken.decode("mesh1:" + body)
