"""``SyncCore``: sans-IO delta anti-entropy for one replica and its peers.

Theory of operation (delta-CRDT anti-entropy, Almeida et al. 2018 §6, with a
digest pull in the spirit of automerge's sync protocol):

- **Push.** ``local_write`` buffers the write's entries for every peer; the
  next ``outgoing()`` sends them, batched, one ``SyncDelta`` per peer.
  Entries learned from a peer are relayed the same way to the *other* peers
  (never back to their source), so writes cross meshes where not every node
  talks to every other.
- **Summaries.** When, as far as we know, a peer holds exactly what we hold
  (its confirmed context equals ours), the interval's digest is a
  ``SyncSummary``: our context's 128-bit fingerprint instead of the whole
  context (O(writers) bytes). The peer compares it with its own; on a match
  both sides are in sync and nothing more is sent, on a mismatch it sends its
  whole digest at once and the exchange below follows. A quiet mesh then
  costs ~40 bytes per pair per interval instead of a whole context.
- **Pull.** Each ``interval`` a ``SyncDigest`` (our whole causal context)
  goes to each peer. The peer answers with the entries we lack plus its whole
  context, and — if our digest shows writes it lacks — its own context as
  ``reply_context``; we answer that with what it lacks, and the exchange ends.
  This repairs every lost push, reordering and restart. ``add_peer`` starts an
  exchange at once.
- **Relay pruning.** ``relay_to(origin, peer)``, when given, says whether
  entries learned from ``origin`` should be relayed to ``peer``. The node
  answers False when ``peer`` syncs with ``origin`` directly: ``origin`` (or
  whoever it learned them from) covers ``peer`` already. In a full mesh that
  turns (N-1)(N-2) relays per write into none, and every peer of every node
  that has a write still gets it from someone; a wrong answer only delays a
  write until the next digest exchange.
- **What a peer lacks** is decided by dots, per peer: ``confirmed`` holds only
  what the peer told us it has, so answering it with our whole context is safe
  (see ``LWWMap``); ``sent`` adds what we pushed, to avoid pushing twice.

Receiving a digest from a peer postpones ours to it: one exchange per pair per
interval is enough. The node with the larger id waits half an interval more,
so in steady state one side of each pair initiates and the other stands by —
except every ``ANNOUNCE_EVERY``-th time, when it sends its digest anyway, so
each side learns the other's whole context (``collect_garbage`` needs that).

**Tombstones** (deletes) are dropped by ``collect_garbage`` once every
current member has told us it holds them.

Invariants: ``receive`` never returns messages — replies go out at the next
``outgoing()``, after the caller has persisted what ``receive`` returned; a
reply to ``reply_context`` never carries one, so exchanges terminate; a
delta carries our whole context only when it holds every entry the peer's
confirmed context lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ._checks import check_int, check_node, check_now
from ._peer_sync import NO_REPLY, REPLY, REPLY_AND_ASK, PeerSync
from .causal_context import CausalContext
from .delta import Delta
from .dot import Dot
from .entry import Entry
from .errors import LocalProtocolError
from .lww_map import LWWMap
from .messages import Message, SyncDelta, SyncDigest, SyncSummary

ANNOUNCE_EVERY = 4
"""A peer that stands by sends its own digest after this many exchanges the other side began."""

_COUNTERS = (
    "digests_sent",
    "deltas_sent",
    "entries_sent",
    "messages_received",
    "entries_received",
    "entries_changed",
    "unknown_peer_messages",
    "tombstones_collected",
    "summaries_sent",
)


class SyncCore:
    """Anti-entropy engine for one ``LWWMap``: feed it messages and time, send what ``outgoing`` returns."""

    def __init__(self, store: LWWMap, interval: float = 0.5, *, max_entries: int = 128, relay: bool = True,
                 relay_to: Callable[[str, str], bool] | None = None) -> None:
        if not isinstance(store, LWWMap):
            raise LocalProtocolError(f"crdt: SyncCore needs an LWWMap, got {type(store).__name__}")
        check_now(interval, "interval")
        if interval <= 0:
            raise LocalProtocolError(f"crdt: interval must be positive seconds, got {interval}")
        self._store = store
        self._interval = float(interval)
        # Entries per SyncDelta: 128 values at the mesh's 64 KiB cap stay well under its 16 MiB frame.
        self._max_entries = check_int(max_entries, "max_entries", minimum=1)
        self._relay = bool(relay)
        if relay_to is not None and not callable(relay_to):
            raise LocalProtocolError(f"crdt: relay_to must be callable, got {type(relay_to).__name__}")
        self._relay_to = relay_to
        self._peers: dict[str, PeerSync] = {}
        # (origin, entries) learned or written since the last outgoing(): handed to each peer's
        # buffer there, once per flush, so a burst of receives costs one pass per peer.
        self._backlog: list[tuple[str | None, tuple[Entry, ...] | list[Entry]]] = []
        self._flush_at: float | None = None
        self._stats = dict.fromkeys(_COUNTERS, 0)

    @property
    def store(self) -> LWWMap:
        """The replica this core keeps in sync."""
        return self._store

    @property
    def interval(self) -> float:
        """Seconds between digests to each peer."""
        return self._interval

    def peers(self) -> list[str]:
        """The peers being synced with."""
        return list(self._peers)

    def add_peer(self, peer: str, now: float) -> None:
        """A new or reconnected peer: exchange digests now.

        A peer already synced with keeps what we know of it (a repeated hello is not a
        reconnect) but still gets our whole digest now — it may be back from a partition;
        after ``remove_peer`` it starts afresh."""
        check_node(peer, "peer")
        check_now(now)
        state = self._peers.get(peer)
        if state is None:
            self._peers[peer] = PeerSync(digest_at=now)
        else:
            state.digest_at = min(state.digest_at, now)
            state.summary_failed = True  # a whole digest, not a summary: we may have drifted apart

    def remove_peer(self, peer: str) -> None:
        """Stop syncing with ``peer`` (a no-op if unknown)."""
        self._peers.pop(peer, None)

    def local_write(self, delta: Delta, now: float) -> None:
        """Queue a delta the store already holds (from ``LWWMap.put``) for the next push."""
        if not isinstance(delta, Delta):
            raise LocalProtocolError(f"crdt: local_write() needs a Delta, got {type(delta).__name__}")
        self._queue(delta.entries, None, check_now(now))

    def collect_garbage(self, members: Iterable[str]) -> list[Entry]:
        """Drop the tombstones every one of ``members`` has told us it holds; returns them (remove them from disk).

        ``members`` are the mesh's other current members. One that is not a
        peer here — away, or not yet met — holds every tombstone back: a delete
        may only be forgotten once no member can still hold the value it
        deleted. A member removed from the mesh must come back with an empty
        store (the node's new-epoch rule), or it could bring a deleted value back.
        """
        sets = []
        for member in members:
            state = self._peers.get(member)
            if state is None:
                return []
            sets.append(state.confirmed)
        if not self._store.tombstone_count:
            return []
        gone = self._store.forget_tombstones(lambda dot: all(s.contains(dot.node, dot.counter) for s in sets))
        self._stats["tombstones_collected"] += len(gone)
        return gone

    def receive(self, peer: str, msg: Message, now: float) -> list[Entry]:
        """Handle a decoded message from ``peer``; returns the entries that changed locally (persist them)."""
        if type(now) is not float:
            check_now(now)
        if not isinstance(msg, (SyncDigest, SyncDelta, SyncSummary)):
            raise LocalProtocolError(
                "crdt: receive() needs a SyncDigest, SyncSummary or SyncDelta (see decode_message), "
                f"got {type(msg).__name__}"
            )
        self._stats["messages_received"] += 1
        state = self._peers.get(peer)
        if state is None:
            # In flight across remove_peer, or ahead of add_peer: keep the data, answer nothing.
            self._stats["unknown_peer_messages"] += 1
        if isinstance(msg, SyncSummary):
            if state is not None:
                context = self._store.context
                if msg.fingerprint == context.fingerprint():
                    state.learn(context, authoritative=True)  # its context is exactly ours
                    self._postpone_digest(peer, state, now)
                else:
                    state.digest_at = now  # not in sync after all: our whole digest, at once
                    state.summary_failed = True
                    self._due(now)
            return []
        if isinstance(msg, SyncDigest):
            if state is not None:
                state.learn(msg.context, authoritative=True)
                state.reply = REPLY_AND_ASK
                self._postpone_digest(peer, state, now)
                self._due(now)
            return []
        delta = msg.delta
        changed = self._store.apply_delta(delta)
        stats = self._stats
        stats["entries_received"] += len(delta._entries)
        stats["entries_changed"] += len(changed)
        if state is not None:
            if msg.reply_context is not None:
                state.learn(msg.reply_context, authoritative=True)
                state.learn_delta(delta)
                state.reply = max(state.reply, REPLY)
                self._postpone_digest(peer, state, now)
                self._due(now)
            else:
                state.learn_delta(delta)
        if self._relay:
            self._queue(changed, peer, now)
        return changed

    def outgoing(self, now: float) -> list[tuple[str, Message]]:
        """The messages due now, as ``(peer, message)`` pairs."""
        check_now(now)
        seen = self._store._seen
        out: list[tuple[str, Message]] = []
        if self._backlog:
            for peer, state in self._peers.items():
                for origin, entries in self._backlog:
                    if origin is None or (origin != peer and (self._relay_to is None or self._relay_to(origin, peer))):
                        state.push_all(entries)
            self._backlog.clear()
        for peer, state in self._peers.items():
            asked = False
            if state.reply != NO_REPLY:
                ask = state.reply == REPLY_AND_ASK and not state.confirmed.within(seen)
                messages = self._answer(state, ask)
                asked = ask
            elif state.pending:
                messages = [SyncDelta(delta=delta) for delta in self._pushes(state.take_pending())]
            else:
                messages = []
            for msg in messages:
                state.sent_delta(msg.delta)
                self._stats["deltas_sent"] += 1
                self._stats["entries_sent"] += len(msg.delta.entries)
                out.append((peer, msg))
            if asked:
                # Our reply_context already asked for what we lack: that was this interval's exchange.
                state.digest_at = now + self._interval
            elif now >= state.digest_at:
                context = self._store.context
                confirmed = state.confirmed
                if not state.summary_failed and confirmed.vv == seen.vv and confirmed.cloud == seen.cloud:
                    # As far as we know the peer has exactly what we have: 32 hex digits say so.
                    out.append((peer, SyncSummary(fingerprint=context.fingerprint())))
                    self._stats["summaries_sent"] += 1
                else:
                    state.summary_failed = False
                    out.append((peer, SyncDigest(context=context)))
                self._stats["digests_sent"] += 1
                # The standby side (larger id) keeps half an interval behind, so the other leads.
                state.digest_at = now + self._interval * (1.5 if self._store.node > peer else 1.0)
        self._flush_at = None
        return out

    def next_deadline(self) -> float | None:
        """When ``outgoing`` next has something to send (maybe already past), or None with no peers."""
        times = [state.digest_at for state in self._peers.values()]
        if self._flush_at is not None:
            times.append(self._flush_at)
        return min(times, default=None)

    def statistics(self) -> dict:
        """Counters since creation plus the current number of peers and buffered entries."""
        return dict(
            self._stats,
            peers=len(self._peers),
            pending_entries=sum(len(state.pending) for state in self._peers.values())
            + sum(len(entries) for _, entries in self._backlog),
        )

    # -- internals ---------------------------------------------------------------

    def _queue(self, entries: tuple[Entry, ...] | list[Entry], origin: str | None, now: float) -> None:
        if entries and self._peers:
            self._backlog.append((origin, entries))
            self._due(now)

    def _due(self, now: float) -> None:
        if self._flush_at is None or now < self._flush_at:
            self._flush_at = now

    def _postpone_digest(self, peer: str, state: PeerSync, now: float) -> None:
        standby = self._store.node > peer
        state.postponed += standby
        if state.postponed >= ANNOUNCE_EVERY:
            # Send ours now and then (right away, or the peer's next digest would postpone it
            # again): the peer that always initiates learns this side's context only from it,
            # for collect_garbage and for summaries.
            state.postponed = 0
            state.digest_at = now
            return
        state.digest_at = now + self._interval * (1.5 if standby else 1.0)

    def _answer(self, state: PeerSync, ask: bool) -> list[SyncDelta]:
        """Everything the peer's confirmed context lacks, asking for what we lack if ``ask``."""
        state.reply = NO_REPLY
        state.pending.clear()  # the answer covers every buffered push
        delta = self._store.delta_since(state.confirmed)
        if len(delta.entries) <= self._max_entries:
            deltas = [delta] if delta else []
        else:
            # Split: only a delta holding *every* missing entry may carry our whole context, so the
            # parts carry their own dots; the next exchange sends the rest of the context.
            deltas = self._pushes([(entry, ()) for entry in delta.entries])
        reply_context = self._store.context if ask else None
        if reply_context is not None and not deltas:
            deltas = [Delta(entries=(), context=CausalContext())]
        return [
            SyncDelta(delta=delta, reply_context=reply_context if i == len(deltas) - 1 else None)
            for i, delta in enumerate(deltas)
        ]

    def _pushes(self, items: list[tuple[Entry, tuple[Dot, ...]]]) -> list[Delta]:
        """Deltas of at most ``max_entries`` entries, each carrying only its entries' (and superseded) dots."""
        deltas = []
        for start in range(0, len(items), self._max_entries):
            chunk = items[start : start + self._max_entries]
            superseded = tuple(dot for _, dots in chunk for dot in dots)
            deltas.append(Delta._implicit(tuple(entry for entry, _ in chunk), superseded))
        return deltas
