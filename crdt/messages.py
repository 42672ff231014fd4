"""The anti-entropy messages ``SyncCore`` exchanges (wire form in ``codec.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from .causal_context import CausalContext
from .delta import Delta
from .errors import LocalProtocolError

_new = object.__new__
_set = object.__setattr__


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncDigest:
    """"Here is what I have; send me what I miss." Carries the sender's whole causal context."""

    context: CausalContext

    def __post_init__(self) -> None:
        if not isinstance(self.context, CausalContext):
            raise LocalProtocolError(
                f"crdt: SyncDigest.context must be a CausalContext, got {type(self.context).__name__}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncDelta:
    """Entries for the receiver to apply.

    ``reply_context``, when set, is the sender's whole context and asks the
    receiver to answer with what the sender lacks. Only an answer to a digest
    sets it, and an answer to it never does, so an exchange always ends.
    """

    delta: Delta
    reply_context: CausalContext | None = None

    @classmethod
    def _trusted(cls, delta: Delta, reply_context: CausalContext | None) -> SyncDelta:
        # Internal fast path for the codec, whose checks already ran.
        msg = _new(cls)
        _set(msg, "delta", delta)
        _set(msg, "reply_context", reply_context)
        return msg

    def __post_init__(self) -> None:
        if not isinstance(self.delta, Delta):
            raise LocalProtocolError(f"crdt: SyncDelta.delta must be a Delta, got {type(self.delta).__name__}")
        if self.reply_context is not None and not isinstance(self.reply_context, CausalContext):
            raise LocalProtocolError(
                f"crdt: SyncDelta.reply_context must be a CausalContext or None, "
                f"got {type(self.reply_context).__name__}"
            )


Message = SyncDigest | SyncDelta
"""Any message ``SyncCore`` sends or receives."""
