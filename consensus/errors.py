"""Errors of the consensus layer (all ``MeshError``, messages start with ``consensus:``)."""

from __future__ import annotations

from crdt.errors import MeshError


class ConsensusError(MeshError):
    """A command was refused by the cluster state, or the Raft log failed."""


class ConsensusUnavailable(ConsensusError):
    """No majority committed the command in time.

    The outcome is unknown: the command may still be applied later, once a
    majority is back. Every command is idempotent, so retrying is safe.
    """
