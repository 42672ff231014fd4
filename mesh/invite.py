"""Join tokens: everything a new node needs to join a mesh, in one copyable string.

A token is ``mesh1:`` followed by base64url (no padding) of a msgpack map
``{"v": 1, "key": <mesh key, 32 bytes>, "join": [peer addresses]}``. It holds
the mesh's pre-shared key: whoever has the token can join, so hand it over as
you would the key itself.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import msgpack

from crdt.errors import MeshError

PREFIX = "mesh1:"
MAX_JOIN = 32


class TokenError(MeshError):
    """A join token that cannot be used."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinToken:
    """The mesh key and the addresses of members to join through."""

    mesh_key: str
    join: tuple[str, ...]

    def encode(self) -> str:
        """The token text."""
        body = msgpack.packb({"v": 1, "key": bytes.fromhex(self.mesh_key), "join": list(self.join)})
        return PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "JoinToken":
        """Parse a token, naming what is wrong with a bad one."""
        text = text.strip()
        if not text.startswith(PREFIX):
            raise TokenError(f"invite: a join token starts with {PREFIX!r}; got {text[:12]!r}…")
        raw = text[len(PREFIX):]
        try:
            body = msgpack.unpackb(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)), raw=False)
        except Exception as exc:
            raise TokenError("invite: the join token is damaged (was it cut short when copied?)") from exc
        if not isinstance(body, dict) or body.get("v") != 1:
            raise TokenError("invite: the join token is of an unknown version")
        key, join = body.get("key"), body.get("join")
        if not isinstance(key, bytes) or len(key) != 32:
            raise TokenError("invite: the join token holds no valid mesh key")
        if not isinstance(join, list) or not join or len(join) > MAX_JOIN or not all(
            isinstance(a, str) and "/p2p/" in a for a in join
        ):
            raise TokenError("invite: the join token holds no valid peer addresses")
        return cls(mesh_key=key.hex(), join=tuple(join))
