"""The anti-entropy messages ``SyncCore`` exchanges (wire form in ``codec.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .causal_context import CausalContext
from .delta import Delta
from .errors import LocalProtocolError

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
class SyncSummary:
    """"I believe we are in sync: my context's fingerprint is this." Sent instead of a digest then.

    The receiver compares it with its own context's fingerprint: equal means
    in sync (nothing to do); different, it sends its whole digest back and the
    usual exchange follows.
    """

    fingerprint: str

    def __post_init__(self) -> None:
        if not isinstance(self.fingerprint, str) or len(self.fingerprint) != 32 or not _is_hex(self.fingerprint):
            raise LocalProtocolError(
                f"crdt: SyncSummary.fingerprint must be 32 hex digits (CausalContext.fingerprint), got {self.fingerprint!r}"
            )


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


class _SyncDeltaFields(NamedTuple):
    delta: Delta
    reply_context: CausalContext | None


class SyncDelta(_SyncDeltaFields):
    """Entries for the receiver to apply.

    ``reply_context``, when set, is the sender's whole context and asks the
    receiver to answer with what the sender lacks. Only an answer to a digest
    sets it, and an answer to it never does, so an exchange always ends.
    An immutable named tuple built with keywords, not a frozen dataclass like
    the other messages: one is built per received push, on the sync hot path.
    """

    __slots__ = ()

    def __new__(cls, *, delta: Delta, reply_context: CausalContext | None = None) -> SyncDelta:
        if not isinstance(delta, Delta):
            raise LocalProtocolError(f"crdt: SyncDelta.delta must be a Delta, got {type(delta).__name__}")
        if reply_context is not None and not isinstance(reply_context, CausalContext):
            raise LocalProtocolError(
                f"crdt: SyncDelta.reply_context must be a CausalContext or None, "
                f"got {type(reply_context).__name__}"
            )
        return tuple.__new__(cls, (delta, reply_context))

    @classmethod
    def _trusted(cls, delta: Delta, reply_context: CausalContext | None) -> SyncDelta:
        # Internal fast path for the codec, whose checks already ran.
        return tuple.__new__(cls, (delta, reply_context))


Message = SyncDigest | SyncSummary | SyncDelta
"""Any message ``SyncCore`` sends or receives."""
