"""The Node: one process, one trio loop, every subsystem wired together.

Start-up order: libp2p host → RPC plane → sensor state → Raft (bootstrap, or
join through a peer) → local HTTP API. Background tasks: the join loop (dial
bootstrap addresses until connected, then ``hello``), the advert loop (load and
peer exchange once a second), the sensor-sync driver, the model-sync loop
(fetch registered model files from peers) and the Raft membership loop.

Raft joins (pysyncobj dynamic membership): a new node asks a voting peer for
the current voters (``raft.join``), starts pysyncobj with them as partners —
harmless before it is a member, since voters hang up on addresses they do not
know — and then asks for ``raft.add``, which reaches the leader; the leader adds
the address and answers once the change commits (a cluster growing from one
voter to two cannot commit anything until the new voter runs, hence this
order). Once the mesh has ``raft.voters`` voters, later nodes do not vote and
send their commands to a voter over the mesh. Only voters advertise a Raft
address, so requests are never forwarded in circles.

Who votes is decided by the voter planner (``mesh/voters.py``) on the leader:
it promotes the best non-voter to a free seat (``raft.promote``: start Raft
with the voters as partners, then the leader adds it), removes a voter dead
for ``raft.replace_after`` when a candidate can take its seat, and removes a
voter that is stopping (``raft.leave``, sent on shutdown) at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
import trio

from consensus import (
    ConsensusError,
    MemberAdd,
    MemberRemove,
    ModelRecord,
    RaftLog,
    decode_command,
    discard_journal,
    encode_command,
)
from crdt.errors import MeshError, RemoteProtocolError
from inference import Runtime

from .admission import Admission
from .api import serve_api as serve_api_task
from .cluster_config import ClusterConfig, ClusterTasks, on_raft_read, stamp
from .cluster_placement import ClusterPlacement, placement_driver
from .config import MESH_KEY_FILE, Config, DataDirLock, read_identity, read_mesh_key
from .fault_filter import RELOAD_S as FAULT_FILTER_RELOAD
from .fault_filter import FaultFilter
from .metrics import inference_metrics
from .host import Host, peer_id_from_seed, split_peer_addr
from .membership import Event as MemberEvent
from .membership import MemberDead, MemberLeft, MemberSuspect
from .membership_driver import METHOD as SWIM_METHOD
from .membership_driver import MembershipDriver
from .inference_service import InferenceService, InferResult
from .models import ModelFiles
from .peers import Descriptor, Load, PeerTable
from .raft_keys import KeySet, RaftKeyRing
from .redial import Redialer
from .rpc import RemoteError, RpcPlane
from .sensor_quorum import READ_METHOD, WRITE_METHOD
from .sensor_replicas import Replicas
from .sensor_scopes import ZONE_METHOD, ScopedState
from .voters import (
    AddVoter,
    PeerView,
    RemoveVoter,
    VoterPlanner,
    ranked_candidates,
    stale_voters,
)

log = logging.getLogger("meshnode.node")

ADVERT_INTERVAL = 1.0
JOIN_RETRY = 1.0
MAX_TENSOR_BYTES = 64 * 1024 * 1024
MAX_PARALLEL_DIALS = 16
REDIAL_LOOK = 0.1  # seconds between looks for peers to redial (mesh/redial.py sets the pace per peer)
REDIAL_TIMEOUT = 5.0  # one redial: TCP connect with its retries, Noise handshake, hello
STALE_HELLO = 1.0  # seconds a connected peer that is not alive has to answer a hello before the connection is replaced
VIEW_FRESH = 3.0  # seconds an advert's peer list counts for relay decisions (adverts come every second)
VIEW_KEEP = 60.0  # seconds after which a peer's last advert view is forgotten
TWIN_REFUSED = "mesh: refused as a duplicate identity"  # starts every refusal of a copied identity
VOTER_TICK = 0.5  # seconds between the leader's looks at the voter set (mesh/voters.py)
HANDOVER_LIMIT = 3.0  # seconds a stopping voter spends handing over its vote before it just leaves
TRANSFER_LIMIT = 1.0  # of which a stopping leader spends at most this handing over leadership first
PROMOTE_TIMEOUT = 10.0  # seconds a candidate has to start Raft when the leader promotes it


def raft_password(psk_hex: str) -> str:
    """pysyncobj's shared secret, derived from the mesh key (never the key itself)."""
    return hashlib.sha256(b"meshnode/raft/1:" + bytes.fromhex(psk_hex)).hexdigest()


