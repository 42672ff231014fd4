"""Laws of the command codec and the state machine (Hypothesis)."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import (
    ClusterState,
    ConfigGet,
    ConfigSet,
    MemberAdd,
    MemberRemove,
    ModelRecord,
    ModelRegister,
    PeerAdmit,
    PeerRevoke,
    Refusal,
    apply,
    decode_command,
    decode_state,
    encode_command,
    encode_state,
)
from consensus.commands import WRITES

# Small pools make collisions (same key, same model name, same address) common.
keys = st.sampled_from(["a", "b", "threshold"]) | st.text(min_size=1, max_size=256)
names = st.sampled_from(["cnn", "vad"]) | st.text(min_size=1, max_size=20)
peers = st.sampled_from(["p1", "p2", "p3"]) | st.text(min_size=1, max_size=20)
hosts = st.text(alphabet=string.ascii_lowercase + string.digits + ".-", min_size=1, max_size=20)
addrs = st.sampled_from(["10.0.0.1:4000", "10.0.0.2:4000"]) | st.builds(
    "{}:{}".format, hosts, st.integers(1, 65535)
)
# A few real libp2p peer ids (ed25519, sha256, secp256k1 forms) so admits and revokes collide.
peer_ids = st.sampled_from([
    "12D3KooWGzBw2WRxj3tHLdT8wT5sVMwDkbeoX3Hx1Q6wD7HhXX9Z",
    "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5nw1dNBGZ2wEjS9BwHL",
    "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
    "16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY",
])
peer_names = st.sampled_from(["", "cam", "gw"]) | st.text(alphabet=string.printable.strip(), max_size=20)
sha256s = st.sampled_from(["a" * 64, "b" * 64]) | st.text(
    alphabet="0123456789abcdef", min_size=64, max_size=64
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
specs = st.lists(st.dictionaries(st.text(max_size=8), values, max_size=3), max_size=3)
records = st.builds(
    ModelRecord,
    name=names,
    sha256=sha256s,
    size=st.integers(0, 2**63 - 1),
    inputs=specs,
    outputs=specs,
    origin=peers,
)
commands = st.one_of(
    st.builds(ConfigSet, key=keys, value=values),
    st.builds(ConfigGet, key=keys),
    st.builds(ModelRegister, record=records),
    st.builds(MemberAdd, peer_id=peers, raft_addr=addrs),
    st.builds(MemberRemove, peer_id=peers),
    st.builds(PeerAdmit, peer_id=peer_ids, name=peer_names,
              members=st.dictionaries(peer_ids, peer_names, max_size=3)),
    st.builds(PeerRevoke, peer_id=peer_ids, members=st.dictionaries(peer_ids, peer_names, max_size=3)),
)


def run(state: ClusterState, sequence) -> tuple[ClusterState, list]:
    results = []
    for command in sequence:
        state, result = apply(state, command)
        results.append(result)
    return state, results


@given(commands)
def test_codec_round_trip(command):
    assert decode_command(encode_command(command)) == command


@given(commands)
def test_encoding_is_canonical(command):
    """Equal commands encode to equal bytes, so replicas log identical entries."""
    data = encode_command(command)
    assert encode_command(decode_command(data)) == data


@settings(max_examples=100)
@given(st.lists(commands, max_size=30))
def test_apply_is_deterministic_across_replicas(sequence):
    """Raft's state-machine safety needs it: the same log gives the same state everywhere.

    One replica applies the commands as built; the other applies what it
    decoded from the log bytes, starting from a fresh empty state.
    """
    here, here_results = run(ClusterState(), sequence)
    there, there_results = run(ClusterState(), [decode_command(encode_command(c)) for c in sequence])
    assert here == there
    assert here_results == there_results
    assert encode_state(here) == encode_state(there)


@settings(max_examples=100)
@given(st.lists(commands, max_size=30))
def test_revision_counts_the_accepted_writes(sequence):
    state, results = run(ClusterState(), sequence)
    accepted = [
        c for c, r in zip(sequence, results) if isinstance(c, WRITES) and not isinstance(r, Refusal)
    ]
    assert state.revision == len(accepted)


@settings(max_examples=100)
@given(st.lists(commands, max_size=30))
def test_snapshot_round_trip_of_any_reachable_state(sequence):
    state, _ = run(ClusterState(), sequence)
    assert decode_state(encode_state(state)) == state


@settings(max_examples=100)
@given(st.lists(commands, max_size=20), st.lists(commands, max_size=20))
def test_a_snapshot_restores_a_replica_that_continues_identically(before, after):
    """A follower installed from a snapshot and then fed the rest of the log ends where the leader did."""
    leader, _ = run(ClusterState(), before)
    follower = decode_state(encode_state(leader))
    assert run(leader, after) == run(follower, after)


@given(st.lists(commands, max_size=20))
def test_every_model_name_stays_bound_to_its_first_hash(sequence):
    state, _ = run(ClusterState(), sequence)
    first: dict[str, str] = {}
    for command in sequence:
        if isinstance(command, ModelRegister):
            first.setdefault(command.record.name, command.record.sha256)
    assert {name: r.sha256 for name, r in state.models.items()} == first
