"""Golden wire vectors: the sync messages' encoding cannot drift silently (STYLE §5).

``crdt_messages.json`` holds ``encode_message`` output (the current version)
for the fixed messages below; ``crdt_messages_v1.json`` the version-1 form,
which nodes still read. If a change here is intended, it is a wire change: bump
``crdt.WIRE_VERSION``, keep the old file as ``crdt_messages_v<N>.json``, then
regenerate with
``PYTHONPATH=. python tests/vectors/crdt/test_crdt_vectors.py > tests/vectors/crdt/crdt_messages.json``
and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crdt import (
    WIRE_VERSION,
    CausalContext,
    Delta,
    Dot,
    Entry,
    SyncDelta,
    SyncDigest,
    SyncSummary,
    Timestamp,
    VersionVector,
    decode_message,
    encode_message,
)

VECTORS = Path(__file__).with_name("crdt_messages.json")
VECTORS_V1 = Path(__file__).with_name("crdt_messages_v1.json")

A, B = "12D3KooWNodeA", "12D3KooWNodeB"
READING = Entry(
    key="site/kitchen/temp",
    value={"c": 21.5, "ok": True, "tags": ["north", None], "note": "übertemp", "n": -3},
    ts=Timestamp(1_700_000_000_123, 0, A),
    dot=Dot(A, 4),
)
STATUS = Entry(key="device/cam-1/status", value="online", ts=Timestamp(1_700_000_000_123, 2, B), dot=Dot(B, 7))
CONTEXT = CausalContext(VersionVector({A: 4, B: 5}), [Dot(B, 7), Dot("12D3KooWNodeC", 3)])

MESSAGES = {
    "digest_empty": SyncDigest(context=CausalContext()),
    "digest_with_cloud": SyncDigest(context=CONTEXT),
    "summary": SyncSummary(fingerprint=CONTEXT.fingerprint()),
    "delta_push": SyncDelta(delta=Delta.of_writes([READING])),
    "delta_push_superseding": SyncDelta(delta=Delta.of_writes([READING, STATUS], superseded=[Dot(B, 6)])),
    "delta_push_tombstone": SyncDelta(delta=Delta.of_writes([Entry(
        key="device/cam-2/status", value=None, ts=Timestamp(1_700_000_000_200, 0, B), dot=Dot(B, 8), deleted=True,
    )])),
    "delta_answer_asking_back": SyncDelta(
        delta=Delta(entries=(STATUS, READING), context=CONTEXT),
        reply_context=CausalContext(VersionVector({A: 4, B: 7})),
    ),
    "delta_empty_asking_back": SyncDelta(
        delta=Delta(entries=(), context=CausalContext()), reply_context=CausalContext(VersionVector({B: 1}))
    ),
}


def canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True)


def golden() -> dict:
    return json.loads(VECTORS.read_text())


def test_the_vector_file_covers_exactly_these_messages():
    assert sorted(golden()) == sorted(MESSAGES)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_encoding_matches_the_golden_vector(name):
    assert canonical(encode_message(MESSAGES[name])) == canonical(golden()[name])


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_the_golden_vector_decodes_to_the_message(name):
    assert decode_message(golden()[name]) == MESSAGES[name]


def test_the_fingerprint_of_a_context_is_pinned_too():
    # Nodes compare fingerprints computed on different machines: the hash input cannot drift either.
    assert golden()["summary"][2] == CONTEXT.fingerprint() == CausalContext(
        VersionVector({B: 5, A: 4}), [Dot("12D3KooWNodeC", 3), Dot(B, 7)]).fingerprint()
    assert CausalContext().fingerprint() != CONTEXT.fingerprint()


def test_every_vector_carries_the_current_wire_version():
    assert {vector[1] for vector in golden().values()} == {WIRE_VERSION}


@pytest.mark.parametrize("name", sorted(json.loads(VECTORS_V1.read_text())))
def test_version_1_vectors_still_decode_to_the_same_messages(name):
    v1 = json.loads(VECTORS_V1.read_text())[name]
    assert v1["v"] == 1
    assert decode_message(v1) == MESSAGES[name]


if __name__ == "__main__":
    print(json.dumps({name: encode_message(msg) for name, msg in MESSAGES.items()}, sort_keys=True, indent=2))
