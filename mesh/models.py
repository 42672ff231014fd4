"""Model files on a node: registration, copying from peers, loading into onnxruntime.

``model add`` copies the file into ``models/<sha256>.onnx`` and commits its
record to Raft. Every node runs ``ModelFiles.run``: for each registered model it
has not loaded, it fetches the file from the origin or any peer that serves it
(1 MiB chunks over the RPC plane, fsynced, sha256-verified) and loads it. A file
that fails to fetch or load is removed and retried after ``MODEL_RETRY`` seconds,
so one bad model never takes the node down or floods the mesh.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from consensus import ModelRecord, ModelRegister
from crdt.errors import MeshError, RemoteProtocolError
from inference import ModelSpec, read_model_spec

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("meshnode.models")

MODEL_CHUNK = 1024 * 1024
MODEL_RETRY = 10.0  # seconds before a model that failed to fetch or load is tried again


def record_spec(record: ModelRecord) -> ModelSpec:
    """The inference layer's spec of a registered model."""
    return ModelSpec.from_wire(
        {"sha256": record.sha256, "size": record.size, "inputs": list(record.inputs), "outputs": list(record.outputs)}
    )


class ModelFiles:
    """The model files of one node and the loop that keeps them complete."""

    def __init__(self, node: "Node") -> None:
        self._node = node
        self._dir = node.data_dir / "models"
        self._dir.mkdir(exist_ok=True)
        self._fetching: set[str] = set()
        self.errors: dict[str, str] = {}
        self._retry_at: dict[str, float] = {}
        self._known: set[str] = set()  # model names seen registered

    def path(self, sha: str) -> Path:
        """Where the file with this sha256 lives on this node."""
        return self._dir / f"{sha}.onnx"

    async def add(self, name: str, path: str | Path) -> dict:
        """Register a model in Raft and keep its file here for peers to fetch."""
        src = Path(path)
        if not src.is_file():
            raise MeshError(f"inference: model file {src} does not exist")
        spec: ModelSpec = await trio.to_thread.run_sync(read_model_spec, src)
        dest = self.path(spec.sha256)
        if not dest.exists():
            await trio.to_thread.run_sync(shutil.copyfile, src, dest.with_suffix(".part"))
            dest.with_suffix(".part").replace(dest)
        wire = spec.to_wire()
        record = ModelRecord(
            name=name, sha256=spec.sha256, size=spec.size,
            inputs=wire["inputs"], outputs=wire["outputs"], origin=self._node.peer_id,
        )
        await self._node.submit(ModelRegister(record=record))  # refused if the name holds another model
        await self._ensure_loaded(record)
        return record.to_wire()

    async def run(self) -> None:
        """Fetch and load every registered model this node lacks."""
        while True:
            try:
                models = await self._node.cluster_models()
            except MeshError:
                models = {}
            if set(models) - self._known:  # a model was registered: the leader places it now, not at its next round
                self._known |= set(models)
                self._node.placement_driver.poke()
            now = trio.current_time()
            for record in models.values():
                if self._retry_at.get(record.name, 0.0) > now:
                    continue
                if not self._node.runtime.has(record.name) and record.sha256 not in self._fetching:
                    self._fetching.add(record.sha256)
                    self._node._nursery.start_soon(self._fetch_model, record)
            await trio.sleep(0.5)

    async def _fetch_model(self, record: ModelRecord) -> None:
        try:
            await self._fetch_model_once(record)
        except (MeshError, OSError) as exc:
            # A file that will not load is removed so the next round fetches it afresh.
            log.error("model %s: %s", record.name, exc)
            self.path(record.sha256).unlink(missing_ok=True)
            self.errors[record.name] = str(exc)
            self._retry_at[record.name] = trio.current_time() + MODEL_RETRY

    async def _fetch_model_once(self, record: ModelRecord) -> None:
        try:
            path = self.path(record.sha256)
            if not path.exists():
                sources = [record.origin] + [
                    r.descriptor.peer_id for r in self._node.peers.alive(trio.current_time())
                    if record.name in r.load.models
                ]
                for source in dict.fromkeys(sources):
                    if source == self._node.peer_id or not self._node.host.is_connected(source):
                        continue
                    try:
                        await self._download(source, record, path)
                        break
                    except MeshError as exc:
                        log.warning("model %s: fetch from %s failed: %s", record.name, source, exc)
                else:
                    return
            await self._ensure_loaded(record)
        finally:
            self._fetching.discard(record.sha256)

    async def _download(self, source: str, record: ModelRecord, path: Path) -> None:
        part = path.with_suffix(".part")
        digest = hashlib.sha256()
        fh = await trio.to_thread.run_sync(open, part, "wb")
        try:
            offset = 0
            while offset < record.size:
                chunk = await self._node.rpc.call(
                    source, "model.fetch", {"sha256": record.sha256, "offset": offset, "length": MODEL_CHUNK}, timeout=10
                )
                if not isinstance(chunk, bytes) or not chunk or offset + len(chunk) > record.size:
                    raise RemoteProtocolError(f"mesh: model.fetch from {source} returned a bad chunk")
                await trio.to_thread.run_sync(fh.write, chunk)
                digest.update(chunk)
                offset += len(chunk)
            await trio.to_thread.run_sync(lambda: (fh.flush(), os.fsync(fh.fileno())))
        finally:
            fh.close()
        if digest.hexdigest() != record.sha256:
            part.unlink()
            raise RemoteProtocolError(f"mesh: model {record.name} from {source} does not match its sha256")
        part.replace(path)
        log.info("model %s (%d bytes) copied from %s", record.name, record.size, source)

    async def on_fetch(self, peer: str, body: Any) -> bytes:
        """Serve a chunk of a model file to a peer (``model.fetch``)."""
        if not isinstance(body, dict):
            raise RemoteProtocolError("mesh: model.fetch needs a map")
        sha, offset, length = body.get("sha256"), body.get("offset"), body.get("length")
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise RemoteProtocolError("mesh: model.fetch needs a sha256")
        if not (isinstance(offset, int) and isinstance(length, int) and offset >= 0 and 0 < length <= MODEL_CHUNK):
            raise RemoteProtocolError("mesh: model.fetch offset/length out of range")
        path = self.path(sha)
        if not path.exists():
            raise MeshError(f"inference: model {sha[:12]} is not on this node")

        def read() -> bytes:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read(length)

        return await trio.to_thread.run_sync(read)

    async def _ensure_loaded(self, record: ModelRecord) -> None:
        if self._node.runtime.has(record.name):
            return
        spec = record_spec(record)
        await trio.to_thread.run_sync(self._node.runtime.load, record.name, self.path(record.sha256), spec)
        log.info("model %s loaded (%s)", record.name, ", ".join(self._node.runtime.providers))
        self._node._advert_now.set()
