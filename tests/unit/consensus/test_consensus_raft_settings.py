"""RaftLog refuses unsafe settings before pysyncobj starts (DEPENDENCY-NOTES, pysyncobj)."""

from __future__ import annotations

import pytest

from consensus import RaftLog
from crdt.errors import LocalProtocolError


def test_a_password_is_required(tmp_path):
    """Without a password pysyncobj unpickles whatever reaches its port."""
    with pytest.raises(LocalProtocolError, match="password is required"):
        RaftLog("127.0.0.1:4000", [], "", tmp_path)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_the_port_never_binds_a_wildcard(tmp_path, host):
    with pytest.raises(LocalProtocolError, match="own address"):
        RaftLog("127.0.0.1:4000", [], "secret", tmp_path, bind_host=host)


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.0.0.1:0", ":4000", "127.0.0.1:http"])
def test_addresses_are_host_and_port(tmp_path, addr):
    with pytest.raises(LocalProtocolError, match="^consensus: "):
        RaftLog(addr, [], "secret", tmp_path)
    with pytest.raises(LocalProtocolError, match="^consensus: "):
        RaftLog("127.0.0.1:4000", [addr], "secret", tmp_path)
