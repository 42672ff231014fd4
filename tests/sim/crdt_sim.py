"""A seeded in-memory network that runs many real ``LWWMap`` + ``SyncCore`` replicas (STYLE §18).

Rounds. Time moves in gossip rounds of the cores' ``interval`` (0.5 s, the node's default
``sync.interval``). ``step()`` is one round: ``now`` advances by one interval, the messages sent
in the previous round are delivered (``SyncCore.receive``; every entry that changed is observed
by the node's hybrid logical clock, as ``mesh.sensors.SensorState`` does), then every node's
``outgoing(now)`` is sent. So a message takes one round, and a write reaches a node ``d`` hops
away ``d`` rounds later at best. (The real driver sends as soon as a receive or write wakes it,
so this is the slow case; the digest timer runs on the same interval in both.) Writes made
between two ``step()`` calls happen at the current ``now`` and go out in the next round.

Bytes are real: every message travels as ``mesh.wire.pack(encode_message(msg))`` and is read
back with ``decode_message(unpack(...))``. A message sent to several peers is encoded once per
sender and round (digests to all peers share one context), and identical bytes are decoded
once per round; the decoded messages are immutable, so sharing them between receivers changes
nothing but the run time. Traffic counts every copy sent.

Topology. A real mesh of 1,000 nodes cannot have every node sync with 999 others (every digest
carries a whole causal context). Each node gets a bounded, symmetric, random neighbour set:
a degree drawn from ``degree`` (default 8-12), the same bounds a libp2p node keeps for its
mesh (GossipSub's D_lo..D_hi is 4..12), checked connected. At N = 1,000 that gives a diameter
of 4 (5 at worst), so a write crosses the mesh in a handful of relays, and each node's sync
work is O(degree), not O(N). Below ``degree[0] + 1`` nodes the graph is complete.

Faults, all drawn from one ``random.Random(seed)`` in a fixed order, so a seed replays a run
exactly (node ids, iteration orders and the cores are deterministic; no set is iterated):

* **loss**: each message sent is dropped with probability ``loss``;
* **duplicate**: a delivered message is delivered again one round later with this probability;
* **delay**: a message arrives one round late with this probability (reordering across rounds);
* **reorder**: each round's deliveries are shuffled;
* **partition**: messages between nodes of different groups are dropped (when sent and when
  delivered). ``down_after`` rounds later every node ``remove_peer``s the neighbours it cannot
  reach (what the node does when its failure detector declares them dead, ``peer_down``);
  ``heal()`` removes the cut and each node ``add_peer``s the neighbours it had removed (the
  node's ``peer_up`` on reconnect).

The independent oracle is ``expected_state``: from the log of writes alone, each key's value is
that of its write with the highest timestamp (a delete's tombstone included), and the context is
the set of every write's dot. ``diverged`` compares replicas against it and names every
difference; ``lost_writes`` names acknowledged writes neither held nor replaced by a later one.

Scenarios shared with ``bench/crdt_sim.py``: ``partition_heal`` (N nodes, a cut, writes on
every side, heal) and ``offline_for`` (one node away for an hour). Each result carries the
call that replays it. ``python tests/sim/crdt_sim.py N SEED`` prints one run's fingerprint.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from crdt import (
    CausalContext,
    Dot,
    HybridLogicalClock,
    LWWMap,
    SyncCore,
    SyncDigest,
    SyncSummary,
    Timestamp,
    decode_message,
    encode_message,
)
from mesh.wire import pack, unpack

WALL0_MS = 1_700_000_000_000  # the simulated wall clock at round 0
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def node_id(i: int) -> str:
    """A libp2p-peer-id-shaped id ("12D3KooW" + 44 base58 characters) for node ``i``: real byte sizes."""
    digest = hashlib.sha256(f"sim-node-{i}".encode()).digest()
    return "12D3KooW" + "".join(_B58[b % 58] for b in digest + digest[:12])[:44]


def neighbour_sets(ids: list[str], rng: random.Random, degree: tuple[int, int]) -> dict[str, list[str]]:
    """A connected random symmetric graph: each node wants ``randint(*degree)`` neighbours, none gets more than ``degree[1]``."""
    lo, hi = degree
    n = len(ids)
    if n - 1 <= lo:
        return {a: [b for b in ids if b != a] for a in ids}
    adj: dict[str, set[str]] = {a: set() for a in ids}
    want = {a: rng.randint(lo, hi) for a in ids}
    order = list(ids)
    rng.shuffle(order)
    for a in order:
        tries = 0
        while len(adj[a]) < want[a] and tries < 50 * hi:
            tries += 1
            b = ids[rng.randrange(n)]
            if b != a and b not in adj[a] and len(adj[b]) < hi:
                adj[a].add(b)
                adj[b].add(a)
    # Join any stray component to the first (essentially never happens at degree >= 8).
    components = _components(ids, adj)
    for comp in components[1:]:
        a, b = rng.choice(components[0]), rng.choice(comp)
        adj[a].add(b)
        adj[b].add(a)
    return {a: sorted(adj[a]) for a in ids}


def _components(ids: list[str], adj: dict[str, set[str]] | dict[str, list[str]]) -> list[list[str]]:
    seen: set[str] = set()
    out = []
    for start in ids:
        if start in seen:
            continue
        comp, frontier = [start], [start]
        seen.add(start)
        while frontier:
            nxt = []
            for a in frontier:
                for b in sorted(adj[a]):
                    if b not in seen:
                        seen.add(b)
                        comp.append(b)
                        nxt.append(b)
            frontier = nxt
        out.append(comp)
    return out


@dataclass(frozen=True, slots=True)
class Write:
    """One acknowledged write: ``node`` put ``value`` under ``key`` (or deleted it) at ``ts`` as the write ``dot``."""

    round: int
    node: str
    key: str
    value: Any
    ts: Timestamp
    dot: Dot
    deleted: bool = False


@dataclass
class SimNode:
    """One simulated node: its replica, sync core and clock, and whom it syncs with."""

    id: str
    map: LWWMap
    core: SyncCore
    clock: HybridLogicalClock
    skew_ms: int
    neighbours: list[str]
    removed: list[str] = field(default_factory=list)  # neighbours it peer_down'ed across a cut


@dataclass
class Traffic:
    """What was sent (every copy, lost or not) and what the network dropped."""

    messages: int = 0
    bytes: int = 0
    digest_messages: int = 0
    digest_bytes: int = 0
    delta_messages: int = 0
    delta_bytes: int = 0
    answer_messages: int = 0  # deltas that carry a whole context (answers to digests), part of delta_*
    answer_bytes: int = 0
    dropped: int = 0
    delivered: int = 0

    def since(self, earlier: Traffic) -> Traffic:
        """The traffic between ``earlier`` (a copy taken then) and now."""
        return Traffic(**{k: getattr(self, k) - getattr(earlier, k) for k in self.__dataclass_fields__})

    def copy(self) -> Traffic:
        """A snapshot."""
        return Traffic(**{k: getattr(self, k) for k in self.__dataclass_fields__})


class CrdtSim:
    """N sensor-state replicas with real sync cores on a seeded, lossy, partitionable network."""

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        degree: tuple[int, int] = (8, 12),
        loss: float = 0.0,
        duplicate: float = 0.0,
        delay: float = 0.0,
        reorder: bool = False,
        interval: float = 0.5,
        max_entries: int = 128,
        down_after: int = 10,
        max_skew_ms: int = 50,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.loss, self.duplicate, self.delay, self.reorder = loss, duplicate, delay, reorder
        self.interval = interval
        self.down_after = down_after
        self.round = 0
        self.now = 0.0
        self.ids = [node_id(i) for i in range(n)]
        graph = neighbour_sets(self.ids, self.rng, degree)
        self.nodes: dict[str, SimNode] = {}
        for i in self.ids:
            store = LWWMap(i)
            skew = self.rng.randint(-max_skew_ms, max_skew_ms)
            self.nodes[i] = SimNode(i, store, SyncCore(store, interval, max_entries=max_entries),
                                    HybridLogicalClock(i), skew, graph[i])
        for node in self.nodes.values():
            for peer in node.neighbours:
                node.core.add_peer(peer, self.now)
        self.writes: list[Write] = []
        self.traffic = Traffic()
        self.group: dict[str, int] = {}
        self._partitioned_at: int | None = None
        # round -> [(src, dst, bytes)] to deliver at the start of that round
        self._mail: dict[int, list[tuple[str, str, bytes]]] = {}

    # ---- the workload -----------------------------------------------------------------------

    def wall_ms(self, node: SimNode) -> int:
        """``node``'s wall clock now: simulated time plus its fixed skew."""
        return WALL0_MS + round(self.now * 1000) + node.skew_ms

    def write(self, node_id: str, key: str, value: Any) -> Write:
        """An acknowledged local write, as ``SensorState.put`` makes it (HLC stamp, put, queue)."""
        return self._write(node_id, key, value, deleted=False)

    def delete(self, node_id: str, key: str) -> Write:
        """An acknowledged local delete (a tombstone write)."""
        return self._write(node_id, key, None, deleted=True)

    def _write(self, node_id: str, key: str, value: Any, *, deleted: bool) -> Write:
        node = self.nodes[node_id]
        ts = node.clock.now(self.wall_ms(node))
        delta = node.map.delete(key, ts) if deleted else node.map.put(key, value, ts)
        node.core.local_write(delta, self.now)
        (entry,) = delta.entries
        write = Write(self.round, node_id, key, entry.value, ts, entry.dot, deleted)
        self.writes.append(write)
        return write

    # ---- faults -----------------------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut the network between ``groups`` (unlisted nodes form one more group)."""
        self.group = {}
        for g, members in enumerate(groups, start=1):
            for i in members:
                self.group[i] = g
        self._partitioned_at = self.round

    def heal(self) -> None:
        """Remove the cut; every node re-adds (``add_peer``) the neighbours it had dropped."""
        self.group = {}
        self._partitioned_at = None
        for node in self.nodes.values():
            for peer in node.removed:
                node.core.add_peer(peer, self.now)
            node.removed = []

    def reachable(self, a: str, b: str) -> bool:
        """Whether the current cut lets ``a`` and ``b`` talk."""
        return not self.group or self.group.get(a, 0) == self.group.get(b, 0)

    # ---- running ----------------------------------------------------------------------------

    def step(self) -> None:
        """One gossip round: deliver last round's messages, then send what every core says is due."""
        self.round += 1
        self.now = self.round * self.interval
        if self._partitioned_at is not None and self.round - self._partitioned_at == self.down_after:
            self._peers_down_across_cut()
        self._deliver(self._mail.pop(self.round, []))
        self._send()

    def run(self, rounds: int, each: Callable[[CrdtSim], None] | None = None) -> None:
        """``rounds`` steps; ``each(self)`` runs after every step (to write, say)."""
        for _ in range(rounds):
            self.step()
            if each is not None:
                each(self)

    def run_until_converged(self, max_rounds: int) -> Convergence:
        """Steps until every replica equals ``expected_state(self.writes)`` (entries and context), at most ``max_rounds``."""
        expected = expected_state(self.writes)
        progress: list[int] = []
        entries_rounds = None
        for rounds in range(1, max_rounds + 1):
            self.step()
            wrong = diverged(self.replicas(), expected, contexts=False)
            progress.append(len(wrong))
            if wrong:
                continue
            if entries_rounds is None:
                entries_rounds = rounds
            if not diverged(self.replicas(), expected, limit=1):
                return Convergence(rounds, entries_rounds, progress)
        return Convergence(None, entries_rounds, progress)

    def replicas(self) -> list[tuple[str, LWWMap]]:
        """``(node id, replica)`` for every node."""
        return [(i, self.nodes[i].map) for i in self.ids]

    def diameter(self) -> int:
        """The neighbour graph's diameter (BFS from every node: O(N * edges))."""
        worst = 0
        for start in self.ids:
            seen, frontier, depth = {start}, [start], 0
            while frontier:
                nxt = [b for a in frontier for b in self.nodes[a].neighbours if b not in seen and not seen.add(b)]
                if nxt:
                    depth += 1
                frontier = nxt
            worst = max(worst, depth)
        return worst

    # ---- internals --------------------------------------------------------------------------

    def _peers_down_across_cut(self) -> None:
        for node in self.nodes.values():
            for peer in node.neighbours:
                if not self.reachable(node.id, peer) and peer in node.core.peers():
                    node.core.remove_peer(peer)
                    node.removed.append(peer)

    def _send(self) -> None:
        rng, traffic, now = self.rng, self.traffic, self.now
        for src in self.ids:
            encoded: dict[int, bytes] = {}
            for dst, msg in self.nodes[src].core.outgoing(now):
                digest = isinstance(msg, (SyncDigest, SyncSummary))  # summaries count as digests
                key = id(msg.context) if isinstance(msg, SyncDigest) else id(msg)
                data = encoded.get(key)
                if data is None:
                    data = encoded[key] = pack(encode_message(msg))
                traffic.messages += 1
                traffic.bytes += len(data)
                if digest:
                    traffic.digest_messages += 1
                    traffic.digest_bytes += len(data)
                else:
                    traffic.delta_messages += 1
                    traffic.delta_bytes += len(data)
                    if msg.reply_context is not None or not msg.delta.implicit:
                        traffic.answer_messages += 1
                        traffic.answer_bytes += len(data)
                if not self.reachable(src, dst) or (self.loss and rng.random() < self.loss):
                    traffic.dropped += 1
                    continue
                late = 1 if self.delay and rng.random() < self.delay else 0
                self._mail.setdefault(self.round + 1 + late, []).append((src, dst, data))

    def _deliver(self, mail: list[tuple[str, str, bytes]]) -> None:
        rng, now = self.rng, self.now
        if self.reorder:
            rng.shuffle(mail)
        decoded: dict[bytes, Any] = {}
        for src, dst, data in mail:
            if not self.reachable(src, dst):
                self.traffic.dropped += 1
                continue
            msg = decoded.get(data)
            if msg is None:
                msg = decoded[data] = decode_message(unpack(data))
            node = self.nodes[dst]
            changed = node.core.receive(src, msg, now)
            self.traffic.delivered += 1
            if changed:
                wall = self.wall_ms(node)
                for entry in changed:
                    node.clock.observe(entry.ts, wall)
            if self.duplicate and rng.random() < self.duplicate:
                self._mail.setdefault(self.round + 1, []).append((src, dst, data))


