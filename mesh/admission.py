"""Who may be part of the mesh: the admitted-peer list, enforced on this node.

Theory of operation
-------------------
The list lives in Raft (``ClusterState.admitted``, ``consensus.machine``): empty
means an open mesh, anyone holding the mesh key may join; once it has an entry
it is enforced. Every node applies it from the Raft state it can see — a voter
reads its own applied state, a forwarder asks a voter (``raft.admitted``) —
every ``ADMISSION_INTERVAL`` seconds, so a revoke reaches every node within
seconds.

A peer that is not admitted (missing from an enforced list, or revoked):

* is disconnected as soon as its connection is up (``Node._on_peer_event``),
  and again whenever the list changes while it is connected;
* gets no answer from any handler: every RPC route goes through ``guard``
  (requests get a "refused" error, notes are dropped), so it cannot say hello,
  advert, gossip membership, join or use Raft, or fetch models;
* is not dialled by peer exchange or discovery;
* is told why first (an ``admission.refused`` note), so the refused node can
  log and report it. That note is taken from anyone holding the mesh key: it
  sets a line in ``status``. One more thing follows only when a majority of
  the voters say so (below).

Each refused peer is logged once per reason. A Raft voter that is no longer
admitted is removed from the voter set by the leader; a voter that sees itself
revoked stops running Raft at once (so a revoked leader hands over), and says so.
A voter may never read its revocation: a follower that lagged behind can be
removed from the voter set, and the Raft key rotated, before the entry reached
it. It then hears only the refusals; once a majority of the voters it knows
have told it that it is revoked or not listed, it stops running Raft too (one
member cannot make a voter stop).

Silent peers: a connection whose peer neither says hello nor adverts within
``HELLO_DEADLINE`` seconds is closed with one log line. Real nodes advert every
second, so only a peer that completed the handshake and then kept quiet (or a
wedged one) is cut.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from consensus import AdmittedPeer, MemberRemove, PeerAdmit, PeerRevoke
from crdt.errors import MeshError, RemoteProtocolError

from .host import parse_peer_id

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("meshnode.admission")

ADMISSION_INTERVAL = 1.0  # seconds between re-reads of the list: "revoked peers are cut within seconds"
# A node says hello right after connecting and adverts every second (ADVERT_INTERVAL); 10 s leaves room
# for a loaded device or a slow Raft start, yet bounds what a silent connection may hold.
HELLO_DEADLINE = 10.0
REFUSED_NOTE_EVERY = 5.0  # tell a refused peer why at most this often (it may redial every second)
MAX_REASON_CHARS = 200
CUT_OFF_FOR = 60.0  # seconds an abusive peer (stream or garbage flood, see rpc.py) stays refused

REVOKED = "revoked from the admitted-peer list"
NOT_LISTED = "not on the admitted-peer list"

Handler = Callable[[str, Any], Awaitable[Any]]
_IDENTITY, _SHA256 = 0x00, 0x12  # the multihash codes a libp2p peer id uses


def check_peer_id(peer_id: Any) -> str:
    """``peer_id`` fully parsed: base58 of an identity or sha256 multihash of a public key."""
    if not isinstance(peer_id, str):
        raise MeshError(f"mesh: a peer id must be a string, got {type(peer_id).__name__}")
    raw = parse_peer_id(peer_id).to_bytes()
    if len(raw) < 3 or raw[0] not in (_IDENTITY, _SHA256) or raw[1] != len(raw) - 2:
        raise MeshError(f"mesh: {peer_id!r} is not a peer id (not a multihash of a public key)")
    return peer_id


class Admission:
    """The admitted-peer list as this node enforces it, and the hello deadline."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._list: Mapping[str, AdmittedPeer] = {}
        self._connected_at: dict[str, float] = {}
        self._logged: dict[str, str] = {}  # peer -> the refusal reason already logged
        self._told: dict[str, float] = {}  # peer -> when we last sent it admission.refused
        self._cutting: set[str] = set()
        self._cut_off: dict[str, tuple[float, str]] = {}  # peer -> (refused until, what it did)
        self.notice = ""  # set when this node learns that it is refused
        self._refused_by: set[str] = set()  # peers that told us we are revoked or not listed
        self.stats = {"refused": 0, "silent_dropped": 0}

    # -- the list ------------------------------------------------------------------

    @property
    def enforced(self) -> bool:
        """Whether this node knows of an admitted-peer list (else the mesh is open)."""
        return bool(self._list)

    def reason(self, peer: str) -> str | None:
        """Why ``peer`` is refused, or None when it is admitted (or the mesh is open)."""
        if peer in self._cut_off:
            until, what = self._cut_off[peer]
            if trio.current_time() < until:
                return f"cut off for {CUT_OFF_FOR:g} s: it {what}"
            del self._cut_off[peer]
        if not self._list or peer == self._node.peer_id:
            return None
        entry = self._list.get(peer)
        if entry is None:
            return NOT_LISTED
        return REVOKED if entry.revoked else None

    def admits(self, peer: str) -> bool:
        """Whether ``peer`` may talk to this node."""
        return self.reason(peer) is None

    def cut_off(self, peer: str, what: str) -> None:
        """Refuse an abusive peer for ``CUT_OFF_FOR`` seconds (RpcPlane.on_abuse), whatever the list says."""
        if peer == self._node.peer_id:
            return
        self._cut_off[peer] = (trio.current_time() + CUT_OFF_FOR, what)
        self.refuse(peer)

    def check_raft_member(self, peer: Any) -> None:
        """Refuse to hand Raft membership to a peer that is not admitted."""
        reason = self.reason(peer) if isinstance(peer, str) else None
        if reason is not None:
            raise MeshError(f"mesh: {peer} is {reason}; it cannot join Raft")

    # -- the admission path ----------------------------------------------------------

    def connection(self, peer: str, connected: bool) -> None:
        """libp2p's connection events: start the hello clock, refuse at once if not admitted."""
        now = trio.current_time()
        if connected:
            self._connected_at.setdefault(peer, now)
            if not self.admits(peer):
                self.refuse(peer)
        elif not self._node.host.is_connected(peer):
            self._connected_at.pop(peer, None)

    def guard(self, method: str, handler: Handler) -> Handler:
        """``handler`` for admitted peers only; others get a "refused" error and are cut off."""

        async def admitted_only(peer: str, body: Any) -> Any:
            reason = self.reason(peer)
            if reason is not None:
                self.refuse(peer)
                raise MeshError(f"mesh: refused {method!r}: this peer is {reason}")
            return await handler(peer, body)

        return admitted_only

    def guard_note(self, handler: Handler) -> Handler:
        """A note handler for admitted peers only; notes of others are dropped."""

        async def admitted_only(peer: str, body: Any) -> None:
            if self.reason(peer) is not None:
                self.refuse(peer)
                return
            await handler(peer, body)

        return admitted_only

    def refuse(self, peer: str) -> None:
        """Log (once per reason), tell the peer why, and disconnect it."""
        reason = self.reason(peer)
        if reason is None:
            return
        self.stats["refused"] += 1
        if self._logged.get(peer) != reason:
            self._logged[peer] = reason
            entry = self._list.get(peer)
            rec = self._node.peers.get(peer)
            name = (entry.name if entry else "") or (rec.descriptor.name if rec else "")
            log.warning("mesh: refused peer %s%s: %s", peer, f" ({name})" if name else "", reason)
        if peer not in self._cutting:
            self._cutting.add(peer)
            self._node._nursery.start_soon(self._cut, peer, reason)

    async def _cut(self, peer: str, reason: str) -> None:
        try:
            now = trio.current_time()
            if now - self._told.get(peer, -math.inf) >= REFUSED_NOTE_EVERY:
                self._told[peer] = now
                with trio.move_on_after(1.0):
                    try:
                        await self._node.rpc.notify(peer, "admission.refused", {"reason": reason})
                    except MeshError:
                        pass
            await self._node.host.disconnect(peer)
        finally:
            self._cutting.discard(peer)

    async def on_refused(self, peer: str, body: Any) -> None:
        """A peer tells us it refuses this node: log it once and show it in ``status``."""
        reason = body.get("reason") if isinstance(body, dict) else None
        if not isinstance(reason, str) or not 0 < len(reason) <= MAX_REASON_CHARS:
            raise RemoteProtocolError("mesh: admission.refused needs a short reason")
        rec = self._node.peers.get(peer)
        if reason in (REVOKED, NOT_LISTED):
            self._refused_by.add(peer)
        self._set_notice(
            f"mesh: peer {rec.descriptor.name if rec else peer} refuses this node ({self._node.peer_id}): "
            f"it is {reason!r}. A member can let it back in with `meshnode admit {self._node.peer_id}`"
        )

    def _set_notice(self, notice: str) -> None:
        if notice != self.notice:
            self.notice = notice
            log.error("%s", notice)

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Re-read the list, cut peers it refuses, stop silent peers; every ``ADMISSION_INTERVAL``."""
        while True:
            try:
                if await self._refresh() and self.notice and self._listed_here():
                    log.info("mesh: this node is admitted again")
                    self.notice = ""
                    self._refused_by.clear()
            except MeshError as exc:
                log.debug("admission: cannot read the admitted-peer list: %s", exc)
            for peer in self._node.host.connected_peers():
                if not self.admits(peer):
                    self.refuse(peer)
            for peer in [p for p in self._logged if self.admits(p)]:
                del self._logged[peer]  # re-admitted: a later refusal is news again
            await self._check_self()
            await self._drop_refused_voters()
            self._drop_silent(trio.current_time())
            await trio.sleep(ADMISSION_INTERVAL)

    async def _refresh(self) -> bool:
        """Re-read the list from Raft (here or through a voter); False when there was nobody to ask."""
        node = self._node
        if node.raft is not None:
            self._list = node.raft.state().admitted
            return True
        if not node.peers.alive(trio.current_time()):
            return False
        reply = await node.rpc.call(node._voter_peer(), "raft.admitted", None, timeout=3)
        self._list = _read_list(reply)
        return True

    def _listed_here(self) -> bool:
        entry = self._list.get(self._node.peer_id)
        return entry is not None and not entry.revoked

    async def on_raft_admitted(self, peer: str, body: Any) -> dict:
        """A forwarder asks a voter for the list (peer id -> {name, revoked, revision})."""
        if self._node.raft is None:
            raise MeshError("consensus: this node does not vote; ask a voter")
        return {p: e.to_wire() for p, e in self._node.raft.state().admitted.items()}

    async def _check_self(self) -> None:
        """A voter that reads its own revocation in its Raft state says so and stops voting."""
        node = self._node
        if node.raft is not None and self._refused_by_voters():
            log.warning("raft: a majority of the voters refuse this node: it stops voting")
            await node._stop_voting()
            return
        entry = self._list.get(node.peer_id)
        if not self._list or (entry is not None and not entry.revoked):
            return
        reason = REVOKED if entry is not None else NOT_LISTED
        self._set_notice(
            f"mesh: this node ({node.peer_id}) is {reason}; every member refuses it. "
            f"A member can let it back in with `meshnode admit {node.peer_id}`"
        )
        if node.raft is not None:
            log.warning("raft: this node is %s: it stops voting", reason)
            await node._stop_voting()

    def _refused_by_voters(self) -> bool:
        """Whether a majority of the voters this node's Raft knows told it that it is not admitted."""
        raft = self._node.raft
        if raft is None or not self._refused_by:
            return False
        voters = raft.status().voters
        owners = {addr: peer for peer, addr in raft.state().members.items()}
        owners.update({r.descriptor.raft_addr: r.descriptor.peer_id
                       for r in self._node.peers.records() if r.descriptor and r.descriptor.raft_addr})
        refusing = sum(1 for addr in voters if owners.get(addr) in self._refused_by)
        return refusing > len(voters) // 2

    async def _drop_refused_voters(self) -> None:
        """On the leader: take voters that are no longer admitted out of the voter set (one per round)."""
        node = self._node
        raft = node.raft
        if raft is None or not self._list:
            return
        status = raft.status()
        if status.role != "leader":
            return
        owners = {addr: peer for peer, addr in raft.state().members.items()}
        for addr in status.voters:
            peer = owners.get(addr)
            if addr == status.self_addr or peer is None or self.admits(peer):
                continue
            try:
                async with node._join_lock:  # one membership change at a time, like raft.add
                    await trio.to_thread.run_sync(raft.remove_voter, addr, 8.0)
                await node.submit(MemberRemove(peer_id=peer), timeout=3)
            except MeshError as exc:
                log.info("raft: removing refused voter %s failed: %s; will retry", addr, exc)
                return
            log.info("raft: removed voter %s (%s): %s", addr, peer, self.reason(peer))
            return

    def _drop_silent(self, now: float) -> None:
        node = self._node
        for peer, since in list(self._connected_at.items()):
            if now - since < HELLO_DEADLINE:
                continue
            del self._connected_at[peer]
            rec = node.peers.get(peer)
            if not node.host.is_connected(peer) or (rec is not None and rec.last_heard >= since):
                continue  # gone, or it introduced itself (hello or advert)
            self.stats["silent_dropped"] += 1
            log.warning("mesh: dropped peer %s: connected but said no hello within %g s", peer, HELLO_DEADLINE)
            node._nursery.start_soon(node.host.disconnect, peer)

    # -- editing the list ----------------------------------------------------------------

    def _members(self) -> dict[str, str]:
        """The peers this node sees in the mesh now: admitted too when a command turns the list on."""
        node = self._node
        if self._list:
            return {}  # the list is on: consensus ignores members (see consensus.machine)
        now = trio.current_time()
        seen = {r.descriptor.peer_id: r.descriptor.name for r in node.peers.records()
                if r.state(now) in ("alive", "suspect")}
        return {**seen, node.peer_id: node.settings.name}

    async def admit(self, peer_id: str, name: str = "") -> dict:
        """Admit ``peer_id`` (re-admit it if revoked); the first admit also admits the running mesh."""
        check_peer_id(peer_id)
        rec = self._node.peers.get(peer_id)
        name = name or (rec.descriptor.name if rec else "")
        result = await self._node.submit(PeerAdmit(peer_id=peer_id, name=name, members=self._members()))
        await self._refresh_soon()
        return result

    async def revoke(self, peer_id: str) -> dict:
        """Revoke ``peer_id``: every node disconnects it within seconds and refuses it until re-admitted."""
        check_peer_id(peer_id)
        result = await self._node.submit(PeerRevoke(peer_id=peer_id, members=self._members()))
        await self._refresh_soon()
        return result

    async def listing(self) -> dict:
        """``{"enforced", "peers": [{peer_id, name, status, revision, connected}]}``."""
        await self._refresh_soon()
        node = self._node
        rows = []
        for peer, entry in sorted(self._list.items(), key=lambda kv: (kv[1].name, kv[0])):
            rec = node.peers.get(peer)
            rows.append({
                "peer_id": peer,
                "name": entry.name or (rec.descriptor.name if rec else ""),
                "status": "revoked" if entry.revoked else "admitted",
                "revision": entry.revision,
                "connected": peer == node.peer_id or node.host.is_connected(peer),
            })
        return {"enforced": bool(self._list), "peers": rows}

    async def _refresh_soon(self) -> None:
        try:
            await self._refresh()
        except MeshError as exc:
            log.debug("admission: cannot read the admitted-peer list: %s", exc)

    def statistics(self) -> dict:
        """For ``status``: whether the list is on, its size, refusals, and this node's notice."""
        return {
            "enforced": bool(self._list),
            "admitted": sum(1 for e in self._list.values() if not e.revoked),
            "revoked": sum(1 for e in self._list.values() if e.revoked),
            "notice": self.notice,
            "awaiting_hello": len(self._connected_at),
            **self.stats,
        }


def _read_list(reply: Any) -> dict[str, AdmittedPeer]:
    """A voter's ``raft.admitted`` reply, validated."""
    if not isinstance(reply, dict):
        raise RemoteProtocolError("mesh: raft.admitted reply must be a map")
    out = {}
    for peer, entry in reply.items():
        if not isinstance(peer, str) or not isinstance(entry, dict) or set(entry) != {"name", "revoked", "revision"}:
            raise RemoteProtocolError("mesh: malformed raft.admitted entry")
        check_peer_id(peer)
        try:
            out[peer] = AdmittedPeer(entry["name"], entry["revoked"], entry["revision"])
        except MeshError as exc:
            raise RemoteProtocolError(f"mesh: malformed raft.admitted entry for {peer}: {exc}") from None
    return out
