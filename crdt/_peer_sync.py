"""What ``SyncCore`` knows about one peer (private)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._dot_set import DotSet
from .causal_context import CausalContext
from .delta import Delta
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
    confirmed: DotSet = field(default_factory=DotSet)
    sent: DotSet = field(default_factory=DotSet)
    # key -> (entry to push, dots of writes to the same key it superseded)
    pending: dict[str, tuple[Entry, tuple[Dot, ...]]] = field(default_factory=dict)
    reply: int = NO_REPLY
    postponed: int = 0  # digests postponed since we last sent ours (see ANNOUNCE_EVERY)
    summary_failed: bool = False  # its summary did not match ours: send it our whole digest next

    def learn(self, context: CausalContext, *, authoritative: bool) -> None:
        """The peer has (at least) ``context``; ``authoritative`` when it is its whole context."""
        if authoritative:
            # Replace, not merge: a peer that lost its state must be re-sent what it lost.
            self.confirmed = DotSet.of(context)
            self.sent = DotSet.of(context)
        else:
            self.confirmed.update(context)
            self.sent.update(context)

    def learn_delta(self, delta: Delta) -> None:
        """The peer sent us ``delta``, so it has (at least) its context."""
        if delta._is_implicit:
            if len(delta._entries) == 1 and not delta._superseded:
                node, counter = delta._entries[0][3]  # one reading: the common push
                self.confirmed.add(node, counter)
                self.sent.add(node, counter)
                return
            dots = [entry[3] for entry in delta._entries]
            dots += delta._superseded
            self.confirmed.add_all(dots)
            self.sent.add_all(dots)
        else:
            self.learn(delta.context, authoritative=False)

    def sent_delta(self, delta: Delta) -> None:
        """We sent the peer ``delta``: no need to push its writes again."""
        if delta.implicit:
            for dot in delta.dots():
                self.sent.add(dot.node, dot.counter)
        else:
            self.sent.update(delta.context)

    def push_all(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        """Buffer for the next push each of ``entries`` the peer does not have."""
        vv = self.sent.vv
        cloud = self.sent.cloud
        pending = self.pending
        for entry in entries:
            dot = entry[3]
            node, counter = dot
            if counter <= vv.get(node, 0) or (cloud and counter in cloud.get(node, ())):
                continue
            key = entry[0]
            held = pending.get(key)
            if held is None:
                pending[key] = (entry, ())
            elif dot != held[0][3]:
                # Keep the winner; the loser's dot travels with it so the peer's context stays gap-free.
                old, dots = held
                if entry.beats(old):
                    pending[key] = (entry, (*dots, old[3]))
                else:
                    pending[key] = (old, (*dots, dot))

    def take_pending(self) -> list[tuple[Entry, tuple[Dot, ...]]]:
        """The buffered entries the peer still lacks, sorted by key; empties the buffer."""
        items = []
        for key in sorted(self.pending):
            entry, dots = self.pending[key]
            # A superseded dot may only travel with the entry that supersedes it.
            if not self.sent.contains(entry.dot.node, entry.dot.counter):
                items.append((entry, tuple(dot for dot in dots if not self.sent.contains(dot.node, dot.counter))))
        self.pending.clear()
        return items
