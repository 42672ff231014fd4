"""``RaftLog``: pysyncobj behind the ``Log`` port. The only module that imports pysyncobj.

Theory of operation
-------------------
pysyncobj owns a tick thread that runs Raft, its TCP transport and the
journal. Commands enter the log as our msgpack bytes through one replicated
method (``_Machine.apply_entry``), which decodes them and calls the pure
``apply``; the submitting thread blocks until its own node has applied the
entry and gets ``apply``'s result back. pysyncobj forwards a follower's
command to the leader itself.

Settings, and why (``DEPENDENCY-NOTES.md``, pysyncobj section):

* ``password`` is required: without it pysyncobj unpickles whatever reaches
  its port (``tcp_connection.py``); with it, a frame that does not decrypt is
  dropped before unpickling. The port binds the node's own address, never a
  wildcard (``transport.py`` binds 0.0.0.0 when ``bindAddress`` is unset).
  The secret can change while the node runs (``RaftKeys``): every frame is
  encrypted with the current key and any accepted key reads it, so a mesh can
  rotate the key without dropping a message (the rotation itself is driven
  over the mesh, ``mesh/raft_keys.py``).
* ``journalFile`` and ``fullDumpFile`` live in ``data_dir``: a restarted node
  keeps its log, its term and vote (in ``<journal>.meta``) and its snapshot.
  The journal is our ``DurableJournal`` (``journal.py``), not pysyncobj's
  (which never fsyncs): it is synced before pysyncobj sends any message and
  before ``submit`` returns, so an acknowledged write is on disk on a majority. ``useFork=False``: compaction must not
  fork a process full of threads.
* Elections in 0.3–0.6 s, heartbeats every 30 ms, no batching (one write
  ~1 ms instead of ~100 ms), a leader without a majority for 2 s steps down
  (the default is 30 s, during which a cut-off leader keeps believing it
  leads), reconnect every 0.5 s.

Invariants and hazards:

* A timed-out command is not cancelled: it may still commit later. Every
  command is idempotent, so callers may retry; ``submit`` itself retries
  while the outcome is "not appended" or "unknown" and time remains.
* ``submit`` waits for a known leader before handing a command to pysyncobj:
  with no leader, pysyncobj would queue the command indefinitely and apply it
  minutes later, long after the caller saw ``ConsensusUnavailable``.
* pysyncobj's tick thread stops as soon as the thread that built the SyncObj
  exits (``syncobj.py``, ``_autoTickThread`` checks ``mainThread.is_alive()``).
  A ``trio.to_thread`` worker exits after ~10 s idle, which would silently
  stop Raft; so the SyncObj is built on a thread this class owns until
  ``close()``.
* A membership change is applied by the leader as soon as it is appended
  (before it commits). Growing a one-voter cluster to two therefore needs the
  new node running before the change can commit: start the joiner with
  ``partners`` = the current voters, then call ``add_voter`` on any voter.
  Until it is added the joiner cannot disturb anyone: voters hang up on a
  connection from an address they do not know, so it never starts an election.
* The journal saves the commit index only once a second; ``close()`` saves it,
  so a cleanly restarted node replays every entry it knew to be committed
  before its constructor returns. A snapshot that does not load fails the
  constructor (pysyncobj itself would log it and run on from an empty state).
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import socket
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import pysyncobj.syncobj
from cryptography.fernet import Fernet, MultiFernet
from pysyncobj import (
    _RAFT_STATE,
    FAIL_REASON,
    SyncObj,
    SyncObjConf,
    SyncObjConsumer,
    SyncObjException,
    replicated,
)
from pysyncobj.encryptor import getEncryptor
from pysyncobj.journal import FileJournal
from pysyncobj.tcp_connection import CONNECTION_STATE
from pysyncobj.transport import TCPTransport

from crdt.errors import LocalProtocolError, RemoteProtocolError

from ._checks import check_addr, check_timeout
from .commands import Command, decode_command, encode_command
from .errors import ConsensusError, ConsensusUnavailable
from .journal import DurableJournal
from .log import RaftStatus, Role
from .machine import Refusal, apply
from .state import ClusterState, decode_state, encode_state

log = logging.getLogger("meshnode.consensus")

JOURNAL_FILE = "raft.wal"  # DurableJournal (journal.py)
OLD_JOURNAL_FILE = "raft.journal"  # pysyncobj's own FileJournal, written before 2026-11-24: migrated once
SNAPSHOT_FILE = "raft.snapshot"
_WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", "*"})
_ROLES: dict[int, Role] = {
    _RAFT_STATE.FOLLOWER: "follower",
    _RAFT_STATE.CANDIDATE: "candidate",
    _RAFT_STATE.LEADER: "leader",
}
# Outcomes after which the command was not appended, or its fate is unknown
# (leader changed before answering): safe to retry, every command being idempotent.
_RETRY = frozenset(
    {
        FAIL_REASON.MISSING_LEADER,
        FAIL_REASON.NOT_LEADER,
        FAIL_REASON.LEADER_CHANGED,
        FAIL_REASON.DISCARDED,
        FAIL_REASON.UNKNOWN_OUTCOME,
    }
)
_REASONS = {v: k.lower().replace("_", " ") for k, v in vars(FAIL_REASON).items() if k.isupper()}
_POLL = 0.01  # seconds between looks at pysyncobj's leader while waiting for one
_RETRY_PAUSE = 0.05
_STARTUP_LIMIT = 10.0  # seconds a constructor waits for pysyncobj's first tick
_REPLAY_STALL = 1.0  # seconds without replay progress after which the leader must fill in


COMPACT_AFTER = 5000  # journal entries before a snapshot replaces them (pysyncobj's default; also every 300 s)


def _settings(password: str, bind_addr: str, data_dir: Path, on_state_changed: Callable,
              compact_after: int = COMPACT_AFTER) -> SyncObjConf:
    return SyncObjConf(
        logCompactionMinEntries=compact_after,
        password=password,
        bindAddress=bind_addr,
        dynamicMembershipChange=True,
        journalFile=str(data_dir / JOURNAL_FILE),
        fullDumpFile=str(data_dir / SNAPSHOT_FILE),
        useFork=False,
        raftMinTimeout=0.3,
        raftMaxTimeout=0.6,
        appendEntriesPeriod=0.03,
        appendEntriesUseBatch=False,
        # Bigger batches avoid most of the harmless-but-loud resends (DEPENDENCY-NOTES).
        appendEntriesBatchSizeBytes=1024 * 1024,
        leaderFallbackTimeout=2.0,
        connectionTimeout=2.0,
        connectionRetryTime=0.5,
        commandsWaitLeader=True,
        # A taken port fails the constructor in ~0.5 s instead of retrying forever.
        bindRetryTime=0.2,
        maxBindRetries=3,
        onStateChanged=on_state_changed,
    )


class _Machine(SyncObjConsumer):
    """The replicated part: the cluster state and the one replicated method."""

    def __init__(self, on_applied: Callable[[ClusterState], None] | None) -> None:
        super().__init__()
        self.state = ClusterState()
        self.fault: str | None = None  # set when a snapshot could not be read
        self.snapshot_loaded = False
        self._on_applied = on_applied

    @replicated
    def apply_entry(self, data: bytes) -> Any:
        """Apply one committed log entry (runs on pysyncobj's thread; must never raise)."""
        try:
            command = decode_command(data)
        except RemoteProtocolError as exc:
            return Refusal(str(exc))
        new, result = apply(self.state, command)
        if new is not self.state:
            self.state = new
            self._notify()
        return result

    def _serialize(self) -> dict:
        # pysyncobj pickles this into the snapshot file; we keep our own format inside.
        return {"state": encode_state(self.state)}

    def _deserialize(self, data: dict) -> None:
        try:
            self.state = decode_state(data["state"])
        except (RemoteProtocolError, KeyError, TypeError) as exc:
            # pysyncobj would log and carry on from an empty state: refuse to serve instead.
            self.fault = (
                f"consensus: the Raft snapshot could not be read ({exc}); this node's state is unknown"
            )
            log.error("%s", self.fault)
            return
        self.fault = None
        self.snapshot_loaded = True
        self._notify()

    def _notify(self) -> None:
        if self._on_applied is None:
            return
        try:
            self._on_applied(self.state)
        except Exception:  # the callback must not break the log
            log.exception("consensus: on_applied callback failed")


_pysyncobj_create_journal = pysyncobj.syncobj.createJournal


def _create_journal(journal_file: str | None):
    """pysyncobj's journal factory, giving our journal files a ``DurableJournal``."""
    if journal_file is not None and Path(journal_file).name == JOURNAL_FILE:
        _migrate(Path(journal_file))
        return DurableJournal(journal_file, snapshot=Path(journal_file).with_name(SNAPSHOT_FILE))
    return _pysyncobj_create_journal(journal_file)  # anyone else's SyncObj (e.g. the raw bench baseline)


pysyncobj.syncobj.createJournal = _create_journal


def _migrate(path: Path) -> None:
    """Copy a journal pysyncobj wrote (entries, term, vote, commit index) into a new ``DurableJournal``."""
    old = path.with_name(OLD_JOURNAL_FILE)
    if path.exists() or not old.exists():
        return
    source = FileJournal(str(old))
    target = DurableJournal(str(path) + ".migrating")
    try:
        for i in range(len(source)):
            target.add(*source[i])
        target.setCurrentTerm(source.getCurrentTerm(), source.getVotedForNodeId())
        target.setRaftCommitIndex(source.getRaftCommitIndex())
    finally:
        target._destroy()
        source._destroy()
    meta = Path(str(path) + ".migrating.meta")
    if meta.exists():
        meta.replace(str(path) + ".meta")
    Path(str(path) + ".migrating").replace(path)
    old.replace(old.with_name(OLD_JOURNAL_FILE + ".migrated"))
    log.info("consensus: migrated the Raft journal in %s to the durable format", path.parent)


def discard_journal(data_dir: Path) -> list[str]:
    """Delete a node's Raft journal and snapshot (not its other files); returns the names removed.

    For a node about to join a cluster it is not a member of: pysyncobj replays the
    voter changes in its own journal and snapshot on start, so an old journal would
    bring back the voter set the node had when it last voted, whatever partners it is
    given now. Never for a member: a voter that forgets its log can vote a candidate
    that lacks committed entries (Raft §5.4).
    """
    removed = []
    for name in (JOURNAL_FILE, JOURNAL_FILE + ".meta", SNAPSHOT_FILE, OLD_JOURNAL_FILE):
        path = Path(data_dir) / name
        if path.exists():
            path.unlink()
            removed.append(name)
    return removed


class _DurableTransport(TCPTransport):
    """pysyncobj's TCP transport, syncing the journal before any message leaves.

    A follower's "appended" answer and the leader's own copy (it counts towards
    the majority once it has sent the entries) are thus on disk before they
    count: every committed entry is durable on a majority (Raft §5.3, §5.4).
    """

    def _onIncomingMessageReceived(self, conn, message):  # noqa: N802 (pysyncobj's name)
        # Beyond the password: no utility commands (syncobj_admin's add/remove/status, which
        # anyone holding the password could send) and no read-only observers. A connection
        # must name a voter; pysyncobj hangs up on unknown names itself.
        if conn.sendRandKey and (isinstance(message, list) or message == "readonly"):
            conn.disconnect()
            self._unknownConnections.discard(conn)
            return
        cut_off = getattr(self._syncObj, "cut_off", None)
        if conn.sendRandKey and isinstance(message, str) and cut_off is not None and cut_off(message):
            conn.disconnect()
            self._unknownConnections.discard(conn)
            return
        super()._onIncomingMessageReceived(conn, message)

    def send(self, node, message):
        if self._cut(node):
            return False
        journal = getattr(self._syncObj, "_SyncObj__raftLog", None)
        if isinstance(journal, DurableJournal):
            journal.sync()
        sent = super().send(node, message)
        if sent:  # only pysyncobj's thread writes the count (another SyncObj than ours has none)
            self._syncObj.messages_sent = getattr(self._syncObj, "messages_sent", 0) + 1
        return sent

    # A test-only fault filter (``RaftLog(cut_off=...)``, the chaos harness without root): no
    # connection to or from a voter it names, as if the network between us were down.

    def _cut(self, node) -> bool:
        cut_off = getattr(self._syncObj, "cut_off", None)
        if cut_off is None or not cut_off(node.address):
            return False
        conn = self._connections.get(node)
        if conn is not None and conn.state != CONNECTION_STATE.DISCONNECTED:
            conn.disconnect()
        return True

    def _connectIfNecessarySingle(self, node):  # noqa: N802 (pysyncobj's name)
        if self._cut(node):
            return False
        return super()._connectIfNecessarySingle(node)

    def _onTick(self):  # noqa: N802 (pysyncobj's name)
        if getattr(self._syncObj, "cut_off", None) is not None:
            for node in list(self._nodes):
                self._cut(node)
        super()._onTick()

    def _onMessageReceived(self, node, message):
        ack = None
        if (
            isinstance(message, dict) and message.get("type") == "append_entries"
            and message.get("term", -1) >= self._syncObj.raftCurrentTerm
        ):
            # Hearing the leader (append_entries of the current term, heartbeats included)
            # is when a follower's state was last known current: the age of a stale read.
            self._syncObj.leader_contact = time.monotonic()
            journal = getattr(self._syncObj, "_SyncObj__raftLog", None)
            if journal is not None:
                message, ack = skip_matching_entries(journal, message)
        super()._onMessageReceived(node, message)
        if ack is not None and self._syncObj._getLeader() == node:
            # Entries it already holds, with more after them: say how far it matches (pysyncobj
            # answers nothing for an append it did not take).
            self._syncObj._SyncObj__sendNextNodeIdx(node, nextNodeIdx=ack, success=True)


def skip_matching_entries(log: Sequence[tuple], message: dict) -> tuple[dict, int | None]:
    """Drop the entries of an append this follower already holds; returns (message, ack index or None).

    pysyncobj truncates a follower's log after ``prevLogIdx`` whenever the log goes on
    past it (``syncobj.py``, the ``len(prevEntries) > 1`` branch), even when the entries
    there are the very ones the leader sends again. The leader resends often: a reply
    to an earlier append rewinds its send position, and a resend is capped at
    ``appendEntriesBatchSizeBytes``. So a follower could cut off entries it had
    already acknowledged, even applied (pysyncobj logs "truncating already-applied
    log entries"), and undo the membership changes in them: for a moment its log
    was shorter than the majority the leader had counted on, and its voter set was an
    old one. Raft truncates only from the first entry whose term differs (§5.3, receiver
    rule 3). Here the entries this log already holds with the same term are dropped
    from the message, which then starts after them. When every entry is already here
    and the log goes on further, the message keeps only what a heartbeat does (term,
    leader, commit index up to the last matching entry), and the caller acknowledges
    the last matching index itself (the returned ack). ``log`` holds pysyncobj entries
    ``(command, index, term)`` in index order.
    """
    entries = message.get("entries")
    if "prevLogIdx" not in message or "transmission" in message or not entries or not len(log):
        return message, None
    first, last = log[0][1], log[len(log) - 1][1]
    if entries[0][1] <= first or entries[0][1] != message["prevLogIdx"] + 1:
        return message, None  # before this log's start (a snapshot holds them), or not contiguous
    matched = 0
    for _, idx, term in entries:
        if idx > last or log[idx - first][2] != term:
            break
        matched += 1
    if matched == 0:
        return message, None
    upto_idx, upto_term = entries[matched - 1][1], entries[matched - 1][2]
    message = dict(message, prevLogIdx=upto_idx, prevLogTerm=upto_term, entries=entries[matched:])
    if matched < len(entries) or upto_idx == last:
        return message, None  # pysyncobj appends the rest, truncating only a conflicting tail
    # All held, and more after them: no append at all (pysyncobj would truncate that tail).
    del message["prevLogIdx"], message["prevLogTerm"], message["entries"]
    message["commit_index"] = min(message["commit_index"], upto_idx)
    return message, upto_idx + 1


class RaftKeys:
    """pysyncobj's encryptor with a changeable key set: writes with the current key, reads any accepted one.

    Every connection holds this one object (``transport.py`` hands
    ``SyncObj.encryptor`` to each), so a change reaches open connections at
    once. A frame no accepted key opens raises ``InvalidToken``, and pysyncobj
    hangs up (``tcp_connection.py``). ``set`` runs on any thread while
    pysyncobj's thread reads: it swaps one reference, which Python does atomically.
    """

    def __init__(self, current: str, accepted: Sequence[str] = ()) -> None:
        self._derived: dict[str, Fernet] = {}
        self._lock = threading.Lock()
        self.set(current, accepted)

    def set(self, current: str, accepted: Sequence[str] = ()) -> None:
        """Encrypt with ``current`` from now on; read frames under ``current`` or any of ``accepted``."""
        keys = [current, *(k for k in dict.fromkeys(accepted) if k != current)]
        for key in keys:
            if not isinstance(key, str) or not key:
                raise LocalProtocolError("consensus: a Raft key must be a non-empty string")
        with self._lock:
            # Keys are derived as pysyncobj derives its password (PBKDF2, 100k rounds): slow, so once each.
            derived = {k: self._derived.get(k) or getEncryptor(k) for k in keys}
            self._derived = derived
            self._keys = (current, tuple(keys))
            self._multi = MultiFernet([derived[k] for k in keys])

    def keys(self) -> tuple[str, tuple[str, ...]]:
        """``(current, accepted)``; ``accepted`` starts with ``current``."""
        return self._keys

    def encrypt_at_time(self, data: bytes, current_time: int) -> bytes:
        """A frame under the current key (pysyncobj's ``TcpConnection.send``)."""
        return self._multi.encrypt_at_time(data, current_time)

    def extract_timestamp(self, token: bytes) -> int:
        """The frame's timestamp, once an accepted key has verified it."""
        return self._multi.extract_timestamp(token)

    def decrypt(self, token: bytes) -> bytes:
        """The frame's plaintext under any accepted key."""
        return self._multi.decrypt(token)


def raft_key_works(addr: str, key: str, timeout: float = 2.0) -> bool:
    """Whether the Raft port at ``addr`` reads a frame under ``key`` (a probe: pysyncobj's opening key exchange).

    A node answers the first frame of a connection (its half of the random
    connection key) only when one of its accepted keys opens it; otherwise it
    hangs up (``tcp_connection.py``). Nothing is unpickled here.
    """
    host, _, port = check_addr(addr).rpartition(":")
    frame = getEncryptor(key).encrypt_at_time(zlib.compress(pickle.dumps(os.urandom(32)), 3), int(time.monotonic()))
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(struct.pack("i", len(frame)) + frame)
            return len(sock.recv(4)) > 0  # any answer at all: a refused frame gets a hang-up
    except OSError:  # refused, reset or timed out: no answer
        return False


class _RaftNode(SyncObj):
    """SyncObj that also saves the commit index when it stops, and encrypts with ``RaftKeys``."""

    leader_contact: float | None = None  # monotonic time a follower last heard its leader
    messages_sent = 0  # Raft messages handed to a live connection (appends, heartbeats, votes, ...)

    def __init__(self, *args: Any, raft_keys: RaftKeys, cut_off: Callable[[str], bool] | None = None,
                 **kwargs: Any) -> None:
        self.raft_keys = raft_keys  # before SyncObj.__init__: its transport reads the encryptor
        self.cut_off = cut_off
        super().__init__(*args, **kwargs)

    @property
    def encryptor(self) -> RaftKeys:  # pysyncobj's own (from conf.password) is never used
        """The encryptor every connection uses."""
        return self.raft_keys

    def _checkCommandsToApply(self) -> None:  # noqa: N802 (pysyncobj's name)
        # pysyncobj computes the commit index before it appends new commands in a tick. With
        # other voters, their answers wake the next tick at once; a lone voter would sleep a
        # whole tick (50 ms) before committing what it just appended. Wake it now instead.
        before = len(self._SyncObj__raftLog)
        super()._checkCommandsToApply()
        if not self.otherNodes and len(self._SyncObj__raftLog) != before:
            notifier = getattr(self, "_SyncObj__pipeNotifier", None)
            if notifier is not None:
                notifier.notify()

    def _getEncryptor(self) -> RaftKeys:  # noqa: N802 (pysyncobj's name)
        return self.raft_keys

    def _SyncObj__updateClusterConfiguration(self, newNodes):  # noqa: N802 (pysyncobj's private name)
        # A follower that loads a snapshot from its leader takes the voter set stored in it
        # (syncobj.py, __loadDumpFile). That set is as of the snapshot, and a leader passes on
        # the snapshot it was itself given: it may have joined after it was taken. pysyncobj
        # then drops the leader from its nodes and hangs up on it, the one node that could send
        # the later changes; a chaos run lost Raft for good when a sole voter's new partner did
        # this. The leader stays; the entries after the snapshot bring the rest of the set.
        leader = self._SyncObj__raftLeader
        if leader is not None and leader != self._SyncObj__selfNode and leader not in newNodes:
            newNodes = [*newNodes, leader]
        super()._SyncObj__updateClusterConfiguration(newNodes)

    def _doDestroy(self) -> None:
        # journal.py writes the commit index once a second; save it on a clean stop
        # so a restarted node replays every entry it knew to be committed.
        journal = getattr(self, "_SyncObj__raftLog", None)
        if journal is not None:
            journal.onOneSecondTimer()
        super()._doDestroy()


class RaftLog:
    """A ``Log`` replicated by pysyncobj over its own password-protected TCP port.

    ``partners`` are the other voters' Raft addresses (``"host:port"``). To
    bootstrap a cluster, start one node with no partners. To join one, start
    the new node with ``partners`` = the current voters, then call
    ``add_voter(new_addr, ...)`` on any voter. To restart, pass the same
    ``data_dir`` and the voters as they were. ``on_applied`` is called with the
    new state after every applied write, on pysyncobj's thread: keep it short.
    ``password`` is the key frames are encrypted with; ``accepted_keys`` are
    further keys whose frames are read too (see ``set_raft_keys``).
    ``cut_off`` (test-only, the chaos harness without root) names voters, by
    Raft address, this node keeps no connection with while it says so.
    """

    def __init__(
        self,
        self_addr: str,
        partners: list[str],
        password: str,
        data_dir: Path,
        on_applied: Callable[[ClusterState], None] | None = None,
        bind_host: str | None = None,
        compact_after: int = COMPACT_AFTER,
        accepted_keys: Sequence[str] = (),
        cut_off: Callable[[str], bool] | None = None,
    ) -> None:
        self._self_addr = check_addr(self_addr, "self raft address")
        partners = sorted({check_addr(p, "partner raft address") for p in partners} - {self._self_addr})
        if not isinstance(password, str) or not password:
            raise LocalProtocolError(
                "consensus: a Raft password is required (without one pysyncobj unpickles whatever "
                "reaches its port)"
            )
        host, _, port = self._self_addr.rpartition(":")
        bind_host = host if bind_host is None else bind_host
        if not isinstance(bind_host, str) or not bind_host or bind_host in _WILDCARDS:
            raise LocalProtocolError(
                f"consensus: the Raft port must bind this node's own address, not {bind_host!r}"
            )
        self._data_dir = Path(data_dir)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._keys = RaftKeys(password, accepted_keys)
        self._cut_off = cut_off  # test-only: voters (by address) this node must not talk to
        self._role: Role = "follower"
        self._machine = _Machine(on_applied)
        self._closed = False
        self._close_lock = threading.Lock()
        self._release = threading.Event()
        conf = _settings(password, f"{bind_host}:{port}", self._data_dir, self._on_state_changed, compact_after)
        had_snapshot = (self._data_dir / SNAPSHOT_FILE).exists()
        self._node = self._start(conf, partners, f"{bind_host}:{port}")
        try:
            self._wait_replayed(had_snapshot)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"RaftLog({self._self_addr!r}, {'closed' if self._closed else self._role})"

    # -- the Log port ---------------------------------------------------------------

    def submit(self, command: Command, timeout: float) -> Any:
        """Commit ``command`` through the leader and return ``apply()``'s result on this node."""
        check_timeout(timeout, allow_zero=False)
        data = encode_command(command)
        self._check_usable(f"commit {command.TYPE}")
        deadline = time.monotonic() + timeout
        handed_over = False
        while True:
            self._wait_for_leader(deadline, f"commit {command.TYPE}", timeout, handed_over=handed_over)
            handed_over = True
            try:
                result = self._machine.apply_entry(data, sync=True, timeout=self._left(deadline))
                if not self._node.otherNodes:  # a lone voter commits without sending: sync here
                    self._sync_journal()
                break
            except SyncObjException as exc:
                if exc.errorCode in _RETRY and time.monotonic() + _RETRY_PAUSE < deadline:
                    time.sleep(_RETRY_PAUSE)
                    continue
                raise ConsensusUnavailable(
                    self._unavailable(f"commit {command.TYPE}", timeout, exc.errorCode)
                ) from None
        if isinstance(result, Refusal):
            raise ConsensusError(result.reason)
        return result

    def state(self) -> ClusterState:
        """The state applied on this node."""
        if self._machine.fault:
            raise ConsensusError(self._machine.fault)
        return self._machine.state

    def status(self) -> RaftStatus:
        """This node's Raft view (read from pysyncobj's thread without locking: a snapshot)."""
        leader = self._node._getLeader()
        return RaftStatus(
            role=self._role,
            leader=None if leader is None else leader.id,
            term=self._node.raftCurrentTerm,
            commit_index=self._node.raftCommitIndex,
            last_applied=self._node.raftLastApplied,
            voters=self._voters(),
            self_addr=self._self_addr,
            last_index=self._last_index(),
        )

    def _last_index(self) -> int:
        journal = getattr(self._node, "_SyncObj__raftLog", None)
        try:  # read from another thread than pysyncobj's: a snapshot, like the rest of status()
            return int(journal[len(journal) - 1][1]) if journal is not None and len(journal) else 0
        except (IndexError, TypeError):
            return 0

    def state_age(self) -> float | None:
        """Seconds since this node's applied state was last known current; None if never.

        A follower counts from the last message it had from its leader; a leader
        from the moment a majority (itself included) last answered it; a lone
        voter that leads is always current. Without a leader the age grows.
        """
        now = time.monotonic()
        contact = self._majority_contact() if self._role == "leader" else self._node.leader_contact
        return None if contact is None else max(now - contact, 0.0)

    def _majority_contact(self) -> float:
        """When a leader last heard from a majority (itself included), in monotonic seconds."""
        others = self._node.otherNodes
        if not others:
            return time.monotonic()  # a lone voter is its own majority
        responses = getattr(self._node, "_SyncObj__lastResponseTime", {})
        times = sorted((responses.get(n, 0.0) for n in others), reverse=True)
        return times[(len(others) + 1) // 2 - 1]  # answers besides its own that make a majority

    def add_voter(self, addr: str, timeout: float) -> None:
        """Add the node at ``addr`` as a voter, waiting until the change commits.

        The node must already run with ``partners`` = the current voters (a
        two-voter cluster cannot commit without it). ``timeout=0`` hands the
        change to the leader and returns at once, without knowing the outcome.
        """
        addr = check_addr(addr)
        check_timeout(timeout, allow_zero=True)
        self._check_usable(f"add voter {addr}")
        if addr in self._voters():
            return
        self._change_membership("add", addr, timeout)

    def transfer_leadership(self, timeout: float) -> str | None:
        """On the leader: hand leadership to the most caught-up voter (Raft's TimeoutNow).

        Returns the new leader's address, or None when there was nobody to hand it to or
        no other voter led within ``timeout`` (this node may still lead then). pysyncobj
        lets no leader remove itself; a leader that transfers first stays a voter while
        the new leader removes it, so even a two-voter cluster keeps a leader throughout.
        """
        check_timeout(timeout, allow_zero=False)
        self._check_usable("transfer leadership")
        if self._role != "leader" or not self._node.otherNodes:
            return None
        asked = threading.Event()

        def sent(_result: Any, error: int) -> None:
            if error == FAIL_REASON.SUCCESS:
                asked.set()

        def on_tick() -> None:  # pysyncobj's state belongs to its thread; its tick lock is held here
            # Refused while the chosen voter lacks the newest entries (writes keep coming): ask again.
            if not asked.is_set() and self._node._isLeader():
                self._node.transferLeadership(None, sent)

        self._node.addOnTickCallback(on_tick)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                leader = self._node._getLeader()
                if asked.is_set() and leader is not None and leader.id != self._self_addr:
                    return leader.id
                time.sleep(_POLL)
        finally:
            self._node.removeOnTickCallback(on_tick)
        return None

    def remove_voter(self, addr: str, timeout: float) -> None:
        """Remove the node at ``addr`` from the voters, waiting until the change commits.

        A node cannot remove itself (pysyncobj refuses a leader removing itself):
        call this on another voter. ``timeout=0`` returns without waiting.
        """
        addr = check_addr(addr)
        check_timeout(timeout, allow_zero=True)
        if addr == self._self_addr:
            raise LocalProtocolError("consensus: a node cannot remove itself as a voter; ask another voter")
        self._check_usable(f"remove voter {addr}")
        if addr not in self._voters():
            return
        self._change_membership("remove", addr, timeout)

    def raft_keys(self) -> tuple[str, tuple[str, ...]]:
        """``(current, accepted)``: the key frames are sent under, and every key whose frames are read."""
        return self._keys.keys()

    def set_raft_keys(self, current: str, accepted: Sequence[str] = ()) -> None:
        """Send under ``current`` from now on and read only ``current`` and ``accepted`` (open connections too).

        A peer still sending under a key no longer accepted is hung up on at its
        next frame. Deriving a new key takes ~0.1 s: call from a worker thread.
        """
        self._keys.set(current, accepted)

    def messages_sent(self) -> int:
        """Raft messages this node has sent to other voters since it started."""
        return self._node.messages_sent

    def close(self) -> None:
        """Stop pysyncobj's thread, its port and the journal. Safe to call twice."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._node.destroy_synchronous()
        self._release.set()
        self._owner.join()

    # -- internals --------------------------------------------------------------------

    def _start(self, conf: SyncObjConf, partners: list[str], bind_addr: str) -> _RaftNode:
        built: queue.Queue = queue.Queue(maxsize=1)

        def own() -> None:
            try:
                node = _RaftNode(self._self_addr, partners, conf, consumers=[self._machine],
                                 transportClass=_DurableTransport, raft_keys=self._keys, cut_off=self._cut_off)
            except Exception as exc:
                built.put(exc)
                return
            try:
                node.waitBinded()
            except SyncObjException as exc:
                node.destroy_synchronous()
                built.put(exc)
                return
            built.put(node)
            self._release.wait()  # pysyncobj ticks only while this thread lives

        self._owner = threading.Thread(target=own, name=f"meshnode-raft {self._self_addr}", daemon=True)
        self._owner.start()
        outcome = built.get()
        if isinstance(outcome, SyncObjException):
            self._owner.join()
            raise ConsensusError(
                f"consensus: cannot listen for Raft on {bind_addr} (is the port taken?); "
                "choose another raft port"
            )
        if isinstance(outcome, Exception):
            self._owner.join()
            raise ConsensusError(
                f"consensus: cannot open the Raft journal in {self._data_dir} ({outcome!r}); "
                "move the directory aside to start this node afresh"
            ) from outcome
        return outcome

    def _wait_replayed(self, had_snapshot: bool) -> None:
        # A restarted node loads its snapshot and replays its journal on the tick
        # thread's first tick; wait for that so state() is whole from the start.
        # pysyncobj only logs a snapshot it cannot read and carries on from an
        # empty state: refuse to start instead (DESIGN: corrupt files are reported).
        ticked = threading.Event()
        self._node.addOnTickCallback(ticked.set)  # runs after a tick's snapshot load
        try:
            ticked.wait(_STARTUP_LIMIT)
        finally:
            self._node.removeOnTickCallback(ticked.set)
        if had_snapshot and not self._machine.snapshot_loaded:
            raise ConsensusError(
                f"consensus: the Raft snapshot {self._data_dir / SNAPSHOT_FILE} could not be read "
                f"({self._machine.fault or 'see the pysyncobj log'}); move {self._data_dir} aside "
                "and join the cluster afresh"
            )
        target, applied = self._node.raftCommitIndex, self._node.raftLastApplied
        stall = time.monotonic() + _REPLAY_STALL
        while self._node.raftLastApplied < target and self._node.tick_thread_alive():
            if self._node.raftLastApplied != applied:
                applied, stall = self._node.raftLastApplied, time.monotonic() + _REPLAY_STALL
            elif time.monotonic() > stall:
                # The journal ends before the saved commit index (entries lost in a
                # crash): the leader will send them again.
                log.warning(
                    "consensus: journal in %s ends at entry %d, before the committed %d; "
                    "waiting for the leader to resend", self._data_dir, applied, target,
                )
                return
            time.sleep(_POLL)

    def _sync_journal(self) -> None:
        journal = getattr(self._node, "_SyncObj__raftLog", None)
        if isinstance(journal, DurableJournal):
            journal.sync()

    def journal_length(self) -> int:
        """Entries in the journal now (compaction keeps this near ``compact_after``)."""
        journal = getattr(self._node, "_SyncObj__raftLog", None)
        return len(journal) if journal is not None else 0

    def journal_syncs(self) -> int:
        """fsyncs of the journal so far (group commit: far fewer than writes under load)."""
        journal = getattr(self._node, "_SyncObj__raftLog", None)
        return journal.syncs if isinstance(journal, DurableJournal) else 0

    def _on_state_changed(self, old: int, new: int) -> None:
        if old == _RAFT_STATE.LEADER and getattr(self, "_node", None) is not None:
            # A leader that steps down was last current when a majority last answered it.
            self._node.leader_contact = self._majority_contact()
        self._role = _ROLES.get(new, "follower")

    def _voters(self) -> list[str]:
        return sorted({self._self_addr} | {node.id for node in self._node.otherNodes})

    def _reachable(self) -> int:
        return 1 + sum(1 for node in self._node.otherNodes if self._node.isNodeConnected(node))

    def _check_usable(self, what: str) -> None:
        if self._closed:
            raise LocalProtocolError(f"consensus: cannot {what}: the Raft log is closed")
        if self._machine.fault:
            raise ConsensusError(self._machine.fault)

    @staticmethod
    def _left(deadline: float) -> float:
        return max(deadline - time.monotonic(), 0.001)

    def _unavailable(self, what: str, timeout: float, why: Any, *, handed_over: bool = True) -> str:
        reason = "timed out" if why == "Timeout" else _REASONS.get(why, str(why))
        leader = self._node._getLeader()
        outcome = (
            "It may still apply once a majority is back; retrying is safe"
            if handed_over
            else "Nothing was submitted; start or reconnect a majority of the voters"
        )
        return (
            f"consensus: no majority: could not {what} within {timeout:g} s ({reason}; "
            f"leader {leader.id if leader else 'unknown'}, {self._reachable()} of {len(self._voters())} "
            f"voters reachable). {outcome}"
        )

    def _wait_for_leader(self, deadline: float, what: str, timeout: float, *, handed_over: bool) -> None:
        # With no leader pysyncobj would queue the command until one appears, and
        # apply it long after our caller gave up: only hand it over to a leader.
        while self._node._getLeader() is None:
            if time.monotonic() >= deadline:
                raise ConsensusUnavailable(
                    self._unavailable(what, timeout, "no Raft leader known", handed_over=handed_over)
                )
            time.sleep(_POLL)

    def _change_membership(self, kind: str, addr: str, timeout: float) -> None:
        change = self._node.addNodeToCluster if kind == "add" else self._node.removeNodeFromCluster
        wanted = (lambda: addr in self._voters()) if kind == "add" else (lambda: addr not in self._voters())
        what = f"{kind} voter {addr}"
        if timeout == 0:
            change(addr)
            return
        deadline = time.monotonic() + timeout
        handed_over = False
        while True:
            self._wait_for_leader(deadline, what, timeout, handed_over=handed_over)
            handed_over = True
            done = threading.Event()
            outcome: list[int] = []

            def finished(result: Any, error: int) -> None:
                outcome.append(error)
                done.set()

            change(addr, callback=finished)
            if not done.wait(self._left(deadline)):
                hint = "; the new node must run with partners = the current voters" if kind == "add" else ""
                raise ConsensusUnavailable(self._unavailable(what, timeout, "Timeout") + hint)
            error = outcome[0]
            if error == FAIL_REASON.SUCCESS:
                return
            # REQUEST_DENIED: a new leader changes membership only after its first
            # entry commits, or another change is under way. Retry while time remains.
            retry = error in _RETRY or error == FAIL_REASON.REQUEST_DENIED
            if retry and time.monotonic() + _RETRY_PAUSE < deadline:
                time.sleep(_RETRY_PAUSE)
                if wanted():
                    return
                continue
            raise ConsensusUnavailable(self._unavailable(what, timeout, error))