class Node:
    """A running meshnode. Create it with ``async with Node.start(config) as node``."""

    def __init__(self, config: Config, nursery: trio.Nursery, state: ScopedState) -> None:
        self.settings = config
        self.data_dir = Path(config.data_dir)
        self._nursery = nursery
        self._psk = read_mesh_key(self.data_dir / MESH_KEY_FILE)
        self.fault_filter = FaultFilter.from_env()  # test-only: the chaos harness's partitions without root
        self.host = Host(
            seed=read_identity(self.data_dir),
            psk_hex=self._psk,
            listen=config.listen,
            on_peer_event=self._on_peer_event,
            cut_off=self.fault_filter.blocks_peer if self.fault_filter.active else None,
        )
        self.peer_id = self.host.peer_id
        self.instance = os.urandom(8).hex()  # tells this process apart from a copy of its data dir
        self.identity_conflict = ""  # set when peers see our identity used by another running node
        self._conflicts_reported: set[tuple[str, str, str]] = set()
        self._refused_instances: dict[str, str] = {}  # instance -> peer id: the later twin of a copied identity
        self.fatal = ""  # why this node must stop (it is the refused copy of another node's identity)
        self._fatal = trio.Event()
        self.peers = PeerTable(self.peer_id)
        self.rpc = RpcPlane(self.host, nursery)
        self.membership = MembershipDriver(self.peer_id, self.rpc, self._on_member_event)
        self.state = state
        # Zone-only keys sync with peers of our location, as their descriptors tell (mesh/sensor_scopes.py).
        state.attach(lambda peer: rec.descriptor.location if (rec := self.peers.get(peer)) else None, self.rpc.notify)
        self.state.replicas = Replicas.for_node(self)  # majority reads and writes (mesh/sensor_quorum.py)
        self.config = ClusterConfig(self)
        self.tasks = ClusterTasks(self)
        self.placement = ClusterPlacement(self)
        self.placement_driver = placement_driver(self)  # the leader places models from capabilities and speed
        self.runtime = Runtime(
            providers=config.inference.providers or None,
            shared_thread_pool=config.inference.shared_thread_pool,
        )
        self.raft: RaftLog | None = None
        self._raft_building: RaftLog | None = None
        self._saved_membership: tuple[list[str], bool] | None = None  # built by a worker thread, closed even if we stop meanwhile
        self.raft_addr = f"{config.listen_host}:{config.raft.port}" if config.raft.port else ""
        self._raft_dir = self.data_dir / "raft"
        self.raft_keys = RaftKeyRing(self, raft_password(self._psk))  # rotated on revokes (mesh/raft_keys.py)
        self.advert_stats = {"received": 0, "refused": 0}
        self._join_lock = trio.Lock()
        self._dialing: set[str] = set()
        self.redialer = Redialer(rng=random.Random())  # peers we know but cannot reach (mesh/redial.py)
        self._leader_hints: dict[str, tuple[int, str | None]] = {}  # voter -> (term, leader) from adverts
        self._raft_calls = trio.CapacityLimiter(8)  # Raft waits must not starve other worker threads
        self._advert_now = trio.Event()  # set when our advert changed: send it at once
        self._raft_full = False
        self._raft_added = False
        self._raft_opening = trio.Lock()  # a promotion and a join must not both start Raft
        self._stopping = False  # handing over the vote: never start Raft again in this process
        self.voter_planner = VoterPlanner(target=config.raft.voters, replace_after=config.raft.replace_after)
        self.started_at = time.time()
        self.api_addr = ""
        self.link_port = 0  # direct-link port (0: links off); see mesh/link.py
        self.models = ModelFiles(self)
        self.inference = InferenceService(self)  # requests, serving peers, partition profiles
        self.admission = Admission(self)
        self.state.admits = self.admission.admits  # a revoked peer no longer holds tombstones back
        # Each peer's view from its last advert: (when, the peers it has alive). Sensor sync skips
        # relaying to a peer that hears from the origin itself (crdt.SyncCore relay_to).
        self._advert_views: dict[str, tuple[float, frozenset[str]]] = {}
        self.state.relay_to = self._relay_to
        self.rpc.on_abuse = self.admission.cut_off  # stream or garbage floods: refused for a while
        # A refused peer hears only why (no adverts, gossip, sync or calls that would make it look alive).
        self.rpc.may_send = lambda peer, method: method == "admission.refused" or self.admission.admits(peer)
        self._routes()

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def start(cls, config: Config, *, serve_api: bool = True) -> AsyncIterator["Node"]:
        """Run a node for the duration of the ``async with`` block."""
        data_dir = Path(config.data_dir)
        with DataDirLock(data_dir):
            peer_id = peer_id_from_seed(read_identity(data_dir))
            # Opening the store integrity-checks the whole SQLite file: not on the event loop.
            state = await trio.to_thread.run_sync(
                lambda: ScopedState.open(peer_id, data_dir, config)
            )
            state.limit_store(config.sync.max_store_mb, config.sync.min_free_mb)
            node: Node | None = None
            body_error: Exception | None = None
            try:
                async with trio.open_nursery() as nursery:
                    node = cls(config, nursery, state)
                    async with node.host.running():
                        if config.links:
                            node.link_port = await node.rpc.open_links(config.listen_host, node.admission.guard)
                        await node._start_raft()
                        await nursery.start(node.state.run, node._send_sync)
                        await nursery.start(node.membership.run)
                        nursery.start_soon(node._join_loop)
                        nursery.start_soon(node._redial_loop)
                        nursery.start_soon(node.admission.run)
                        if config.discovery.mdns:
                            nursery.start_soon(node.host.run_mdns, node._on_sighting)
                        nursery.start_soon(node._advert_loop)
                        nursery.start_soon(node.models.run)
                        nursery.start_soon(node.inference.run)
                        nursery.start_soon(node.placement_driver.run)
                        if node.fault_filter.active:
                            nursery.start_soon(node._fault_filter_loop)
                        if serve_api:
                            node.api_addr = await nursery.start(serve_api_task, node)
                        log.info("node %s (%s) up at %s", config.name, node.peer_id, node.host.addrs())
                        try:
                            yield node
                        except Exception as exc:
                            # Re-raised below: libp2p's shutdown awaits under the scope cancelled at the
                            # end of this block, and the Cancelled it gets would replace the error and be
                            # absorbed by the nursery (the caller's exception would vanish).
                            body_error = exc
                            raise
                        finally:
                            # A voter hands over its vote first (bounded: then it just leaves).
                            with trio.CancelScope(shield=True), trio.move_on_after(HANDOVER_LIMIT):
                                if not node.fatal:
                                    await node._hand_over_vote()
                            # A refused twin is not the member: it says no goodbye in the member's name.
                            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                                if not node.fatal:
                                    node.membership.leave()
                                    await node.membership.flush()
                                    await node._say_goodbye()
                            nursery.cancel_scope.cancel()
                if body_error is not None:
                    raise body_error
            finally:
                # Every task and worker thread has finished now: nothing can still use Raft or SQLite.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(node._close if node is not None else state.close)

    def _close(self) -> None:
        for raft in {id(r): r for r in (self.raft, self._raft_building) if r is not None}.values():
            raft.close()
        self.state.close()
        self.inference.pool.close()

    # -- descriptor, peers ---------------------------------------------------------

    def descriptor(self) -> Descriptor:
        """What this node tells its peers about itself."""
        cfg = self.settings
        return Descriptor(
            peer_id=self.peer_id,
            name=cfg.name,
            tier=cfg.tier,
            capabilities=tuple(cfg.capabilities),
            location=cfg.location,
            addrs=tuple(self.host.addrs()),
            raft_addr=self.raft_addr if self.raft is not None and self._raft_added else "",  # voters only
            instance=self.instance,
            started_at=round(self.started_at, 3),
        )

    def _on_peer_event(self, peer: str, connected: bool) -> None:
        if connected and self.fault_filter.blocks_peer(peer):
            self._nursery.start_soon(self.host.disconnect, peer)  # the chaos fault filter cuts this link
        self.admission.connection(peer, connected)  # the admission path: refuse, start the hello clock
        if not connected and self.host.is_connected(peer):
            return  # one of several connections closed (e.g. after a simultaneous dial)
        rec = self.peers.get(peer)
        if rec is not None and rec.connected and not connected:
            log.info("peer %s (%s) disconnected", rec.descriptor.name, peer)
        self.peers.connection(peer, connected)
        if not connected:
            self.rpc.forget(peer)
            self.state.peer_down(peer)

    async def _fault_filter_loop(self) -> None:
        """Test-only (chaos without root): close connections the fault filter has just cut."""
        while True:
            for peer in self.fault_filter.blocked_peers() & set(self.host.connected_peers()):
                await self.host.disconnect(peer)
            await trio.sleep(FAULT_FILTER_RELOAD)

    def _on_member_event(self, event: MemberEvent) -> None:
        """The failure detector's verdicts: the only source of "dead"."""
        peer = event.peer
        rec = self.peers.get(peer)
        if rec is None:
            return
        name = rec.descriptor.name
        if isinstance(event, MemberDead):
            if self.peers.judge(peer, "dead") != "dead":
                log.warning("peer %s (%s) declared dead by the failure detector", name, peer)
            self.state.peer_down(peer)
            self.rpc.forget(peer)
            self.placement_driver.poke()
        elif isinstance(event, MemberSuspect):
            self.peers.judge(peer, "suspect")
            log.info("peer %s (%s) is suspected", name, peer)
        elif isinstance(event, MemberLeft):
            if self.peers.departed(peer):
                log.info("peer %s (%s) left", name, peer)
                self.state.peer_down(peer)
                self.placement_driver.poke()
        else:  # MemberUp, MemberAlive
            if self.peers.judge(peer, "alive") == "dead":
                log.info("peer %s (%s) is back", name, peer)
                self.state.peer_up(peer)
                self._advert_now.set()
                self.placement_driver.poke()

    def _report_duplicate(self, desc: Descriptor, instances: tuple[str, str]) -> None:
        """Two processes share a peer id: keep the one that was here first, refuse the later one."""
        key = (desc.peer_id, *instances)
        self._refused_instances[instances[1]] = desc.peer_id
        if key not in self._conflicts_reported:
            self._conflicts_reported.add(key)
            log.error(
                "mesh: duplicate identity: two running nodes use peer id %s (%s; instances %s and %s); "
                "refusing the later one (%s). A copied data dir? Stop it, remove its identity.key and "
                "`meshnode init` it anew",
                desc.peer_id, desc.name, *instances, instances[1],
            )
        # Tell whichever of the two is on the other end of our connection right now.
        self._nursery.start_soon(self._send_conflict, desc.peer_id, list(instances))

    def _refuse_twin(self, desc: Descriptor) -> None:
        """Refuse a hello or advert from the refused copy of a duplicated identity."""
        older = next((o for (p, o, n) in self._conflicts_reported if p == desc.peer_id and n == desc.instance), "")
        self._nursery.start_soon(self._cut_twin, desc.peer_id, [older, desc.instance])
        raise MeshError(f"{TWIN_REFUSED}: peer id {desc.peer_id} is already used by another running node; this "
                        "process (the later of the two) is a copy of its identity")

    async def _cut_twin(self, peer: str, instances: list[str]) -> None:
        """Tell the refused twin why (before the disconnect, so it can hear it), then cut it off."""
        await self._send_conflict(peer, instances)
        await self.host.disconnect(peer)

    def _refused_as_twin(self, reason: str) -> None:
        """A peer refused us as the later copy of an identity: stop (see ``fatal``)."""
        if not self.fatal:
            self.identity_conflict = self.fatal = (
                f"{reason}. This process stops; remove its identity.key and `meshnode init` it anew"
            )
            log.error("%s", self.fatal)
            self._fatal.set()

    async def wait_fatal(self) -> str:
        """Wait until this node must stop (see ``fatal``); returns why."""
        await self._fatal.wait()
        return self.fatal

    async def _send_conflict(self, peer: str, instances: list[str]) -> None:
        with trio.move_on_after(2):
            try:
                await self.rpc.notify(peer, "identity.conflict", {"instances": instances})
            except MeshError:
                pass

    async def _on_identity_conflict(self, peer: str, body: Any) -> None:
        instances = body.get("instances") if isinstance(body, dict) else None
        if not (isinstance(instances, list) and len(instances) == 2 and all(isinstance(i, str) for i in instances)):
            raise RemoteProtocolError("mesh: identity.conflict needs two instance ids")
        if self.instance not in instances or self.identity_conflict:
            return
        rec = self.peers.get(peer)
        reporter = rec.descriptor.name if rec else peer
        if instances[1] == self.instance:
            # We are the later twin: the mesh refuses us. Stop, rather than fight the original for
            # its connections. (Any admitted member could send this; members are trusted this far,
            # as they can also write to Raft.)
            self._refused_as_twin(
                f"{TWIN_REFUSED}: another running node already uses this node's peer id {self.peer_id} "
                f"(reported by {reporter}); this process started later. A copied data dir?"
            )
            return
        self.identity_conflict = (
            f"mesh: duplicate identity: another running node uses this node's peer id {self.peer_id} "
            f"(reported by {reporter}); the mesh refuses it and keeps this one. A copied data dir? "
            "Stop the copy, remove its identity.key and `meshnode init` it anew"
        )
        log.error("%s", self.identity_conflict)

    async def _say_goodbye(self) -> None:
        """Tell every connected peer we are leaving, so they need not wait to notice."""
        async with trio.open_nursery() as nursery:
            for rec in self.peers.records():
                if self.host.is_connected(rec.descriptor.peer_id):
                    nursery.start_soon(self._send_bye, rec.descriptor.peer_id)

    async def _send_bye(self, peer: str) -> None:
        try:
            await self.rpc.notify(peer, "bye", None)
        except MeshError:
            pass

    async def _on_bye(self, peer: str, body: Any) -> None:
        if self.peers.departed(peer):
            rec = self.peers.get(peer)
            log.info("peer %s (%s) left", rec.descriptor.name, peer)
            self.state.peer_down(peer)
            self.rpc.forget(peer)

    async def _hello(self, peer: str) -> None:
        try:
            reply = await self.rpc.call(peer, "hello", self.descriptor().to_wire(), timeout=5)
        except RemoteError as exc:
            if str(exc).startswith(TWIN_REFUSED):
                self._refused_as_twin(str(exc))
            raise
        desc = Descriptor.from_wire(reply)
        if desc.peer_id != peer:
            raise RemoteProtocolError(f"mesh: {peer} answered hello with another peer's descriptor")
        self._learn(desc)

    def _learn(self, desc: Descriptor) -> None:
        if desc.instance in self._refused_instances:
            self._refuse_twin(desc)
        duplicate = self.peers.duplicate(desc, trio.current_time())
        if duplicate is not None:
            self._report_duplicate(desc, duplicate)
            if desc.instance == duplicate[1]:
                self._refuse_twin(desc)
        if self.peers.heard(desc, trio.current_time()):
            log.info("peer %s (%s, %s) is up", desc.name, desc.peer_id, desc.tier)
            self.state.peer_up(desc.peer_id)
            self.membership.join(desc.peer_id)
            self.placement_driver.poke()
            # The detector may have judged this peer (from gossip) before we had its descriptor.
            verdict = self.membership.verdict(desc.peer_id)
            self.peers.judge(desc.peer_id, "alive" if verdict in ("alive", "left") else verdict)
            self._advert_now.set()
        elif self.membership.verdict(desc.peer_id) in ("suspect", "dead"):
            # Suspect or dead to the detector while it talks to us: ping it now (at most once a
            # probe interval) so it refutes, rather than wait for the detector's own pings.
            self.membership.join(desc.peer_id)
        if desc.addrs:
            self.host.add_addrs(desc.peer_id, list(desc.addrs))

    async def _join_loop(self) -> None:
        """Keep dialling the configured join addresses; join Raft through them."""
        targets = [split_peer_addr(a)[1] for a in self.settings.join]
        while True:
            for addr, peer in zip(self.settings.join, targets):
                if peer == self.peer_id or not self.admission.admits(peer):
                    continue  # a revoked join target is not dialled
                rec = self.peers.get(peer)
                if rec is not None and rec.state(trio.current_time()) == "alive" and self.host.is_connected(peer):
                    continue
                try:
                    await self.host.connect(addr)
                    await self._hello(peer)
                except MeshError as exc:
                    # Once refused by the mesh (admission notice), retries are expected: keep the log quiet.
                    log.log(logging.DEBUG if self.admission.notice else logging.WARNING, "join: %s", exc)
            if self.raft is None and not self._raft_full and self.peers.alive(trio.current_time()):
                try:
                    await self._try_raft_join()
                except MeshError as exc:
                    log.warning("raft: joining failed: %s; will retry", exc)
            await trio.sleep(JOIN_RETRY)

    async def _advert_loop(self) -> None:
        """Once a second: tell every live peer our load, and who we know (peer exchange)."""
        while True:
            now = trio.current_time()
            # A peer's view is used fresh or not at all (relays, the dashboard): forget the stale ones, so
            # peers that came and went do not pile up.
            for peer in [p for p, (heard, _) in self._advert_views.items() if now - heard > VIEW_KEEP]:
                del self._advert_views[peer]
            admits = self.admission.admits
            known = [[r.descriptor.peer_id, list(r.descriptor.addrs)] for r in self.peers.alive(now)
                     if admits(r.descriptor.peer_id)]
            body = {
                "desc": self.descriptor().to_wire(),
                "load": self._load().to_wire(),
                "peers": known,
                "raft": {k: v for k, v in self.raft_status().items() if k in ("leader", "term")},
            }
            if self.raft is not None:  # voters say which Raft key set they hold; one that is behind fetches it
                body["raft"]["keys"] = list(self.raft_keys.keys.version)
            for rec in self.peers.records():
                peer = rec.descriptor.peer_id
                if self.host.is_connected(peer) and admits(peer):  # a refused peer hears only why
                    self._nursery.start_soon(self._send_advert, peer, body)
            self._advert_now = trio.Event()
            with trio.move_on_after(ADVERT_INTERVAL):
                await self._advert_now.wait()
            await trio.sleep(0.05)  # coalesce bursts of changes into one advert

    def _load(self) -> Load:
        """Our soft state for adverts: queue, recent latency, measured speed and partition figures per model."""
        return Load(max_queue=self.settings.inference.max_queue, **self.inference.load_figures())

    async def _send_advert(self, peer: str, body: dict) -> None:
        try:
            with trio.move_on_after(2):
                await self.rpc.notify(peer, "advert", body)
        except MeshError:
            pass

    async def _on_advert(self, peer: str, body: Any) -> None:
        self.advert_stats["received"] += 1
        try:
            await self._take_advert(peer, body)
        except RemoteProtocolError:
            self.advert_stats["refused"] += 1  # logged by the RPC plane's note guard
            raise

    async def _take_advert(self, peer: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise RemoteProtocolError("mesh: advert must be a map")
        desc = Descriptor.from_wire(body.get("desc"))
        if desc.peer_id != peer:
            raise RemoteProtocolError("mesh: advert descriptor names another peer")
        load = Load.from_wire(body.get("load"))  # validated before anything of the advert is used
        rec = self.peers.get(peer)
        if rec is not None and rec.left and rec.descriptor.instance == desc.instance:
            return  # an advert that crossed its goodbye (same process); a restarted one is new
        self._learn(desc)
        self.peers.set_load(peer, load, trio.current_time())
        raft = body.get("raft")
        if desc.raft_addr and isinstance(raft, dict) and type(raft.get("term")) is int:
            leader = raft.get("leader")
            if leader is None or isinstance(leader, str):
                self._leader_hints[peer] = (raft["term"], leader)
            self.raft_keys.advertised(peer, raft.get("keys"))
        known = body.get("peers", [])
        if not isinstance(known, list):
            raise RemoteProtocolError("mesh: advert peers must be a list")
        self._advert_views[peer] = (trio.current_time(), frozenset(
            item[0] for item in known[:256] if isinstance(item, list) and item and isinstance(item[0], str)))
        for item in known[:256]:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                continue
            other, addrs = item
            if other == self.peer_id:
                continue
            known = self.peers.get(other)
            if self.host.is_connected(other) and known is not None and known.state(trio.current_time()) == "alive":
                continue  # connected and introduced; otherwise (re)dial and say hello
            if other in self._dialing or len(self._dialing) >= MAX_PARALLEL_DIALS:
                continue
            if isinstance(addrs, list) and addrs and all(isinstance(a, str) for a in addrs):
                self._dialing.add(other)
                self._nursery.start_soon(self._dial_learned, other, addrs[0])

    def _relay_to(self, origin: str, peer: str) -> bool:
        """Relay sensor entries learned from ``origin`` to ``peer`` unless ``peer``'s fresh advert shows it alive."""
        view = self._advert_views.get(peer)
        return view is None or trio.current_time() - view[0] > VIEW_FRESH or origin not in view[1]

    def _on_sighting(self, peer: str, addrs: list[str]) -> None:
        """mDNS saw ``peer`` on the LAN: admit it as peer exchange does (Noise with the mesh key, then hello)."""
        rec = self.peers.get(peer)
        if peer == self.peer_id or peer in self._dialing or len(self._dialing) >= MAX_PARALLEL_DIALS:
            return
        if self.host.is_connected(peer) and rec is not None and rec.state(trio.current_time()) == "alive":
            return
        self._dialing.add(peer)
        self._nursery.start_soon(self._dial_learned, peer, addrs[0], "discovery")

    async def _dial_learned(self, peer: str, addr: str, via: str = "peer exchange") -> None:
        try:
            if not self.admission.admits(peer):
                return  # every sighting goes through the admission check
            if split_peer_addr(addr)[1] != peer:
                raise RemoteProtocolError(f"mesh: {via} gave {peer} an address of another peer")
            await self.host.connect(addr)
            await self._hello(peer)
        except MeshError as exc:
            # A peer exchange dial often races a connection that already exists; an mDNS sighting
            # that fails is worth a line (most often: a node holding another mesh key).
            log.log(logging.DEBUG if via == "peer exchange" else logging.WARNING, "%s: %s", via, exc)
        finally:
            self._dialing.discard(peer)

    def _wanted_back(self) -> list[str]:
        """Peers to redial: known, not departed, admitted, and not alive — unconnected, suspected or
        declared dead by the detector, or silent (no advert) for longer than ``SUSPECT_AFTER``."""
        now = trio.current_time()
        out = []
        for rec in self.peers.records():
            peer = rec.descriptor.peer_id
            if rec.left or not rec.descriptor.addrs or not self.admission.admits(peer):
                continue
            if rec.descriptor.instance in self._refused_instances:
                continue  # the refused copy of a duplicated identity
            if rec.state(now) in ("suspect", "gone") or not self.host.is_connected(peer):
                out.append(peer)
        return out

    async def _redial_loop(self) -> None:
        """Redial peers we know but cannot reach on the schedule of ``mesh/redial.py``, so a
        healed partition reconnects (and sensor state converges) within a fraction of a second."""
        while True:
            now = trio.current_time()
            self.redialer.want(self._wanted_back(), now)
            for peer in self.redialer.due(now):
                rec = self.peers.get(peer)
                self._nursery.start_soon(self._redial, peer, rec.descriptor.addrs[0])
            # Look again at the next deadline, and at least every REDIAL_LOOK for newly lost peers.
            await trio.sleep(max(0.01, min(self.redialer.next_deadline() - now, REDIAL_LOOK)))

    async def _redial(self, peer: str, addr: str) -> None:
        try:
            if self.host.is_connected(peer):
                await self._check_connection(peer)
                return
            with trio.move_on_after(REDIAL_TIMEOUT):
                await self.host.connect(addr)
                await self._hello(peer)
        except MeshError as exc:
            log.debug("redial: %s", exc)
        finally:
            self.redialer.done(peer, trio.current_time())

    async def _check_connection(self, peer: str) -> None:
        """Say hello over the connection to a peer that is not alive (suspected, dead or silent),
        and close the connection unless the answer comes within ``STALE_HELLO``.

        A partition leaves TCP connections open with their retransmissions backed off
        exponentially (0.2, 0.4, … 3.2 s): after the heal such a connection carries nothing
        until its next retransmission, seconds later, and libp2p's health ping (every 2 s,
        1 s timeout) does not always close it first. A fresh connection works at once;
        the next redial dials one."""
        answered = False
        with trio.move_on_after(STALE_HELLO):
            try:
                await self._hello(peer)
                answered = True
            except MeshError as exc:
                log.debug("redial: %s", exc)
        if not answered and self.host.is_connected(peer):
            log.debug("redial: no answer from %s over its connection; closing it for a fresh one", peer)
            await self.host.disconnect(peer)

    async def _on_hello(self, peer: str, body: Any) -> dict:
        desc = Descriptor.from_wire(body)
        if desc.peer_id != peer:
            raise RemoteProtocolError("mesh: hello descriptor names another peer than the one connected")
        self._learn(desc)
        return self.descriptor().to_wire()

    async def _send_sync(self, peer: str, msg: dict) -> int:
        """Send a sync message; returns its bytes on the wire (0 when it could not be sent in time)."""
        with trio.move_on_after(2):
            return await self.rpc.notify(peer, "crdt.sync", msg)
        return 0

    # -- Raft ------------------------------------------------------------------------

    def _membership_file(self) -> Path:
        return self._raft_dir / "membership.json"

    async def _start_raft(self) -> None:
        """Restart from disk, bootstrap a new cluster, or wait to join one."""
        if not self.raft_addr:
            raise MeshError("config: raft.port is 0; re-create the node with `meshnode init`")
        self._raft_dir.mkdir(exist_ok=True)
        saved = self._membership_file()
        if saved.exists():
            doc = json.loads(saved.read_text())
            if doc.get("left"):
                return  # handed over its vote when it last stopped: it joins like a new node
            await self._open_raft(doc["partners"], added=doc.get("added", True))
        elif not self.settings.join:
            await self._open_raft([], added=True)

    async def _open_raft(self, partners: list[str], *, added: bool, fresh: bool = False) -> None:
        """Start pysyncobj with ``partners``; ``fresh``: this node is joining a cluster it is not a member of."""
        partners = [p for p in partners if p != self.raft_addr]

        def build() -> RaftLog:
            if fresh:
                # Its old journal would replay the voter set it had when it last voted (a chaos run
                # saw a node that rejoined come back with that set, and no leader could be elected).
                gone = discard_journal(self._raft_dir)
                if gone:
                    log.info("raft: joining afresh: discarded the old Raft journal (%s)", ", ".join(gone))
            keys = self.raft_keys.keys
            self._raft_building = RaftLog(
                self.raft_addr, partners, keys.current, self._raft_dir,
                bind_host=self.settings.listen_host, accepted_keys=keys.accepted,
                cut_off=self.fault_filter.blocks_raft if self.fault_filter.active else None,
            )
            return self._raft_building

        self.raft = await trio.to_thread.run_sync(build)
        keys = self.raft_keys.keys  # a newer set may have come while it started
        if self.raft.raft_keys() != (keys.current, keys.accepted):
            await trio.to_thread.run_sync(self.raft.set_raft_keys, keys.current, keys.accepted)
        self._raft_added = added
        self._save_membership(partners)
        self._advert_now.set()  # tell peers we run Raft now
        self._nursery.start_soon(self._raft_membership_loop)
        self._nursery.start_soon(self._voter_loop, self.raft)

    def _save_membership(self, partners: list[str]) -> None:
        saved = (sorted(partners), self._raft_added)
        if saved == self._saved_membership:
            return
        tmp = self._membership_file().with_suffix(".tmp")
        tmp.write_text(json.dumps({"self": self.raft_addr, "partners": saved[0], "added": saved[1]}))
        tmp.replace(self._membership_file())
        self._saved_membership = saved

    async def _raft_membership_loop(self) -> None:
        """Get ourselves added as a voter, record us in the cluster state, keep the saved voter list current."""
        registered = False
        while self.raft is not None:
            if not self._raft_added:
                await self._request_add()
                if self.raft is None:
                    return
            status = self.raft.status()
            self._save_membership([v for v in status.voters if v != self.raft_addr])
            if self._raft_added and not registered and status.leader is not None:
                try:
                    await self.submit(MemberAdd(peer_id=self.peer_id, raft_addr=self.raft_addr), timeout=3)
                    registered = True
                except MeshError as exc:
                    log.debug("raft: registering self: %s", exc)
            await trio.sleep(1.0)

    async def _try_raft_join(self) -> None:
        """Learn the voters from a voting peer and start pysyncobj with them as partners."""
        for rec in self.peers.alive(trio.current_time()):
            if not rec.descriptor.raft_addr:
                continue  # not a voter (yet): it could only forward
            try:
                reply = await self.rpc.call(
                    rec.descriptor.peer_id, "raft.join", {"peer_id": self.peer_id, "raft_addr": self.raft_addr},
                    timeout=8,
                )
            except MeshError as exc:
                log.info("raft: join through %s failed: %s", rec.descriptor.name, exc)
                continue
            if not isinstance(reply, dict) or not (
                reply.get("partners") is None
                or (isinstance(reply["partners"], list) and all(isinstance(p, str) for p in reply["partners"]))
            ):
                raise RemoteProtocolError(f"mesh: malformed raft.join reply from {rec.descriptor.name}")
            if reply.get("partners") is None:
                log.info("raft: no seat for this node now (the mesh has its voters, or a better candidate "
                         "takes it); it forwards, and the leader promotes it when a seat is free")
                self._raft_full = True
                return
            # Not a member yet: voters hang up on addresses they do not know, so a node
            # running pysyncobj before it is added cannot disturb the cluster.
            if reply.get("keys") is not None:  # the Raft key, if the mesh rotated it (mesh/raft_keys.py)
                await self.raft_keys.adopt(KeySet.from_wire(reply["keys"]))
            async with self._raft_opening:
                if self.raft is None and not self._stopping:  # not promoted meanwhile, not stopping
                    self._raft_added = False
                    # Its membership loop asks to be added. Not a member (the voter says so): start afresh.
                    await self._open_raft(reply["partners"], added=False, fresh=reply.get("member") is False)
            return

    async def _request_add(self) -> None:
        """Ask the leader (through any voter) to add us; it answers once the change commits."""
        body = {"peer_id": self.peer_id, "raft_addr": self.raft_addr}
        if self.raft is None or self._raft_added:
            return
        for rec in self.peers.alive(trio.current_time()):
            if not rec.descriptor.raft_addr or rec.descriptor.raft_addr == self.raft_addr:
                continue
            try:
                reply = await self.rpc.call(rec.descriptor.peer_id, "raft.add", body, timeout=12)
            except MeshError as exc:
                log.info("raft: adding this node through %s failed: %s; will retry", rec.descriptor.name, exc)
                continue
            voters = reply.get("voters") if isinstance(reply, dict) else None
            full = isinstance(reply, dict) and reply.get("full") is True
            if not full and not (isinstance(voters, list) and all(isinstance(v, str) for v in voters)):
                log.warning("raft: malformed raft.add reply from %s", rec.descriptor.name)
                continue
            if full:
                log.info("raft: the mesh filled its voters meanwhile; this node forwards to them")
                raft, self.raft, self._raft_building = self.raft, None, None
                await trio.to_thread.run_sync(raft.close)
                self._membership_file().unlink(missing_ok=True)
                self._raft_full = True
                self._advert_now.set()
                return
            self._raft_added = True
            self._save_membership(voters)
            log.info("raft: joined as a voter; voters are now %s", voters)
            return

    async def _stop_voting(self) -> None:
        """Close this node's Raft (it was revoked): a revoked leader hands over; the new one removes us."""
        raft, self.raft, self._raft_building = self.raft, None, None
        if raft is None:
            return
        await trio.to_thread.run_sync(raft.close)
        self._membership_file().unlink(missing_ok=True)  # re-admitted, it joins afresh
        self._raft_full = True  # no raft.join retries while refused
        self._advert_now.set()

    def _join_body(self, peer: str, body: Any) -> tuple[str, int]:
        if not isinstance(body, dict) or not isinstance(body.get("raft_addr"), str):
            raise RemoteProtocolError("mesh: raft join/add needs a raft_addr")
        hops = body.get("hops", 0)
        if type(hops) is not int or not 0 <= hops < 2:
            raise MeshError("consensus: the request went through too many nodes; retry with a voter")
        if hops == 0 and body.get("peer_id") != peer:
            raise RemoteProtocolError("mesh: a node may only ask to add itself")
        self.admission.check_raft_member(body.get("peer_id", peer))
        return body["raft_addr"], hops

    async def _on_raft_join(self, peer: str, body: Any) -> dict:
        """A node wants to vote: tell it the current voters, or None when the mesh has enough (on the leader).

        Only the leader answers (others forward): a voter that was removed while it was away
        still runs with its old voter set, and a joiner that took that set, with its journal
        or without, could help it elect itself in a configuration the mesh has left.
        """
        addr, hops = self._join_body(peer, body)
        if self.raft is None:
            raise MeshError("consensus: this node does not vote; ask a voter")
        status = self.raft.status()
        if status.role != "leader":
            return await self._to_leader("raft.join", body, hops, "tell a joiner the voters")
        joiner = body.get("peer_id", peer)
        voters = status.voters
        if addr not in voters and len(voters) >= self.settings.raft.voters:
            return {"partners": None}
        if addr not in voters:
            # A free seat goes to the best candidate (mesh/voters.py); the leader promotes it.
            best = ranked_candidates(self._peer_views(trio.current_time()), self._voter_owners().values())
            if best and best[0].peer_id != joiner:
                return {"partners": None}
        return {"partners": [v for v in voters if v != addr], "keys": self.raft_keys.keys.to_wire(),
                "member": addr in voters}

    async def _on_raft_add(self, peer: str, body: Any) -> dict:
        """Add a running joiner as a voter (on the leader; others forward to it)."""
        addr, hops = self._join_body(peer, body)
        if self.raft is None:
            raise MeshError("consensus: this node does not vote; ask a voter")
        status = self.raft.status()
        if status.role != "leader":
            return await self._to_leader("raft.add", body, hops, "add a voter")
        async with self._join_lock:
            # One change at a time (pysyncobj refuses overlapping membership changes).
            voters = self.raft.status().voters
            if addr not in voters:
                if len(voters) >= self.settings.raft.voters:
                    return {"full": True}
                await trio.to_thread.run_sync(self.raft.add_voter, addr, 8.0)
                log.info("raft: added %s (%s) as a voter", addr, body.get("peer_id", peer))
            return {"voters": [v for v in self.raft.status().voters if v != addr]}

    async def _to_leader(self, method: str, body: dict, hops: int, what: str) -> Any:
        """Forward a membership request to the leader this voter knows (one hop at most)."""
        status = self.raft.status() if self.raft is not None else None
        leader = self.peers.by_raft_addr(status.leader) if status is not None and status.leader else None
        if leader is None:
            raise MeshError(f"consensus: no leader to {what} right now; retrying")
        return await self.rpc.call(leader.descriptor.peer_id, method, {**body, "hops": hops + 1}, timeout=10)

    # -- voters that organize themselves (mesh/voters.py decides; this only carries out) ---

    def _peer_views(self, now: float) -> list[PeerView]:
        return [
            PeerView(peer_id=d.peer_id, tier=d.tier, state=rec.state(now), started_at=d.started_at,
                     raft_addr=d.raft_addr, admitted=self.admission.admits(d.peer_id))
            for rec in self.peers.records() if (d := rec.descriptor)
        ]

    def _voter_owners(self) -> dict[str, str]:
        """Raft address -> peer id, from adverts and from the members recorded in Raft (which win)."""
        owners = {r.descriptor.raft_addr: r.descriptor.peer_id for r in self.peers.records() if r.descriptor.raft_addr}
        owners[self.raft_addr] = self.peer_id
        if self.raft is not None:
            owners.update({addr: peer for peer, addr in self.raft.state().members.items()})
        return owners

    async def _voter_loop(self, raft: RaftLog) -> None:
        """On the leader: ask the voter planner for one change, carry it out, repeat."""
        while self.raft is raft:
            try:
                if self._raft_added and raft.status().role == "leader":
                    async with self._join_lock:  # one membership change at a time, like raft.add
                        await self._plan_voters(raft)
                        await self.raft_keys.maybe_rotate(raft)  # after a revoke: a key it does not know
            except MeshError as exc:
                log.info("raft: voter planning: %s; will retry", exc)
            await trio.sleep(VOTER_TICK)

    async def _plan_voters(self, raft: RaftLog) -> AddVoter | RemoveVoter | None:
        """One planning step (call with ``_join_lock`` held); returns the change carried out."""
        now = trio.current_time()
        status, views = raft.status(), self._peer_views(now)
        for peer in stale_voters(status.voters, views):
            self._nursery.start_soon(self._tell_removed, peer, list(status.voters), status.commit_index)
        change = self.voter_planner.plan(
            self_addr=self.raft_addr, voters=status.voters, owners=self._voter_owners(), peers=views, now=now
        )
        if isinstance(change, RemoveVoter):
            await trio.to_thread.run_sync(raft.remove_voter, change.addr, 8.0)
            log.info("raft: removed voter %s (%s): %s", change.addr, change.peer_id or "unknown peer", change.reason)
            if change.peer_id:
                await self.submit(MemberRemove(peer_id=change.peer_id), timeout=3)
        elif isinstance(change, AddVoter):
            try:
                # The candidate starts pysyncobj with the voters as partners first (see RaftLog).
                body = {"partners": list(status.voters), "keys": self.raft_keys.keys.to_wire()}
                reply = await self.rpc.call(change.peer_id, "raft.promote", body, timeout=PROMOTE_TIMEOUT)
                addr = reply.get("raft_addr") if isinstance(reply, dict) else None
                if not isinstance(addr, str) or not addr:
                    raise RemoteProtocolError(f"mesh: malformed raft.promote reply from {change.peer_id}")
                await trio.to_thread.run_sync(raft.add_voter, addr, 8.0)
            except MeshError as exc:
                self.voter_planner.failed(change.peer_id, trio.current_time())
                log.warning("raft: promoting %s to voter failed: %s; trying others first", change.peer_id, exc)
                return None
            log.info("raft: added voter %s (%s): %s", addr, change.peer_id, change.reason)
        return change

    async def _tell_removed(self, peer: str, voters: list[str], commit_index: int) -> None:
        with trio.move_on_after(2):
            try:
                await self.rpc.notify(peer, "raft.removed", {"voters": voters, "commit_index": commit_index})
            except MeshError:
                pass

    async def _on_raft_promote(self, peer: str, body: Any) -> dict:
        """The leader gives this node a seat: start Raft with the voters as partners (it then adds us)."""
        partners = body.get("partners") if isinstance(body, dict) else None
        if not (isinstance(partners, list) and 0 < len(partners) <= 16 and all(isinstance(p, str) for p in partners)):
            raise RemoteProtocolError("mesh: raft.promote needs the list of voters")
        rec = self.peers.get(peer)
        if rec is None or not rec.descriptor.raft_addr:
            raise MeshError("consensus: only a voter may promote a node")
        if self._stopping:
            raise MeshError("consensus: this node is stopping; promote another")
        if body.get("keys") is not None:
            await self.raft_keys.adopt(KeySet.from_wire(body["keys"]))
        async with self._raft_opening:
            if self.raft is None:
                log.info("raft: %s gives this node a seat; starting Raft", rec.descriptor.name)
                self._raft_full = False
                self._raft_added = False
                # Its membership loop asks to be added too. The leader sends the voters: not among them, it
                # starts afresh.
                await self._open_raft(partners, added=False, fresh=self.raft_addr not in partners)
        return {"raft_addr": self.raft_addr}

    async def _on_raft_removed(self, peer: str, body: Any) -> None:
        """The leader says we no longer vote (removed while away): stop Raft, forward from now on.

        Believed only from a leader that has committed past the end of this node's log: the
        change that removed us is then one we never received. A leader of a voter set the mesh
        left long ago (voters removed while away that elected one another) is behind the voters
        it would dismiss, and is ignored; the real leader tells it the same in turn.
        """
        voters = body.get("voters") if isinstance(body, dict) else None
        if not (isinstance(voters, list) and all(isinstance(v, str) for v in voters)):
            raise RemoteProtocolError("mesh: raft.removed needs the list of voters")
        commit = body.get("commit_index")
        if type(commit) is not int or commit < 0:
            raise RemoteProtocolError("mesh: raft.removed needs the leader's commit index")
        rec = self.peers.get(peer)
        if self.raft is None or self.raft_addr in voters or rec is None or not rec.descriptor.raft_addr:
            return
        last = self.raft.status().last_index
        if commit <= last:
            log.warning("raft: %s says this node is no longer a voter, but it has committed only up to %d and "
                        "this node's log goes to %d; ignored", rec.descriptor.name, commit, last)
            return
        log.warning("raft: %s says this node is no longer a voter (voters %s); it forwards from now on",
                    rec.descriptor.name, voters)
        raft, self.raft, self._raft_building = self.raft, None, None
        self._mark_left()
        self._raft_full = True  # the leader promotes us again when a seat is free
        self._advert_now.set()
        await trio.to_thread.run_sync(raft.close)

    def _mark_left(self) -> None:
        """Remember that this node gave up its vote: a restart joins afresh instead of reusing old partners."""
        tmp = self._membership_file().with_suffix(".tmp")
        tmp.write_text(json.dumps({"self": self.raft_addr, "partners": [], "added": False, "left": True}))
        tmp.replace(self._membership_file())
        self._saved_membership = None

    async def _on_raft_leave(self, peer: str, body: Any) -> dict:
        """A voter is stopping: remove it now (on the leader; others forward), if a live majority remains."""
        if not isinstance(body, dict) or not isinstance(body.get("raft_addr"), str):
            raise RemoteProtocolError("mesh: raft.leave needs a raft_addr")
        hops = body.get("hops", 0)
        if type(hops) is not int or not 0 <= hops < 2:
            raise MeshError("consensus: the request went through too many nodes; retry with a voter")
        if hops == 0 and body.get("peer_id") != peer:
            raise RemoteProtocolError("mesh: a node may only hand over its own vote")
        addr = body["raft_addr"]
        if self.raft is None:
            raise MeshError("consensus: this node does not vote; ask a voter")
        status = self.raft.status()
        if status.role != "leader":
            return await self._to_leader("raft.leave", body, hops, "hand over a vote")
        if addr == self.raft_addr:
            raise MeshError("consensus: the leader cannot remove itself; it stops its Raft first")
        if addr not in status.voters:
            return {"removed": True}
        self.voter_planner.leaving(addr)
        async with self._join_lock:
            change = await self._plan_voters(self.raft)
        if isinstance(change, RemoveVoter) and change.addr == addr:
            return {"removed": True}
        if addr not in self.raft.status().voters:
            return {"removed": True}
        raise MeshError(f"consensus: voter {addr} cannot be removed now without losing a live majority")

    async def _hand_over_vote(self) -> None:
        """Before stopping, a voter gets itself removed, so the others keep a majority without it."""
        self._stopping = self._raft_full = True  # no join or promotion may start Raft again now
        raft = self.raft
        if raft is None or not self._raft_added or len(raft.status().voters) <= 1:
            return
        if raft.status().role == "leader":
            # pysyncobj never lets a leader remove itself: hand leadership to the most caught-up voter
            # and ask it, still voting meanwhile (with two voters, the other could not be elected
            # without this one). Failing that, stop voting and let the others elect a leader.
            successor = await trio.to_thread.run_sync(raft.transfer_leadership, TRANSFER_LIMIT)
            if successor is None:
                self.raft = None
                await trio.to_thread.run_sync(raft.close)
            else:
                log.info("raft: handed leadership to %s before stopping", successor)
        body = {"peer_id": self.peer_id, "raft_addr": self.raft_addr}
        while True:
            for rec in self.peers.alive(trio.current_time()):
                voter = rec.descriptor
                if not voter.raft_addr or voter.raft_addr == self.raft_addr:
                    continue
                try:
                    reply = await self.rpc.call(voter.peer_id, "raft.leave", body, timeout=HANDOVER_LIMIT)
                except MeshError as exc:
                    log.debug("raft: handing over the vote through %s: %s", voter.name, exc)
                    continue
                if isinstance(reply, dict) and reply.get("removed") is True:
                    self.raft = None  # our membership loop stops; the log closes with the node
                    self._mark_left()
                    log.info("raft: handed over this node's vote before stopping")
                    return
            await trio.sleep(0.1)

    def _voter_peer(self) -> str:
        now = trio.current_time()
        for rec in self.peers.alive(now):
            if rec.descriptor.raft_addr:
                return rec.descriptor.peer_id
        raise MeshError("consensus: this node does not vote and no voter is reachable")

    async def submit(self, command, timeout: float | None = None) -> Any:
        """Commit a command through Raft (here, or through a voter) and return its result."""
        timeout = timeout or self.settings.raft.write_timeout
        if self.raft is not None:
            command = stamp(command)  # task commands carry a voter's clock (consensus/leases.py)
            return await trio.to_thread.run_sync(
                self.raft.submit, command, timeout, abandon_on_cancel=True, limiter=self._raft_calls
            )
        try:
            reply = await self.rpc.call(
                await self._wait_voter_peer(timeout), "raft.submit", encode_command(command), timeout=timeout + 1
            )
        except MeshError as exc:
            raise ConsensusError(str(exc)) from exc
        return reply

    async def _wait_voter_peer(self, timeout: float) -> str:
        """A voter to forward to; a node that just started (or gave up its seat) may not know one yet."""
        deadline = trio.current_time() + timeout
        while True:
            try:
                return self._voter_peer()
            except MeshError:
                if trio.current_time() + 0.1 > deadline:
                    raise MeshError(
                        f"consensus: no majority reachable: this node does not vote and no voter answered "
                        f"within {timeout:g} s; start or reconnect the voters (`meshnode status` shows them)"
                    ) from None
            await trio.sleep(0.1)

    async def _on_raft_submit(self, peer: str, body: Any) -> Any:
        if self.raft is None:
            raise MeshError("consensus: this node does not vote")
        if not isinstance(body, bytes):
            raise RemoteProtocolError("mesh: raft.submit needs an encoded command")
        command = decode_command(body)
        return await self.submit(command)

    def raft_status(self) -> dict:
        """role / leader (peer id) / term for ``status``."""
        if self.raft is None:
            # Not a voter: report what the voters last advertised (highest term wins).
            term, leader = max(self._leader_hints.values(), default=(0, None), key=lambda h: h[0])
            rec = self.peers.get(leader) if leader else None
            return {"role": "forwarder", "leader": leader, "term": term, "voters": [],
                    "leader_name": rec.descriptor.name if rec else None}
        st = self.raft.status()
        leader_id = leader_name = None
        if st.leader == self.raft_addr:
            leader_id, leader_name = self.peer_id, self.settings.name
        elif st.leader:
            rec = self.peers.by_raft_addr(st.leader)
            if rec is None:
                member = {v: k for k, v in self.raft.state().members.items()}.get(st.leader)
                leader_id = member
            else:
                leader_id, leader_name = rec.descriptor.peer_id, rec.descriptor.name
        return {
            "role": st.role,
            "leader": leader_id,
            "leader_name": leader_name,
            "term": st.term,
            "commit_index": st.commit_index,
            "messages_sent": self.raft.messages_sent(),
            "voters": list(st.voters),
            **self.raft_keys.status(),
        }

    async def cluster_models(self) -> dict[str, ModelRecord]:
        """The model registry (local applied state, or a voter's)."""
        if self.raft is not None:
            return dict(self.raft.state().models)
        reply = await self.rpc.call(self._voter_peer(), "raft.models", None, timeout=5)
        if not isinstance(reply, list):
            raise RemoteProtocolError("mesh: raft.models reply must be a list")
        records = [ModelRecord.from_wire(r) for r in reply]
        return {r.name: r for r in records}

    async def _on_raft_models(self, peer: str, body: Any) -> list:
        if self.raft is None:
            raise MeshError("consensus: this node does not vote")
        return [r.to_wire() for r in self.raft.state().models.values()]

    # -- admitted peers ----------------------------------------------------------------

    async def admit(self, peer_id: str, name: str = "") -> dict:
        """Put ``peer_id`` on the admitted-peer list (the first admit also admits every current member)."""
        return await self.admission.admit(peer_id, name)

    async def revoke(self, peer_id: str) -> dict:
        """Revoke ``peer_id``: disconnected everywhere within seconds, refused until admitted again."""
        return await self.admission.revoke(peer_id)

    async def admitted(self) -> dict:
        """The admitted-peer list: ``{"enforced", "peers": [{peer_id, name, status, revision, connected}]}``."""
        return await self.admission.listing()

    async def rotate_raft_key(self) -> dict:
        """On the leader: give Raft a new key, known only to the voters (``mesh/raft_keys.py``); returns ``raft status``."""
        raft = self.raft
        if raft is None or raft.status().role != "leader":
            leader = self.raft_status().get("leader_name") or self.raft_status().get("leader") or "unknown"
            raise MeshError(f"consensus: only the Raft leader rotates the key; run this on the leader ({leader})")
        async with self._join_lock:  # one membership change at a time
            await self.raft_keys.rotate(raft)
        return self.raft_status()

    # -- models ----------------------------------------------------------------------

    async def add_model(self, name: str, path: str | Path) -> dict:
        """Register a model in Raft and keep its file here for peers to fetch."""
        return await self.models.add(name, path)

    # -- inference -------------------------------------------------------------------

    async def infer(self, model: str, inputs: dict[str, np.ndarray], *, timeout: float = 30.0,
                    exit_threshold: float | None = None) -> InferResult:
        """Run ``model`` where it completes earliest: here, on a peer, or split (``mesh/inference_service.py``)."""
        return await inference_metrics(self).measure(
            model, self.inference.infer(model, inputs, timeout=timeout, exit_threshold=exit_threshold))

    def advert_changed(self) -> None:
        """Send our advert now rather than at the next tick (our figures changed)."""
        self._advert_now.set()

    # -- reporting -------------------------------------------------------------------

    def status(self) -> dict:
        """The node, its Raft view and counters (``meshnode status``)."""
        cfg = self.settings
        return {
            "peer_id": self.peer_id,
            "name": cfg.name,
            "tier": cfg.tier,
            "capabilities": list(cfg.capabilities),
            "location": cfg.location,
            "addrs": self.host.addrs(),
            "api": self.api_addr,
            "link_port": self.link_port,
            "raft": self.raft_status(),
            "uptime_s": round(time.time() - self.started_at, 1),
            "sensors": self.state.statistics(),
            "store_notice": self.state.corrupt_notice,
            "identity_conflict": self.identity_conflict,
            "duplicate_peers": sorted({peer for peer, _, _ in self._conflicts_reported}),
            "models": self.runtime.loaded(),
            "inference": self.inference.statistics(),
            "placement": self.placement_driver.statistics(),
            "adverts": dict(self.advert_stats),
            "rpc": self.rpc.statistics(),
            "membership": self.membership.statistics(),
            "admission": self.admission.statistics(),
        }

    def peer_list(self) -> list[dict]:
        """Known peers and their state (``meshnode peers``)."""
        now = trio.current_time()
        out = []
        for rec in self.peers.records():
            d = rec.descriptor
            out.append({
                "peer_id": d.peer_id, "name": d.name, "tier": d.tier,
                "capabilities": list(d.capabilities), "location": d.location,
                "state": rec.state(now), "addr": d.addrs[0] if d.addrs else "",
                "raft_addr": d.raft_addr, "queue": rec.load.queue, "models": list(rec.load.models),
                "last_heard_s": round(now - rec.last_heard, 2),
                # Soft state: shown with its age; offload ignores it once expired.
                "latency_ms": rec.load.latency_ms, "speed_ms": dict(rec.load.speed_ms),
                "load_age_s": None if (age := rec.load_age(now)) is None else round(age, 2),
                "load_expired": rec.fresh_load(now) is None,
            })
        return out

    # -- routing ---------------------------------------------------------------------

    def _routes(self) -> None:
        # Every route but admission.refused answers admitted peers only (mesh/admission.py).
        guard, guard_note = self.admission.guard, self.admission.guard_note

        def route(method: str, handler) -> None:
            self.rpc.route(method, guard(method, handler))

        def route_note(method: str, handler) -> None:
            self.rpc.route_note(method, guard_note(handler))

        route("hello", self._on_hello)
        route("raft.join", self._on_raft_join)
        route("raft.add", self._on_raft_add)
        route("raft.promote", self._on_raft_promote)
        route("raft.leave", self._on_raft_leave)
        route_note("raft.removed", self._on_raft_removed)
        route("raft.submit", self._on_raft_submit)
        route("raft.read", lambda peer, body: on_raft_read(self, peer, body))
        route("raft.models", self._on_raft_models)
        route("raft.admitted", self.admission.on_raft_admitted)
        route("raft.key", self.raft_keys.on_raft_key)
        route("raft.keys", self.raft_keys.on_raft_keys)
        route("model.fetch", self.models.on_fetch)
        route("infer", self.inference.on_infer)
        route_note("advert", self._on_advert)
        route_note("bye", self._on_bye)
        route_note("identity.conflict", self._on_identity_conflict)
        route_note("crdt.sync", self.state.receive)
        route_note(ZONE_METHOD, self.state.receive_zone)
        route(WRITE_METHOD, self.state.on_write)
        route(READ_METHOD, self.state.on_read)
        route_note(SWIM_METHOD, self.membership.receive)  # replaces the driver's unguarded route
        self.rpc.route_note("admission.refused", self.admission.on_refused)  # how a refused node learns why
