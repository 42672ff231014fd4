"""mDNS discovery pieces that need no LAN: the setting, which addresses are announced, the thread hand-off.

The real discovery between processes is tests/integration/test_mdns_netns.py.
"""

from __future__ import annotations

import threading

import multiaddr
import pytest
import trio

from mesh.config import Config, ConfigError
from mesh.host import (
    Host,
    _Sightings,
    mdns_announce_addrs,
    new_identity_seed,
    parse_peer_id,
)

PEER = "12D3KooWASAGyhqZZPP2cNDHop6pjUWQDSiLGzrYe4dXLUEiuQNN"


def test_mdns_is_on_by_default_and_validated(tmp_path):
    assert Config.from_dict({"name": "a"}, data_dir=tmp_path).discovery.mdns is True
    off = Config.from_dict({"name": "a", "discovery": {"mdns": False}}, data_dir=tmp_path)
    assert off.discovery.mdns is False
    with pytest.raises(ConfigError, match=r"^config: node.yaml: discovery.mdns: "):
        Config.from_dict({"name": "a", "discovery": {"mdns": "sometimes"}}, data_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"discovery.bonjour: unknown field"):
        Config.from_dict({"name": "a", "discovery": {"bonjour": True}}, data_dir=tmp_path)


@pytest.mark.parametrize(
    "addr, announced",
    [
        ("/ip4/192.168.1.20/tcp/4001", True),
        ("/ip4/10.77.0.1/tcp/4001", True),
        ("/ip6/fd00::5/tcp/4001", True),
        ("/ip4/127.0.0.1/tcp/4001", False),  # every LAN peer would dial itself
        ("/ip6/::1/tcp/4001", False),
        ("/ip4/0.0.0.0/tcp/4001", False),  # says nothing a peer can dial
        ("/ip4/169.254.3.4/tcp/4001", False),
        ("/ip4/192.168.1.20/udp/4001/quic-v1", False),
        ("/dns4/example.com/tcp/4001", False),
    ],
)
def test_only_lan_addresses_are_announced(addr, announced):
    assert mdns_announce_addrs([addr]) == ([addr] if announced else [])


def test_a_node_on_loopback_stays_silent():
    """The default listen address: mDNS must neither announce nor browse (no zeroconf threads)."""
    seen: list = []

    async def main() -> None:
        host = Host(seed=new_identity_seed(), psk_hex="ab" * 32, listen="/ip4/127.0.0.1/tcp/0",
                    on_peer_event=lambda *_: None)
        async with host.running():
            with trio.fail_after(5):
                await host.run_mdns(lambda peer, addrs: seen.append(peer))  # returns at once: idle

    trio.run(main)
    assert seen == []
    assert not [t.name for t in threading.enumerate() if "zeroconf" in t.name.lower()]


def test_sightings_reach_the_trio_thread_with_dialable_addresses_only():
    got: list[tuple[str, list[str], bool]] = []

    async def main() -> None:
        trio_thread = threading.current_thread()

        def on_sighting(peer: str, addrs: list[str]) -> None:
            got.append((peer, addrs, threading.current_thread() is trio_thread))

        sightings = _Sightings(on_sighting, trio.lowlevel.current_trio_token())
        addrs = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/1"), multiaddr.Multiaddr("/ip4/10.1.2.3/tcp/4001")]
        # As zeroconf's browser thread does.
        await trio.to_thread.run_sync(sightings.add_addrs, parse_peer_id(PEER), addrs, 120)
        await trio.to_thread.run_sync(sightings.add_addrs, parse_peer_id(PEER), addrs[:1], 120)  # loopback only
        sightings.closed = True
        await trio.to_thread.run_sync(sightings.add_addrs, parse_peer_id(PEER), addrs, 120)  # after stop

    trio.run(main)
    assert got == [(PEER, [f"/ip4/10.1.2.3/tcp/4001/p2p/{PEER}"], True)]
