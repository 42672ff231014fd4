"""Sensor state that converges: hybrid logical clocks, causal contexts, an LWW map and its sync.

Pure by design (DESIGN: ``crdt`` depends on nothing of ours and does no IO):
wall time and monotonic time are arguments, nothing here reads a clock,
sleeps, spawns or touches the network or disk.

- ``Timestamp``, ``HybridLogicalClock``: ordering writes across nodes.
- ``Dot``, ``VersionVector``, ``CausalContext``: which writes a replica has seen.
- ``Entry``, ``Delta``, ``LWWMap``: the map of last-writer-wins registers.
- ``SyncCore``, ``SyncDigest``, ``SyncDelta``, ``encode_message``,
  ``decode_message``: sans-IO anti-entropy between replicas.
"""

from .causal_context import CausalContext
from .codec import WIRE_VERSION, decode_message, encode_message
from .delta import Delta
from .dot import Dot
from .entry import Entry
from .errors import LocalProtocolError, MeshError, RemoteProtocolError
from .hlc import HybridLogicalClock
from .lww_map import LWWMap
from .messages import Message, SyncDelta, SyncDigest
from .sync import SyncCore
from .timestamp import Timestamp
from .version_vector import VersionVector

__all__ = [
    "CausalContext",
    "Delta",
    "Dot",
    "Entry",
    "HybridLogicalClock",
    "LWWMap",
    "LocalProtocolError",
    "MeshError",
    "Message",
    "RemoteProtocolError",
    "SyncCore",
    "SyncDelta",
    "SyncDigest",
    "Timestamp",
    "VersionVector",
    "WIRE_VERSION",
    "decode_message",
    "encode_message",
]