@dataclass(frozen=True)
class Convergence:
    """How a run settled: rounds until every replica held the expected entries and context."""

    rounds: int | None  # entries and contexts equal everywhere; None: not within max_rounds
    entries_rounds: int | None  # entries equal everywhere (contexts may still lag)
    progress: list[int]  # after each round, how many replicas still held other entries


# ---- the oracle ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """The state every replica must reach: per key the winning write, and every write's dot."""

    winners: dict[str, Write]
    context: CausalContext


def expected_state(writes: Iterable[Write]) -> Expected:
    """Computed from the writes alone: last writer wins by timestamp; the context holds every dot."""
    winners: dict[str, Write] = {}
    dots = []
    for w in writes:
        dots.append(w.dot)
        best = winners.get(w.key)
        if best is None or w.ts > best.ts:
            winners[w.key] = w
    return Expected(winners, CausalContext.from_dots(dots))


def diverged(replicas: Iterable[tuple[str, LWWMap]], writes: Iterable[Write] | Expected, *,
             contexts: bool = True, limit: int | None = None) -> list[str]:
    """One line per replica that differs from ``expected_state(writes)`` (at most ``limit``); empty if all agree.

    A key whose last write is a delete must read as absent and hold that tombstone. With
    ``contexts=False`` only the entries are compared.
    """
    expected = writes if isinstance(writes, Expected) else expected_state(writes)
    winners = expected.winners
    live = sum(1 for w in winners.values() if not w.deleted)
    problems = []
    for name, replica in replicas:
        wrong = []
        tombstones = None
        for key, w in winners.items():
            if w.deleted:
                if tombstones is None:
                    tombstones = {e.key: e for e in replica.tombstones()}
                entry = replica.get(key) or tombstones.get(key)
            else:
                entry = replica.get(key)
            if entry is None:
                wrong.append(f"{key!r} missing (want {_show(w)})")
            elif entry.ts != w.ts or entry.dot != w.dot or entry.value != w.value or entry.deleted != w.deleted:
                wrong.append(f"{key!r} is {_show(entry)}, want {_show(w)}")
            if len(wrong) >= 3:
                break
        if not wrong and len(replica) != live:
            wrong.append(f"{len(replica) - live} live keys nobody wrote")
        if contexts and replica.context != expected.context:
            lacks = sum(1 for dot in _dots(expected.context) if dot not in replica.context)
            wrong.append(f"context lacks {lacks} dots" if lacks else "context holds dots nobody wrote")
        if wrong:
            problems.append(f"{short(name)}: " + "; ".join(wrong))
            if limit is not None and len(problems) >= limit:
                break
    return problems


