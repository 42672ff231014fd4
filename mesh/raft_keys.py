"""The Raft key: rotated over the mesh when a peer is revoked, never through the log.

Theory of operation
-------------------
pysyncobj's port is protected by a shared key (``consensus.RaftKeys``). A fresh
mesh uses the password derived from the mesh key (``node.raft_password``), which
a revoked peer still knows: with it, it could connect to a voter's Raft port and
speak Raft as any node. So once a revoked voter is out of the voter set, the
leader rotates the key (issue 4: "only admitted mesh members can speak Raft").

The new key is a random secret sent only over the mesh (``raft.key``: Noise-
encrypted, admission-guarded, from a voter to the voters). Never through the
Raft log: the log travels under the old key, which the revoked peer holds.

A key set (``KeySet``) is ``(epoch, phase)``-versioned; one rotation is three
phases, each pushed to every voter (the whole set, so a voter that missed one
phase loses nothing), each begun only when every live voter took the one before:

====== ================ ================= ================================
phase  writes under     reads             why
====== ================ ================= ================================
accept old              old, new          nobody sends under new yet
use    new              new, old          a voter not yet here still reads
done   new              new               the revoked peer's key is dead
====== ================ ================= ================================

Invariants: two voters whose phases differ by one can always read each other;
a rotation, once begun, is finished (a new leader resumes it) before another
begins; a set only ever replaces an older one (version order). A voter that was
down sees a newer version in a voter's advert and fetches the set
(``raft.keys``, answered to voters only); a joiner or a promoted node gets it
with ``raft.join`` / ``raft.promote``. The set is kept in ``raft/keys.json``
(0600, written atomically and fsynced), so a restart uses it.

``covers`` is the highest revision of a revoke the key set was rotated for: the
leader rotates when the admitted-peer list holds a later revoke and no refused
peer holds a seat any more.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from crdt.errors import LocalProtocolError, MeshError, RemoteProtocolError

if TYPE_CHECKING:
    from consensus import RaftLog

    from .node import Node

log = logging.getLogger("meshnode.raft_keys")

KEYS_FILE = "keys.json"
PHASES = ("accept", "use", "done")
PUSH_TIMEOUT = 5.0  # seconds a voter has to take one phase (deriving a key takes ~0.1 s)
_MIN_KEY, _MAX_KEY = 16, 128


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySet:
    """The Raft keys of a mesh at one ``(epoch, phase)``; ``accepted`` starts with ``current``."""

    epoch: int  # rotations begun
    phase: str
    current: str
    accepted: tuple[str, ...]
    covers: int = 0  # the revoke revision this rotation was for

    def __post_init__(self) -> None:
        if type(self.epoch) is not int or self.epoch < 0 or type(self.covers) is not int or self.covers < 0:
            raise LocalProtocolError("raft keys: epoch and covers must be counts")
        if self.phase not in PHASES:
            raise LocalProtocolError(f"raft keys: phase must be one of {PHASES}, not {self.phase!r}")
        if not isinstance(self.accepted, tuple) or not self.accepted or self.accepted[0] != self.current:
            raise LocalProtocolError("raft keys: the accepted keys must start with the current key")
        if len(set(self.accepted)) != len(self.accepted) or len(self.accepted) != (1 if self.phase == "done" else 2):
            raise LocalProtocolError(f"raft keys: phase {self.phase} holds {'one key' if self.phase == 'done' else 'two keys'}")
        for key in self.accepted:
            if not isinstance(key, str) or not _MIN_KEY <= len(key) <= _MAX_KEY:
                raise LocalProtocolError(f"raft keys: a key is a string of {_MIN_KEY}-{_MAX_KEY} characters")

    @classmethod
    def initial(cls, password: str) -> KeySet:
        """A fresh mesh: the password derived from the mesh key."""
        return cls(epoch=0, phase="done", current=password, accepted=(password,))

    @property
    def version(self) -> tuple[int, int]:
        """Order of key sets: a set only replaces an older one."""
        return (self.epoch, PHASES.index(self.phase))

    @property
    def key_id(self) -> str:
        """A short fingerprint of the key frames are sent under (for ``status``; reveals nothing)."""
        return hashlib.sha256(b"meshnode/raft-key-id:" + self.current.encode()).hexdigest()[:12]

    def begin(self, new: str, covers: int) -> KeySet:
        """Phase accept of the next rotation: read ``new`` too, still write under the current key."""
        if self.phase != "done":
            raise LocalProtocolError("raft keys: finish the rotation under way first")
        return KeySet(epoch=self.epoch + 1, phase="accept", current=self.current, accepted=(self.current, new),
                      covers=covers)

    def advance(self) -> KeySet:
        """The next phase: accept -> use (write under the new key) -> done (forget the old one)."""
        if self.phase == "accept":
            new, old = self.accepted[1], self.current
            return KeySet(epoch=self.epoch, phase="use", current=new, accepted=(new, old), covers=self.covers)
        if self.phase == "use":
            return KeySet(epoch=self.epoch, phase="done", current=self.current, accepted=(self.current,),
                          covers=self.covers)
        raise LocalProtocolError("raft keys: no rotation under way")

    def to_wire(self) -> dict:
        """``{"epoch", "phase", "current", "accepted", "covers"}`` (secrets: for the mesh and the disk only)."""
        return {"epoch": self.epoch, "phase": self.phase, "current": self.current,
                "accepted": list(self.accepted), "covers": self.covers}

    @classmethod
    def from_wire(cls, raw: Any) -> KeySet:
        """A key set from a peer or the disk; ``RemoteProtocolError`` if malformed."""
        if not isinstance(raw, dict) or set(raw) != {"epoch", "phase", "current", "accepted", "covers"} \
                or not isinstance(raw["accepted"], list):
            raise RemoteProtocolError("mesh: malformed Raft key set")
        try:
            return cls(epoch=raw["epoch"], phase=raw["phase"], current=raw["current"],
                       accepted=tuple(raw["accepted"]), covers=raw["covers"])
        except LocalProtocolError as exc:
            raise RemoteProtocolError(f"mesh: malformed Raft key set: {exc}") from None


def load(raft_dir: Path, password: str) -> KeySet:
    """The key set saved in ``raft_dir``, or the mesh-key password for a node that never rotated."""
    path = raft_dir / KEYS_FILE
    if not path.exists():
        return KeySet.initial(password)
    try:
        return KeySet.from_wire(json.loads(path.read_text()))
    except (ValueError, RemoteProtocolError) as exc:
        raise MeshError(f"raft keys: {path} cannot be read ({exc}); remove it and restart: the node then "
                        "fetches the current keys from a voter") from None


def save(raft_dir: Path, keys: KeySet) -> None:
    """Write the key set owner-only, atomically and durably (temp file, fsync, rename, directory fsync)."""
    raft_dir.mkdir(parents=True, exist_ok=True)
    tmp = raft_dir / (KEYS_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(keys.to_wire()).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, raft_dir / KEYS_FILE)
    dir_fd = os.open(raft_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def rotation_due(keys: KeySet, revoked_revision: int, seated_refused: bool) -> bool:
    """Whether the leader should rotate now: a rotation is under way, or a newer revoke has lost its seat."""
    return keys.phase != "done" or (revoked_revision > keys.covers and not seated_refused)


class RaftKeyRing:
    """This node's Raft key set: adopted, saved, handed to its ``RaftLog``, rotated when it leads."""

    def __init__(self, node: Node, password: str) -> None:
        self._node = node
        self._dir = node.data_dir / "raft"
        self.keys = load(self._dir, password)
        self._fetching = False
        self.stats = {"rotations": 0, "fetched": 0}

    # -- this node's set ------------------------------------------------------------

    async def adopt(self, keys: KeySet, raft: RaftLog | None = None) -> bool:
        """Take ``keys`` if newer than ours: save them, then hand them to Raft. False if ours are as new."""
        if keys.version < self.keys.version:
            return False
        if keys.version == self.keys.version:
            if keys.accepted != self.keys.accepted:
                raise MeshError(f"consensus: conflicting Raft keys at epoch {keys.epoch} ({keys.phase}); "
                                "the leader resumes the rotation")
            return False
        await trio.to_thread.run_sync(save, self._dir, keys)
        self.keys = keys
        raft = raft or self._node.raft
        if raft is not None:
            await trio.to_thread.run_sync(raft.set_raft_keys, keys.current, keys.accepted)
        log.info("raft: Raft key epoch %d, phase %s (key %s)", keys.epoch, keys.phase, keys.key_id)
        return True

    def status(self) -> dict:
        """For ``raft status``: epoch, phase and the fingerprint of the key in use."""
        return {"key_epoch": self.keys.epoch, "key_phase": self.keys.phase, "key_id": self.keys.key_id}

    # -- on the leader ----------------------------------------------------------------

    async def maybe_rotate(self, raft: RaftLog) -> None:
        """On the leader, with the membership lock held: rotate if a revoke calls for it (see ``rotation_due``)."""
        state, status = raft.state(), raft.status()
        revoked = max((e.revision for e in state.admitted.values() if e.revoked), default=0)
        owners = {addr: peer for peer, addr in state.members.items()}
        seated_refused = any(
            (peer := owners.get(addr)) is not None and not self._node.admission.admits(peer)
            for addr in status.voters if addr != status.self_addr
        )
        if rotation_due(self.keys, revoked, seated_refused):
            await self.rotate(raft, covers=max(revoked, self.keys.covers))

    async def rotate(self, raft: RaftLog, covers: int | None = None) -> KeySet:
        """On the leader, with the membership lock held: finish the rotation under way, or run a new one."""
        keys = self.keys
        if keys.phase == "done":
            keys = keys.begin(secrets.token_hex(32), keys.covers if covers is None else covers)
            log.info("raft: rotating the Raft key (epoch %d)", keys.epoch)
        while True:
            await self._push(raft, keys)
            if keys.phase == "done":
                self.stats["rotations"] += 1
                log.info("raft: Raft key rotated (epoch %d, key %s)", keys.epoch, keys.key_id)
                return keys
            keys = keys.advance()

    async def _push(self, raft: RaftLog, keys: KeySet) -> None:
        """Adopt ``keys`` here, then on every live voter; raise if one of them did not take it."""
        node = self._node
        await self.adopt(keys, raft)
        status = raft.status()
        if status.role != "leader":
            raise MeshError("consensus: lost the leadership during a Raft key rotation; the next leader resumes it")
        owners = node._voter_owners()
        now = trio.current_time()
        for addr in status.voters:
            peer = owners.get(addr)
            if addr == status.self_addr or peer is None:
                continue
            rec = node.peers.get(peer)
            if rec is None or rec.state(now) != "alive" or not node.admission.admits(peer):
                continue  # down: it misses this phase and fetches the keys when it is back
            try:
                reply = await node.rpc.call(peer, "raft.key", keys.to_wire(), timeout=PUSH_TIMEOUT)
            except MeshError as exc:
                raise MeshError(f"consensus: voter {addr} did not take Raft key phase {keys.phase} ({exc}); "
                                "the rotation resumes shortly") from None
            version = reply.get("version") if isinstance(reply, dict) else None
            # A voter may already hold a later phase (a leader that resumes a rotation can lag one behind).
            if not (isinstance(version, list) and len(version) == 2 and all(type(v) is int for v in version)
                    and tuple(version) >= keys.version):
                raise MeshError(f"consensus: voter {addr} answered Raft key phase {keys.phase} with {reply!r}")

    # -- routes -----------------------------------------------------------------------

    def _is_voter(self, peer: str) -> bool:
        node = self._node
        if node.raft is None:
            return False
        addr = node.raft.state().members.get(peer)
        rec = node.peers.get(peer)
        addrs = {addr, rec.descriptor.raft_addr if rec else None} - {None, ""}
        return bool(addrs & set(node.raft.status().voters))

    async def on_raft_key(self, peer: str, body: Any) -> dict:
        """A voter (the leader) pushes a phase of a rotation: take it if newer, say which version we hold."""
        keys = KeySet.from_wire(body)
        if self._node.raft is None:
            raise MeshError("consensus: this node does not vote")
        if not self._is_voter(peer):
            raise MeshError("consensus: only a voter may change the Raft key")
        await self.adopt(keys)
        return {"version": list(self.keys.version)}

    async def on_raft_keys(self, peer: str, body: Any) -> dict:
        """A voter that was away asks for the current key set (voters only: it opens the Raft port)."""
        if self._node.raft is None:
            raise MeshError("consensus: this node does not vote; ask a voter")
        if not self._is_voter(peer):
            raise MeshError("consensus: only a voter may fetch the Raft key")
        return self.keys.to_wire()

    # -- catching up ------------------------------------------------------------------

    def advertised(self, peer: str, version: Any) -> None:
        """A voter's advert names its key version: fetch the set from it if it is newer than ours."""
        if not (isinstance(version, list) and len(version) == 2 and all(type(v) is int for v in version)):
            return
        if self._node.raft is None or tuple(version) <= self.keys.version or self._fetching:
            return
        self._fetching = True
        self._node._nursery.start_soon(self._fetch, peer)

    async def _fetch(self, peer: str) -> None:
        try:
            reply = await self._node.rpc.call(peer, "raft.keys", None, timeout=PUSH_TIMEOUT)
            if await self.adopt(KeySet.from_wire(reply)):
                self.stats["fetched"] += 1
        except MeshError as exc:
            log.info("raft: fetching the Raft keys from %s failed: %s; will retry", peer, exc)
        finally:
            self._fetching = False
