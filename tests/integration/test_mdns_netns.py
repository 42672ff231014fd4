"""mDNS discovery between real ``meshnode`` processes on a LAN the test builds itself (issue 3).

The LAN exists only inside network namespaces created here: one namespace holds a
bridge, each node gets its own namespace joined to it by a veth pair, with a
10.77.0.0/24 address that exists nowhere else, so no multicast leaves the machine
(DEPENDENCY-NOTES: test mDNS only inside a network namespace you created). The
nodes have no join addresses: mDNS is the only way they can meet.

Checked: three nodes holding one mesh key find each other and form a mesh; a
fourth node holding another key is sighted (it dials the members) but refused at
the Noise + PSK handshake, so no one counts it as a member ("a sighting becomes a
member only after a Noise handshake with the mesh PSK").
"""

from __future__ import annotations

import json

import pytest

from mesh.cluster import wait_for
from mesh.config import MESH_KEY_FILE
from mesh.netlab import Lan, why_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def lan(tmp_path):
    reason = why_unavailable()
    if reason:
        pytest.skip(f"mDNS test needs private network namespaces: {reason}")
    net = Lan(tmp_path, prefix="mdns")
    try:
        net.build_switch()
        yield net
    finally:
        net.close()
        for log in sorted(tmp_path.glob("*.log")):
            print(f"--- {log.name} (tail) ---")
            print("\n".join(log.read_text(errors="replace").splitlines()[-25:]))
        assert not net.leftover(), f"namespaces left behind: {net.leftover()}"


def test_nodes_on_a_lan_find_each_other_by_mdns_and_a_stranger_is_refused(lan, tmp_path):
    members, stranger = [], None
    for i in range(4):
        ns, addr = lan.add_host(i)
        data_dir = tmp_path / f"n{i}"
        args = ["init", str(data_dir), "--name", f"n{i}", "--listen", f"/ip4/{addr}/tcp/0"]
        if 0 < i < 3:
            args += ["--mesh-key", str(tmp_path / "n0" / MESH_KEY_FILE)]  # same mesh, no join address
        out = lan.meshnode(ns, *args)
        assert out.returncode == 0, out.stderr
        fields = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
        node = {"ns": ns, "dir": data_dir, "peer_id": fields["peer id"], "name": f"n{i}"}
        if i < 3:
            members.append(node)
        else:
            stranger = node  # n3 made a mesh of its own: another key
    assert (stranger["dir"] / MESH_KEY_FILE).read_text() != (members[0]["dir"] / MESH_KEY_FILE).read_text()
    nodes = [*members, stranger]
    for node in nodes:
        config = (node["dir"] / "node.yaml").read_text()
        assert "join: []" in config and "mdns: true" in config  # the default: nothing but mDNS to go on
        node["proc"] = lan.start(node["ns"], node["dir"])

    def peers(node) -> dict[str, str]:
        if node["proc"].poll() is not None:
            raise AssertionError(f"{node['name']} exited with {node['proc'].returncode}")
        out = lan.meshnode(node["ns"], "peers", "-d", str(node["dir"]), "--json", timeout=30)
        if out.returncode != 0:
            return {}  # not up yet (no api.addr)
        return {p["peer_id"]: p["state"] for p in json.loads(out.stdout)}

    def meshed() -> bool:
        for node in members:
            others = {m["peer_id"] for m in members if m is not node}
            seen = peers(node)
            if not all(seen.get(p) == "alive" for p in others):
                return False
        return True

    wait_for(meshed, 60, "the three members to find each other over mDNS", interval=0.5)

    # The stranger saw the members (it dialled them) and was refused at the handshake.
    member_ids = {m["peer_id"] for m in members}
    stranger_log = tmp_path / "n3.log"

    def stranger_refused_by_all() -> bool:
        failed = [line for line in stranger_log.read_text(errors="replace").splitlines() if "discovery: " in line]
        return all(any(p in line for line in failed) for p in member_ids)

    wait_for(stranger_refused_by_all, 30, "the stranger's mDNS dial of every member to be refused")
    assert peers(stranger) == {}
    for node in members:
        assert stranger["peer_id"] not in peers(node)
    member_logs = "".join((tmp_path / f"{m['name']}.log").read_text(errors="replace") for m in members)
    assert "refused a connection" in member_logs  # the members say why, too