def _show(w: Write | Any) -> str:
    what = "deleted" if w.deleted else repr(w.value)
    return f"{what} by {short(w.ts.node)} at {w.ts.to_wire()[:2]}"


def _dots(context: CausalContext) -> Iterable[Dot]:
    for node, top in context.vv.items():
        for counter in range(1, top + 1):
            yield Dot(node, counter)
    yield from context.cloud


def lost_writes(replicas: Iterable[tuple[str, LWWMap]], writes: Iterable[Write]) -> list[str]:
    """Acknowledged writes a replica neither holds nor has replaced by a later write (or delete) of the same key."""
    writes = list(writes)
    out = []
    for name, replica in replicas:
        tombstones = {e.key: e for e in replica.tombstones()}
        for w in writes:
            entry = replica.get(w.key) or tombstones.get(w.key)
            if entry is None or entry.ts < w.ts or (entry.ts == w.ts and entry.dot != w.dot):
                out.append(f"{short(name)}: lost {w.key!r} ({_show(w)}, round {w.round})")
    return out


def short(node: str) -> str:
    """The last 6 characters of a node id: enough to tell 1,000 nodes apart in keys and messages."""
    return node[-6:]


# ---- scenarios (shared by tests/sim and bench/crdt_sim.py) -------------------------------------


