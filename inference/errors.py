"""Errors raised by the inference package.

All derive from ``crdt.errors.MeshError`` so callers can catch one base class.
Messages start with ``"inference: "`` and say what was expected.
"""

from __future__ import annotations

from crdt.errors import MeshError


class InferenceError(MeshError):
    """A model could not be read, loaded or run."""


class InvalidInput(InferenceError):
    """Input tensors do not match the model's declared inputs."""


class Overloaded(InferenceError):
    """Neither this node nor any peer can take another request right now."""
