"""A node's configuration: ``node.yaml`` in its data dir, validated as one tree.

Validation is pydantic v2: every field has a type, a default and a reason; a bad
file fails with one line naming the field (``config: node.yaml: tier: must be
one of device, edge, cloud``), never a traceback.

Besides ``node.yaml`` a data dir holds ``identity.key`` (the ed25519 seed that
fixes the peer id, mode 0600), ``mesh.key`` (the mesh's pre-shared key, hex,
mode 0600), the Raft journal, the sensor-state SQLite file and the model files.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from crdt.errors import MeshError

from .privacy import PrivacySettings

NODE_FILE = "node.yaml"
IDENTITY_FILE = "identity.key"
MESH_KEY_FILE = "mesh.key"
API_ADDR_FILE = "api.addr"
API_TOKEN_FILE = "api.token"
LOCK_FILE = "node.lock"

Tier = Literal["device", "edge", "cloud"]
TIERS = ("device", "edge", "cloud")
_HOSTPORT = re.compile(r"^(?P<host>[^:\s]+):(?P<port>\d{1,5})$")


class ConfigError(MeshError):
    """``node.yaml`` or another data-dir file is missing or malformed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RaftSettings(_Section):
    """Raft (pysyncobj) settings."""

    port: int = Field(0, ge=0, le=65535, description="TCP port of pysyncobj's own channel; 0 = pick at init")
    voters: Literal[3, 5] = Field(3, description="how many voters the mesh keeps; the rest forward")
    write_timeout: float = Field(3.0, gt=0, le=60, description="seconds a write may wait for a majority")
    replace_after: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="seconds a voter must stay dead (failure detector's verdict, or gone) before the leader "
        "replaces it with the best non-voting node. Long enough that a restart or a short network blip does "
        "not cost a membership change (each change briefly lowers fault tolerance and a replaced node must "
        "catch up), short enough that a lost machine does not leave the mesh one failure from no majority "
        "for long. A graceful stop hands over its vote at once and does not wait for this",
    )


class InferenceSettings(_Section):
    """Local inference settings."""

    max_queue: int = Field(
        8, ge=0, le=10_000,
        description="requests queued here while peers may still send more (advertised: a peer's planner counts "
        "this node as having room below it); 0 = no room for peers, and this node sends its own requests to a "
        "peer whenever one has room (as offload: prefer)",
    )
    queue_limit: int = Field(32, ge=1, le=100_000, description="requests queued here (own and peers') before refusing")
    workers: int = Field(1, ge=1, le=64, description="onnxruntime runs at once on this node")
    max_batch: int = Field(
        8, ge=1, le=256,
        description="requests of one model that queued up while the workers were busy run as one batch, up to "
        "this many, when every input and output of the model has a free first (batch) axis; an idle node never "
        "waits to fill a batch. 1 = no batching (each request runs alone)",
    )
    offload: Literal["auto", "off", "prefer"] = Field(
        "auto",
        description="where requests made here run: auto = wherever the planner predicts the earliest answer "
        "(here, whole on a peer, or this node's partitions then a peer's), from measured compute, queues and "
        "links; off = always here (peers' requests are still served); prefer = on the best peer with room "
        "whenever there is one (a battery-powered node, say), here otherwise",
    )
    exit_threshold: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="for a model with an early-exit head: answer here from the head when its top probability "
        "is above this (1 = never exit early, 0 = always); otherwise the features go on to the upper part",
    )
    providers: list[str] = Field(
        default_factory=list,
        description="onnxruntime execution providers to use, best first (e.g. [CUDAExecutionProvider, "
        "CPUExecutionProvider]); empty = the best this node offers, in the order TensorRT, CUDA, MIGraphX, "
        "ROCm, OpenVINO, CoreML, DirectML, QNN, then CPU (inference/providers.py). Names are checked here; "
        "one this node's onnxruntime lacks fails at start",
    )
    shared_thread_pool: bool = Field(
        False,
        description="one onnxruntime pool for all sessions (faster for chains of partitions, but its "
        "threads spin between runs and onnxruntime cannot turn that off); default: a pool per session "
        "with spinning off, which leaves the CPU to libp2p and Raft between requests",
    )

    result_cache_mb: float = Field(
        64,
        ge=0,
        le=1_048_576,
        description="MiB of model outputs kept for repeated requests (same model file, same input bytes, "
        "dtypes and shapes), least recently used out first; a hit answers without running the model. "
        "0 turns the cache off (e.g. for models that are not deterministic)",
    )

    @field_validator("offload", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false; that is what a person writing `offload: off` means.
        return "off" if value is False else value

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, value: list[str]) -> list[str]:
        if value:
            from inference.providers import KNOWN_PROVIDERS, unknown_providers  # lazy: pulls in onnxruntime

            if unknown := unknown_providers(value):
                raise ValueError(f"unknown execution providers {unknown}; known: {sorted(KNOWN_PROVIDERS)}")
        return value