@dataclass
class HealRun:
    """The outcome of ``partition_heal``: rounds to converge after the heal and what they cost."""

    sim: CrdtSim
    convergence: Convergence
    traffic: Traffic  # sent from the heal until convergence (or max_rounds)
    writers: int
    partition_writes: int
    replay: str  # the call that replays this run

    @property
    def rounds(self) -> int | None:
        """Rounds from the heal until every replica held the expected entries and context."""
        return self.convergence.rounds

    @property
    def bytes_per_node(self) -> float:
        """Bytes sent after the heal, per node."""
        return self.traffic.bytes / len(self.sim.ids)


def warm_up(sim: CrdtSim, fraction: float, rng: random.Random, max_rounds: int = 30) -> None:
    """``fraction`` of the nodes write one reading each, and the mesh converges on them."""
    for i in sorted(rng.sample(sim.ids, round(len(sim.ids) * fraction))):
        sim.write(i, f"{short(i)}/temp", round(rng.uniform(15, 25), 2))
    if sim.run_until_converged(max_rounds).rounds is None:
        problems = diverged(sim.replicas(), sim.writes, limit=3)
        raise AssertionError(f"seed={sim.seed}: warm-up did not converge in {max_rounds} rounds: {problems}")


def partition_heal(
    n: int,
    *,
    seed: int,
    loss: float = 0.0,
    writer_fraction: float = 0.1,
    warmup_fraction: float = 0.1,
    partition_rounds: int = 12,
    shared_keys: int = 16,
    deletes: float = 0.1,
    groups: int = 2,
    quiet_rounds: int = 0,
    max_rounds: int = 30,
    **options: Any,
) -> HealRun:
    """Warm up, cut the mesh into ``groups`` random groups, write on every side, heal, count rounds.

    Warm-up: ``warmup_fraction`` of the nodes write a reading and the mesh converges. Then the
    cut: each node's neighbours fall into every group (a random split of a random graph), and
    after ``down_after`` rounds (default 10, 5 s: the failure detector's verdict) each node drops
    the neighbours it cannot reach. During the ``partition_rounds`` rounds each writer
    (``writer_fraction`` of the nodes, drawn from every side) writes in half the rounds: its own
    key, and every other time also one of ``shared_keys`` keys that writers on the other sides
    write too — a fraction ``deletes`` of those are deletes (the conflicts last-writer-wins must
    settle). Writes go on until ``quiet_rounds`` before the heal (default: until the heal, so
    the rounds counted from the heal include the last writes' relay across their own side). The
    workload has its own random stream: the same seed writes the same for every ``loss``.
    """
    options = dict(options, loss=loss)
    sim = CrdtSim(n, seed=seed, **options)
    replay = (f"partition_heal({n}, seed={seed}, writer_fraction={writer_fraction}, warmup_fraction="
              f"{warmup_fraction}, partition_rounds={partition_rounds}, shared_keys={shared_keys}, "
              f"deletes={deletes}, groups={groups}, quiet_rounds={quiet_rounds}, " + ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) + ")")
    rng = random.Random(f"crdt-sim-workload/{seed}")
    warm_up(sim, warmup_fraction, rng)
    order = list(sim.ids)
    rng.shuffle(order)
    sim.partition(*(order[g::groups] for g in range(groups)))
    writers = sorted(rng.sample(sim.ids, max(groups, round(n * writer_fraction))))
    first = len(sim.writes)
    heal_round = sim.round + partition_rounds

    def write(sim: CrdtSim) -> None:
        if sim.round > heal_round - quiet_rounds:
            return
        for i in writers:
            if rng.random() < 0.5:
                sim.write(i, f"{short(i)}/temp", round(rng.uniform(15, 25), 2))
                if rng.random() < 0.5:
                    key = f"shared/{rng.randrange(shared_keys):02d}"
                    if rng.random() < deletes:
                        sim.delete(i, key)
                    else:
                        sim.write(i, key, f"{short(i)}@{sim.round}")

    sim.run(partition_rounds, write)
    sim.heal()
    before = sim.traffic.copy()
    convergence = sim.run_until_converged(max_rounds)
    return HealRun(sim, convergence, sim.traffic.since(before), len(writers), len(sim.writes) - first, replay)


