"""The project's error hierarchy.

It lives in the lowest package so every layer can raise it without breaking the
import direction (``crdt`` depends on nothing of ours; everything may depend on
``crdt``). ``mesh`` re-exports these names for users.

Messages start with the subsystem (``"consensus: not the leader"``), say what was
expected and what to do.
"""


class MeshError(Exception):
    """Base class of every error meshnode raises on purpose."""


class LocalProtocolError(MeshError):
    """We misused a protocol or API ourselves (a bug or bad local input)."""


class RemoteProtocolError(MeshError):
    """A peer sent something malformed; its message is refused, we keep running."""
