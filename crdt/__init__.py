"""Sensor state that converges: hybrid logical clocks, causal contexts, an LWW map and its sync.

Pure by design (DESIGN: ``crdt`` depends on nothing of ours and does no IO):
wall time and monotonic time are arguments, nothing here reads a clock,
sleeps, spawns or touches the network or disk.

- ``Timestamp``, ``HybridLogicalClock``: ordering writes across nodes.
- ``Dot``, ``VersionVector``, ``CausalContext``: which writes a replica has seen.
- ``Entry``, ``Delta``, ``LWWMap``: the map of last-writer-wins registers.
- ``LWWRegister``, ``GCounter``, ``PNCounter``, ``ORSet``, ``ORMap``,
  ``TimeSeriesWindow`` (of ``Sample``): immutable delta-state types, one per
  file; ``encode_state``/``decode_state`` carry them on the wire.
- ``SyncCore``, ``SyncDigest``, ``SyncSummary``, ``SyncDelta``, ``encode_message``,
  ``decode_message``: sans-IO anti-entropy between replicas.
"""

from .causal_context import CausalContext
from .codec import WIRE_VERSION, decode_message, encode_message
from .delta import Delta
from .dot import Dot
from .entry import Entry
from .errors import LocalProtocolError, MeshError, RemoteProtocolError
from .g_counter import GCounter
from .hlc import HybridLogicalClock
from .lww_map import LWWMap
from .lww_register import LWWRegister
from .messages import Message, SyncDelta, SyncDigest, SyncSummary
from .or_map import ORMap
from .or_set import ORSet
from .pn_counter import PNCounter
from .state_codec import STATE_WIRE_VERSION, decode_state, encode_state
from .sync import SyncCore
from .time_series import Sample, TimeSeriesWindow
from .timestamp import Timestamp
from .version_vector import VersionVector

__all__ = [
    "CausalContext",
    "Delta",
    "Dot",
    "Entry",
    "GCounter",
    "HybridLogicalClock",
    "LWWMap",
    "LWWRegister",
    "LocalProtocolError",
    "MeshError",
    "Message",
    "ORMap",
    "ORSet",
    "PNCounter",
    "RemoteProtocolError",
    "STATE_WIRE_VERSION",
    "Sample",
    "SyncCore",
    "SyncDelta",
    "SyncDigest",
    "SyncSummary",
    "TimeSeriesWindow",
    "Timestamp",
    "VersionVector",
    "WIRE_VERSION",
    "decode_message",
    "decode_state",
    "encode_message",
    "encode_state",
]