@dataclass
class OfflineRun:
    """The outcome of ``offline_for``."""

    sim: CrdtSim
    loner: str
    convergence: Convergence
    traffic: Traffic  # sent from the heal until convergence
    loner_writes: int  # acknowledged while cut off
    loner_keys: int  # distinct keys those writes touched
    buffered_while_away: int  # entries the loner's core held for peers at the end of the hour
    peers_while_away: int  # peers the loner's core still synced with at the end of the hour
    replay: str

    @property
    def rounds(self) -> int | None:
        """Rounds from the heal until every replica held the expected entries and context."""
        return self.convergence.rounds


def offline_for(
    seconds: float,
    n: int = 10,
    *,
    seed: int,
    loss: float = 0.0,
    rest_every: float = 10.0,
    max_rounds: int = 30,
    **options: Any,
) -> OfflineRun:
    """One node cut off for ``seconds`` writing a reading every second, the rest writing too; heal.

    The loner writes each second to one of 8 sensor keys (each overwritten every 8 s: only the
    newest of each survives), each minute to a key of its own (all kept), and each minute to
    ``shared/mode``, which the others write too. Every other node writes its own key every
    ``rest_every`` seconds and, every other time, ``shared/mode``.
    """
    options = dict(options, loss=loss)
    sim = CrdtSim(n, seed=seed, **options)
    replay = (f"offline_for({seconds}, {n}, seed={seed}, rest_every={rest_every}, "
              + ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) + ")")
    rng = random.Random(f"crdt-sim-offline/{seed}")
    warm_up(sim, 1.0, rng)
    loner, rest = sim.ids[0], sim.ids[1:]
    sim.partition([loner])
    per_second = round(1 / sim.interval)
    per_rest = round(rest_every / sim.interval)
    start = sim.round

    def write(sim: CrdtSim) -> None:
        k = sim.round - start - 1
        if k % per_second == 0:
            second = k // per_second
            sim.write(loner, f"{short(loner)}/s{second % 8}", round(rng.uniform(15, 25), 2))
            if second % 60 == 0:
                sim.write(loner, f"{short(loner)}/minute/{second // 60:03d}", second)
            if second % 60 == 30:
                sim.write(loner, "shared/mode", f"{short(loner)}@{second}")
        for j, i in enumerate(rest):
            if (k + j) % per_rest == 0:
                sim.write(i, f"{short(i)}/temp", round(rng.uniform(15, 25), 2))
                if rng.random() < 0.5:
                    sim.write(i, "shared/mode", f"{short(i)}@{k}")

    sim.run(round(seconds / sim.interval), write)
    away = [w for w in sim.writes if w.node == loner and w.round > start]
    stats = sim.nodes[loner].core.statistics()
    sim.heal()
    before = sim.traffic.copy()
    convergence = sim.run_until_converged(max_rounds)
    return OfflineRun(sim, loner, convergence, sim.traffic.since(before), len(away), len({w.key for w in away}),
                      stats["pending_entries"], stats["peers"], replay)


def fingerprint(sim: CrdtSim) -> str:
    """A hash of every replica's entries and context and of the traffic: equal runs, equal prints."""
    h = hashlib.sha256()
    for name, replica in sim.replicas():
        h.update(repr((name, [tuple(e) for e in replica.entries()], [tuple(e) for e in replica.tombstones()],
                       replica.context.to_wire())).encode())
    h.update(repr(sim.traffic).encode())
    return h.hexdigest()[:16]


if __name__ == "__main__":  # python tests/sim/crdt_sim.py N SEED: one partition-heal run's fingerprint
    import sys

    run = partition_heal(int(sys.argv[1]), seed=int(sys.argv[2]), loss=0.05, duplicate=0.02, delay=0.05, reorder=True)
    print(run.rounds, fingerprint(run.sim))