class SyncSettings(_Section):
    """Sensor-state anti-entropy settings."""

    interval: float = Field(0.5, gt=0, le=60, description="seconds between digest exchanges with each peer")
    max_store_mb: float = Field(
        1024, gt=0,
        description="MB the sensor-state file may hold. A node cut off from its peers keeps taking writes, "
        "stored here until they sync; beyond this, writes of new keys fail with a clear error (overwrites "
        "that do not grow a value still pass) and nothing stored is lost. Entries from peers are not refused",
    )
    min_free_mb: float = Field(
        64, ge=0,
        description="MB that must stay free on the data dir's disk: below it every local write fails with a "
        "clear error instead of SQLite running out of space mid-write",
    )


class DiscoverySettings(_Section):
    """How the node finds peers besides its ``join`` addresses."""

    mdns: bool = Field(
        True,
        description="announce this node and look for peers with mDNS on the LAN. On by default because a "
        "LAN node should find its mesh without typing addresses, yet it only acts on a LAN listen "
        "address: a node listening on loopback or 0.0.0.0 (the default, and every local test cluster) "
        "neither announces nor browses, sends no multicast and starts no zeroconf threads. Sighted peers "
        "are admitted like join addresses (Noise with the mesh key, then hello)",
    )


class Config(_Section):
    """One node's validated configuration."""

    name: str = Field(..., min_length=1, max_length=64, description="human name shown in peers and status")
    tier: Tier = Field("edge", description="device, edge or cloud: what this machine is")
    capabilities: list[str] = Field(default_factory=list, description="free-form tags (camera, gpu, …)")
    location: str = Field(
        "", max_length=128,
        description="where the node is; also its zone: zone-only keys sync only with peers of the same location",
    )
    listen: str = Field("/ip4/127.0.0.1/tcp/0", description="libp2p listen multiaddr; port fixed at init")
    api: str = Field("127.0.0.1:0", description="HOST:PORT of the local HTTP API; port 0 = any free port")
    api_token: bool | None = Field(
        None, description="require the token in api.token (made at first start, 0600) on every API request, "
        "as 'Authorization: Bearer TOKEN' or ?token=TOKEN (the dashboard in a browser). None = when the API "
        "listens on anything but a loopback address")
    join: list[str] = Field(default_factory=list, description="peer addresses to join (…/p2p/PEER_ID)")
    links: bool = Field(
        True,
        description="offer and use direct links: RPC over AES-GCM-protected TCP on an extra port (any free "
        "port on the listen address), keyed inside libp2p; ~10x py-libp2p's speed. Off: libp2p only",
    )
    raft: RaftSettings = Field(default_factory=RaftSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    privacy: PrivacySettings = Field(
        default_factory=PrivacySettings,
        description="keys that never leave the node or its zone, and noisy aggregates of them (mesh/privacy.py)",
    )
    data_dir: Path = Field(Path("."), exclude=True, description="where this node keeps its files")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if not re.match(r"^/ip[46]/[^/]+/tcp/\d{1,5}$", value):
            raise ValueError("must look like /ip4/HOST/tcp/PORT")
        return value

    @field_validator("api")
    @classmethod
    def _check_api(cls, value: str) -> str:
        match = _HOSTPORT.match(value)
        if not match or int(match["port"]) > 65535:
            raise ValueError("must look like HOST:PORT")
        return value

    @field_validator("join")
    @classmethod
    def _check_join(cls, value: list[str]) -> list[str]:
        for addr in value:
            if "/p2p/" not in addr or not addr.startswith("/ip"):
                raise ValueError(f"{addr!r} must look like /ip4/HOST/tcp/PORT/p2p/PEER_ID")
        return value

    @model_validator(mode="after")
    def _check_zone(self) -> Config:
        if self.privacy.zone_only and not self.location:
            raise ValueError("privacy.zone_only needs `location` set: a node's location is its zone")
        return self

    @property
    def listen_host(self) -> str:
        """The IP address in ``listen``."""
        return self.listen.split("/")[2]

    @property
    def api_host_port(self) -> tuple[str, int]:
        """``api`` split into host and port."""
        host, port = self.api.rsplit(":", 1)
        return host, int(port)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Config":
        """Load a data dir (or its ``node.yaml``), with a one-line error on any problem."""
        path = Path(path)
        file = path if path.suffix in (".yaml", ".yml") else path / NODE_FILE
        data_dir = file.parent
        if not file.exists():
            raise ConfigError(f"config: {file} does not exist (create it with `meshnode init {data_dir}`)")
        try:
            raw = yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config: {file} is not valid YAML: {str(exc).splitlines()[0]}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"config: {file} must be a mapping of fields, got {type(raw).__name__}")
        return cls.from_dict(raw, data_dir=data_dir, source=str(file))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, data_dir: Path, source: str = NODE_FILE) -> "Config":
        """Validate a dict as a config; errors name the field."""
        try:
            return cls.model_validate({**raw, "data_dir": data_dir})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            raise ConfigError(f"config: {source}: {where}: {msg}") from exc

    def to_yaml(self) -> str:
        """The ``node.yaml`` text for this config."""
        return yaml.safe_dump(self.model_dump(mode="json", exclude={"data_dir"}), sort_keys=False)

    def save(self) -> None:
        """Write ``node.yaml`` into the data dir."""
        (self.data_dir / NODE_FILE).write_text(self.to_yaml())


