"""meshnode's embedding API: ``from mesh import Node, Config``.

Names are loaded on first use so that ``meshnode`` client commands do not pay
for importing py-libp2p (about a second) when they only talk HTTP.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "BackgroundNode",
    "Config",
    "InferResult",
    "LocalProtocolError",
    "MeshError",
    "Node",
    "QuorumNotReached",
    "RemoteProtocolError",
]

_HOME = {
    "BackgroundNode": "mesh.embed",
    "Config": "mesh.config",
    "InferResult": "mesh.node",
    "LocalProtocolError": "crdt.errors",
    "MeshError": "crdt.errors",
    "Node": "mesh.node",
    "QuorumNotReached": "mesh.sensor_quorum",
    "RemoteProtocolError": "crdt.errors",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'mesh' has no attribute {name!r}")
    value = getattr(import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
