"""Back up a node and restore it: ``meshnode backup`` / ``meshnode restore``.

Theory of operation
-------------------
A backup is one ``.tar.gz`` (mode 0600: it holds the node's identity and the
mesh key) with a ``manifest.json`` naming every file with its size and
sha256. It holds what cannot be had back from the mesh:

* ``node.yaml``, ``identity.key`` (the peer id) and ``mesh.key``;
* the sensor stores (``sensors.sqlite``, ``zone.sqlite``, ``local.sqlite``),
  copied with SQLite's online backup API, so a running node's stores are
  copied consistently while it keeps writing;
* optionally the model files (``--with-models``; otherwise a restored node
  fetches every registered model from its peers again).

It leaves out Raft (``raft/``) on purpose. A Raft voter must never come back
with an older log than the one it acknowledged: the majority that committed
an entry counted it, and a voter that forgot it could elect a leader without
it. So a restored node joins the Raft cluster like a new node (its
``raft/membership.json`` says it left); it never bootstraps a cluster of its
own, and it gets a seat again when the voter planner has one free. The
agreed state comes back from the cluster.

The sensor stores need one more step. A store's entries carry dots (writer
id, counter); restored, the counters go back to the backup's, and new writes
under the same writer id would reuse dots the peers have seen and skip. So a
restore moves each synced store to a new writer epoch (``<store>.epoch``),
i.e. a new writer id; the entries themselves merge with the peers' as after
any partition. Local-only entries never sync and need nothing.

``restore`` checks everything before it writes anything: the manifest's
format and version, that every member is a plain file the manifest names with
the right size and sha256, that no name leaves the directory, and that the
target directory is new or empty. Any failure is a ``MeshError`` naming the
file and what is wrong; the target is left untouched.

If the backed-up node had no join addresses (the mesh's first node), the
addresses of the peers it was connected to at backup time are recorded and
written into the restored ``node.yaml``, so it finds the mesh again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any
from zlib import error as zlib_error

import yaml

from crdt.errors import MeshError

from .config import IDENTITY_FILE, MESH_KEY_FILE, NODE_FILE, Config, read_identity
from .host import peer_id_from_seed
from .sensor_db import read_epoch, write_epoch
from .sensor_scopes import LOCAL_FILE, SHARED_FILE, ZONE_FILE

FORMAT = "meshnode-backup"
VERSION = 1
MANIFEST = "manifest.json"
KEYS = (NODE_FILE, IDENTITY_FILE, MESH_KEY_FILE)
STORES = (SHARED_FILE, ZONE_FILE, LOCAL_FILE)
SYNCED = (SHARED_FILE, ZONE_FILE)  # stores with writer ids (and an epoch file each)
MAX_MEMBER = 4 * 1024**3


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _copy_store(src: Path, dest: Path) -> None:
    """A consistent copy of a SQLite store, even while its node writes to it (SQLite's online backup)."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def backup(data_dir: Path, out: Path, *, models: bool = False, join: list[str] = ()) -> dict[str, Any]:
    """Write the backup of the node in ``data_dir`` to ``out``; returns its manifest."""
    data_dir, out = Path(data_dir), Path(out)
    for name in KEYS:
        if not (data_dir / name).is_file():
            raise MeshError(f"backup: {data_dir} has no {name}; is it a node's data directory?")
    cfg = Config.load(data_dir)
    files: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="meshnode-backup-") as tmp:
        stage = Path(tmp)
        for name in KEYS:
            shutil.copyfile(data_dir / name, stage / name)
        for name in STORES:
            if (data_dir / name).exists():
                try:
                    _copy_store(data_dir / name, stage / name)
                except sqlite3.Error as exc:
                    raise MeshError(f"backup: cannot copy {data_dir / name}: {exc}") from None
                epoch = data_dir / f"{name}.epoch"
                if epoch.exists():
                    shutil.copyfile(epoch, stage / epoch.name)
        if models and (data_dir / "models").is_dir():
            (stage / "models").mkdir()
            for path in sorted((data_dir / "models").glob("*.onnx")):
                shutil.copyfile(path, stage / "models" / path.name)
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):
            files[path.relative_to(stage).as_posix()] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        manifest = {
            "format": FORMAT, "version": VERSION, "created": round(time.time(), 3),
            "peer_id": peer_id_from_seed(read_identity(data_dir)), "name": cfg.name,
            "join": [] if cfg.join else sorted(set(join)), "files": files,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for name in files:
                tar.add(stage / name, arcname=name, recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        part.replace(out)
    return manifest


def _read_manifest(tar: tarfile.TarFile, where: Path) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST)
        raw = tar.extractfile(member)
        manifest = json.loads(raw.read(1 << 20)) if raw is not None else None
    except (KeyError, ValueError) as exc:
        raise MeshError(f"restore: {where} has no readable {MANIFEST} ({exc}); is it a meshnode backup?") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise MeshError(f"restore: {where} is not a meshnode backup (manifest format {manifest.get('format')!r})"
                        if isinstance(manifest, dict) else f"restore: {where}: {MANIFEST} must be a JSON object")
    if manifest.get("version") != VERSION:
        raise MeshError(f"restore: {where} is backup version {manifest.get('version')!r}; this meshnode reads "
                        f"version {VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and type(v.get("bytes")) is int and isinstance(v.get("sha256"), str) for v in files.values()
    ):
        raise MeshError(f"restore: {where}: manifest field 'files' must map names to their bytes and sha256")
    missing = [name for name in KEYS if name not in files]
    if missing:
        raise MeshError(f"restore: {where} lacks {', '.join(missing)}")
    join = manifest.get("join", [])
    if not (isinstance(join, list) and all(isinstance(a, str) for a in join)):
        raise MeshError(f"restore: {where}: manifest field 'join' must be a list of addresses")
    return manifest


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and len(path.parts) <= 2


def restore(archive: Path, data_dir: Path) -> dict[str, Any]:
    """Restore the backup ``archive`` into the new or empty directory ``data_dir``; returns its manifest."""
    archive, data_dir = Path(archive), Path(data_dir)
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise MeshError(f"restore: {data_dir} exists and is not empty; restore into a new directory")
    try:
        tar = tarfile.open(archive, mode="r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise MeshError(f"restore: cannot open {archive}: {exc}") from None
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=data_dir.parent))
    try:
        with tar:
            manifest = _read_manifest(tar, archive)
            files, seen = manifest["files"], set()
            try:
                members = tar.getmembers()
            except (OSError, tarfile.TarError, EOFError) as exc:
                raise MeshError(f"restore: {archive} is damaged: {exc}") from None
            for member in members:
                name = member.name
                if name == MANIFEST:
                    continue
                if not _safe_name(name) or name not in files or not member.isfile() or name in seen:
                    raise MeshError(f"restore: {archive}: member {name!r} is not a file the manifest names")
                expected = files[name]
                if member.size != expected["bytes"] or member.size > MAX_MEMBER:
                    raise MeshError(f"restore: {archive}: {name} has {member.size} bytes, the manifest says "
                                    f"{expected['bytes']}")
                dest = stage / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                try:
                    src = tar.extractfile(member)
                    with open(dest, "wb") as out:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            h.update(block)
                            out.write(block)
                except (OSError, tarfile.TarError, EOFError, zlib_error) as exc:
                    raise MeshError(f"restore: {archive}: {name} cannot be read: {exc}") from None
                if h.hexdigest() != expected["sha256"]:
                    raise MeshError(f"restore: {archive}: {name} is damaged (sha256 differs from the manifest)")
                seen.add(name)
            lost = sorted(set(files) - seen)
            if lost:
                raise MeshError(f"restore: {archive} lacks {', '.join(lost)} that its manifest names")
        _after_restore(stage, manifest)
        for name in (IDENTITY_FILE, MESH_KEY_FILE):
            os.chmod(stage / name, 0o600)
        os.chmod(stage, 0o700)
        if data_dir.exists():
            data_dir.rmdir()  # empty (checked above)
        stage.replace(data_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return manifest


def _after_restore(stage: Path, manifest: dict[str, Any]) -> None:
    """New writer epochs for the synced stores, Raft left behind, and the join addresses if it had none."""
    for name in SYNCED:
        if (stage / name).exists():
            epoch_file = stage / f"{name}.epoch"
            old = read_epoch(epoch_file) if epoch_file.exists() else 0
            write_epoch(epoch_file, max((old or 0) + 1, int(time.time())))
    cfg = Config.load(stage)  # names a bad node.yaml before anything lands
    raft = stage / "raft"
    raft.mkdir()
    (raft / "membership.json").write_text(json.dumps(
        {"self": f"{cfg.listen_host}:{cfg.raft.port}", "partners": [], "added": False, "left": True}))
    if not cfg.join and manifest.get("join"):
        raw = yaml.safe_load((stage / NODE_FILE).read_text()) or {}
        raw["join"] = list(manifest["join"])
        (stage / NODE_FILE).write_text(yaml.safe_dump(raw, sort_keys=False))
        Config.load(stage)


__all__ = ["FORMAT", "VERSION", "backup", "restore"]