def write_secret(path: Path, data: bytes) -> None:
    """Create a file only its owner can read (mode 0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def read_identity(data_dir: Path) -> bytes:
    """The node's ed25519 seed; refuses a missing, short or world-readable file."""
    path = data_dir / IDENTITY_FILE
    if not path.exists():
        raise ConfigError(f"config: {path} is missing (create the node with `meshnode init`)")
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"config: {path} is readable by others; run `chmod 600 {path}`")
    seed = path.read_bytes()
    if len(seed) != 32:
        raise ConfigError(f"config: {path} must hold a 32-byte ed25519 seed, found {len(seed)} bytes")
    return seed


def read_mesh_key(path: Path) -> str:
    """A mesh key file: 64 hex characters (32 bytes)."""
    if not path.exists():
        raise ConfigError(f"config: mesh key {path} is missing")
    text = path.read_text().strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise ConfigError(f"config: {path} is not a mesh key (expected 64 hex characters)")
    return text.lower()


class DataDirLock:
    """One running node per data dir: an exclusive ``flock`` on ``node.lock``.

    Two nodes on one data dir would share an identity and, because py-libp2p
    listens with SO_REUSEPORT, silently steal each other's connections. The
    kernel drops the lock when the process dies, so a crash never leaves a
    stale lock behind.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "DataDirLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"run: a node is already running in {self.path.parent} (pid {holder}); stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
