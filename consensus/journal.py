"""``DurableJournal``: the Raft log on disk, checksummed and fsynced before anything depends on it.

pysyncobj's own ``FileJournal`` writes through an mmap and never syncs it; its
term/vote file is replaced without an fsync; and compaction rewrites the
journal in place (clear, then re-add), so a crash in the middle loses entries.
This class keeps pysyncobj's journal interface (``add``, ``clear``,
``deleteEntriesFrom``, ``deleteEntriesTo``, indexing, the meta getters and
setters, ``onOneSecondTimer``) with different guarantees.

Theory of operation
-------------------
* File: ``MAGIC`` then records ``<I len><I crc32><Q idx><Q term>`` + command
  bytes; the CRC covers idx, term and command. Appends are ``pwrite`` at the
  end; nothing is synced until ``sync()``.
* ``sync()`` fsyncs if anything changed since the last one. ``RaftLog`` calls
  it before pysyncobj sends any message (so a follower's acknowledgement, and
  the leader's own copy counted towards a majority, are on disk before they
  count) and before a submitted write is reported done. Entries added in one
  tick share one fsync: group commit.
* Loading stops at the first incomplete or failing record and truncates the
  file there, with a log line. A torn tail can only hold entries nobody was
  told about (they were not synced); the leader resends anything missing.
* Term and vote are written to ``<file>.meta`` synchronously (temp file, fsync,
  rename, fsync of the directory) before pysyncobj acts on them, so a restarted
  node never goes back to an older term or votes twice in one. The commit
  index is saved at most once a second: it is only a hint for replay.
* ``deleteEntriesTo`` (compaction after a snapshot) writes the kept entries to
  a temporary file, fsyncs and renames it over the journal: a crash leaves
  either the old journal or the new one. Entries only leave the journal once
  the snapshot that covers them is durable: pysyncobj writes its snapshot
  without an fsync, so the journal fsyncs the snapshot file and its directory
  first (also before ``clear``, which pysyncobj calls when it installs a
  snapshot received from the leader).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import msgpack

log = logging.getLogger("meshnode.consensus")

MAGIC = b"meshnode raft journal v1\n"
_RECORD = struct.Struct("<IIQQ")  # command length, crc32, idx, term
MAX_COMMAND = 64 * 1024 * 1024  # a longer "record" on disk is corruption, not a command


class DurableJournal:
    """pysyncobj's journal interface over an fsynced, checksummed append-only file."""

    def __init__(self, path: str | os.PathLike, snapshot: str | os.PathLike | None = None) -> None:
        self._path = Path(path)
        self._snapshot = None if snapshot is None else Path(snapshot)
        self._meta_path = self._path.with_name(self._path.name + ".meta")
        self._sync_lock = threading.Lock()
        self._entries: list[tuple[bytes, int, int]] = []
        self._offsets: list[int] = []
        self._meta: dict[str, Any] = self._read_meta()
        self._meta_saved = True
        self._dirty = False
        self.syncs = 0  # fsyncs done (group commit makes this far fewer than entries)
        self._fd = self._open()

    # -- loading ---------------------------------------------------------------------

    def _open(self) -> int:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        data = b""
        with open(fd, "rb", closefd=False) as fh:
            data = fh.read()
        if not data:
            os.pwrite(fd, MAGIC, 0)
            os.fsync(fd)
            _fsync_dir(self._path.parent)
            self._end = len(MAGIC)
            return fd
        if not data.startswith(MAGIC):
            os.close(fd)
            raise OSError(f"{self._path} is not a meshnode Raft journal (wrong header)")
        pos = len(MAGIC)
        while pos + _RECORD.size <= len(data):
            length, crc, idx, term = _RECORD.unpack_from(data, pos)
            end = pos + _RECORD.size + length
            if length > MAX_COMMAND or end > len(data):
                break
            command = data[pos + _RECORD.size : end]
            if zlib.crc32(command, zlib.crc32(data[pos + 8 : pos + _RECORD.size])) != crc:
                break
            self._entries.append((command, idx, term))
            self._offsets.append(pos)
            pos = end
        if pos < len(data):
            log.warning(
                "consensus: journal %s: dropped %d bytes after entry %d (an unfinished or damaged "
                "write); the leader resends what is missing", self._path, len(data) - pos,
                self._entries[-1][1] if self._entries else 0,
            )
            os.ftruncate(fd, pos)
            os.fsync(fd)
        self._end = pos
        return fd

    def _read_meta(self) -> dict[str, Any]:
        try:
            raw = self._meta_path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            meta = msgpack.unpackb(raw)
        except Exception as exc:
            raise OSError(f"{self._meta_path} is damaged ({exc}); the node's term and vote are unknown") from None
        if not isinstance(meta, dict):
            raise OSError(f"{self._meta_path} is damaged (not a map)")
        return meta

    # -- the log ----------------------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        """Append an entry (durable at the next ``sync``)."""
        command = bytes(command)
        head = struct.pack("<QQ", idx, term)
        crc = zlib.crc32(command, zlib.crc32(head))
        record = struct.pack("<II", len(command), crc) + head + command
        os.pwrite(self._fd, record, self._end)
        self._offsets.append(self._end)
        self._entries.append((command, idx, term))
        self._end += len(record)
        self._dirty = True

    def clear(self) -> None:
        """Drop every entry (pysyncobj: after installing a snapshot)."""
        self._persist_snapshot()
        self._truncate(0)

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """Drop entries from position ``entryFrom`` on (a conflicting suffix)."""
        self._truncate(entryFrom)

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop entries before position ``entryTo`` (compaction), atomically."""
        self._persist_snapshot()
        kept = self._entries[entryTo:]
        tmp = self._path.with_name(self._path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(MAGIC)
            for command, idx, term in kept:
                head = struct.pack("<QQ", idx, term)
                fh.write(struct.pack("<II", len(command), zlib.crc32(command, zlib.crc32(head))) + head + command)
            fh.flush()
            os.fsync(fh.fileno())
        with self._sync_lock:
            os.close(self._fd)
            os.replace(tmp, self._path)
            _fsync_dir(self._path.parent)
            self._entries, self._offsets = [], []
            self._fd = self._open()
            self._dirty = False

    def _truncate(self, position: int) -> None:
        end = self._offsets[position] if position < len(self._offsets) else self._end
        del self._entries[position:]
        del self._offsets[position:]
        os.ftruncate(self._fd, end)
        self._end = end
        self._dirty = True

    def _persist_snapshot(self) -> None:
        """fsync the snapshot and its directory entry, so entries it covers may leave the journal."""
        if self._snapshot is None or not self._snapshot.exists():
            return
        fd = os.open(self._snapshot, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self._snapshot.parent)

    def __getitem__(self, item):
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    # -- durability ------------------------------------------------------------------

    def sync(self) -> None:
        """Make every change so far durable (one fsync for all of them)."""
        with self._sync_lock:
            if self._dirty:
                self._dirty = False
                os.fsync(self._fd)
                self.syncs += 1

    def flush(self) -> None:
        """pysyncobj's name for ``sync``."""
        self.sync()

    def _destroy(self) -> None:
        self.sync()
        self.onOneSecondTimer()
        os.close(self._fd)

    # -- term, vote, commit index ----------------------------------------------------------

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        """Remember the commit index (saved within a second; a hint for replay)."""
        self._meta["commit"] = raftCommitIndex
        self._meta_saved = False

    def getRaftCommitIndex(self) -> int:
        """The last saved commit index (1 when none)."""
        return self._meta.get("commit", 1)

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        """Store term and vote durably before pysyncobj acts on them (Raft §5.1, Figure 2)."""
        self._meta["term"] = term
        self._meta["voted_for"] = None if votedForNodeId is None else str(votedForNodeId)
        self._store_meta()

    def getCurrentTerm(self) -> int:
        """The stored term."""
        return self._meta.get("term", 0)

    def getVotedForNodeId(self) -> Any:
        """Whom this node voted for in the stored term."""
        return self._meta.get("voted_for")

    def onOneSecondTimer(self) -> None:
        """Save the commit index if it moved."""
        if not self._meta_saved:
            self._store_meta()

    def _store_meta(self) -> None:
        tmp = self._meta_path.with_name(self._meta_path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(msgpack.packb(self._meta))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._meta_path)
        _fsync_dir(self._meta_path.parent)
        self._meta_saved = True


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
