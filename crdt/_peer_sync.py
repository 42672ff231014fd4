"""What ``SyncCore`` knows about one peer (private)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .causal_context import CausalContext
from .dot import Dot
from .entry import Entry

NO_REPLY = 0
REPLY = 1  # answer with what the peer lacks
REPLY_AND_ASK = 2  # ... and, if it has writes we lack, ask for them (reply_context)


@dataclass(slots=True)
class PeerSync:
    """One peer's anti-entropy state.

    ``confirmed`` only ever holds dots the peer itself told us it has (its
    digests, reply contexts and delta contexts): ``delta_since(confirmed)`` may
    then safely carry our whole context. ``sent`` adds what we pushed without
    confirmation; it only filters pushes, so a lost push costs a resend at the
    next digest, never a write.
    """

    digest_at: float
    confirmed: CausalContext = field(default_factory=CausalContext)
    sent: CausalContext = field(default_factory=CausalContext)
    # key -> (entry to push, dots of writes to the same key it superseded)
    pending: dict[str, tuple[Entry, tuple[Dot, ...]]] = field(default_factory=dict)
    reply: int = NO_REPLY

    def learn(self, context: CausalContext, *, authoritative: bool) -> None:
        """The peer has (at least) ``context``; ``authoritative`` when it is its whole context."""
        if authoritative:
            # Replace, not merge: a peer that lost its state must be re-sent what it lost.
            self.confirmed = context
            self.sent = context
        else:
            self.confirmed = self.confirmed.merge(context)
            self.sent = self.sent.merge(context)

    def push(self, entry: Entry) -> bool:
        """Buffer ``entry`` for the next push unless the peer has it; True if buffered."""
        if self.sent.contains(entry.dot):
            return False
        held = self.pending.get(entry.key)
        if held is None:
            self.pending[entry.key] = (entry, ())
        elif entry.dot != held[0].dot:
            # Keep the winner; the loser's dot travels with it so the peer's context stays gap-free.
            old, dots = held
            if entry.beats(old):
                self.pending[entry.key] = (entry, (*dots, old.dot))
            else:
                self.pending[entry.key] = (old, (*dots, entry.dot))
        return True

    def take_pending(self) -> list[tuple[Entry, tuple[Dot, ...]]]:
        """The buffered entries the peer still lacks, sorted by key; empties the buffer."""
        items = []
        for key in sorted(self.pending):
            entry, dots = self.pending[key]
            # A superseded dot may only travel with the entry that supersedes it.
            if not self.sent.contains(entry.dot):
                items.append((entry, tuple(dot for dot in dots if not self.sent.contains(dot))))
        self.pending.clear()
        return items
