"""meshnode restore refuses a damaged or hostile archive, naming what is wrong, and writes nothing."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from crdt.errors import MeshError
from mesh.backup import FORMAT, VERSION, backup, restore
from mesh.cluster import LocalCluster


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One node dir and its backup for the whole module (`meshnode init` runs a process)."""
    root = tmp_path_factory.mktemp("backup")
    node_dir = LocalCluster(root).init_node("n").data_dir
    out = root / "n.tar.gz"
    backup(node_dir, out)
    return node_dir, out


@pytest.fixture
def archive(made, tmp_path):
    copy = tmp_path / "n.tar.gz"
    copy.write_bytes(made[1].read_bytes())
    return copy


def rewrite(src, dest, change):
    """Copy the archive, letting ``change(name, data)`` return new data, or None to drop the member."""
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dest, "w:gz") as tout:
        for member in tin.getmembers():
            data = change(member.name, tin.extractfile(member).read())
            if data is None:
                continue
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


def test_a_clean_archive_restores(archive, tmp_path):
    manifest = restore(archive, tmp_path / "ok")
    assert manifest["format"] == FORMAT and (tmp_path / "ok" / "identity.key").exists()


@pytest.mark.parametrize("change, says", [
    (lambda n, d: d[:-1] + bytes([d[-1] ^ 1]) if n == "node.yaml" else d, "node.yaml is damaged"),
    (lambda n, d: None if n == "mesh.key" else d, "lacks mesh.key"),
    (lambda n, d: None if n == "manifest.json" else d, "no readable manifest.json"),
    (lambda n, d: json.dumps({**json.loads(d), "version": VERSION + 1}).encode() if n == "manifest.json" else d,
     "backup version"),
    (lambda n, d: json.dumps({**json.loads(d), "format": "tar"}).encode() if n == "manifest.json" else d,
     "not a meshnode backup"),
])
def test_a_damaged_archive_is_refused_by_name(archive, tmp_path, change, says):
    bad = tmp_path / "bad.tar.gz"
    rewrite(archive, bad, change)
    with pytest.raises(MeshError, match=says):
        restore(bad, tmp_path / "target")
    assert not (tmp_path / "target").exists()
    assert not [p for p in tmp_path.iterdir() if ".restore-" in p.name]  # no half-restored leftovers


def test_a_member_outside_the_directory_is_refused(archive, tmp_path):
    evil = tmp_path / "evil.tar.gz"

    def change(name, data):
        if name == "manifest.json":
            doc = json.loads(data)
            doc["files"]["../escape"] = {"bytes": 3, "sha256": "0" * 64}
            return json.dumps(doc).encode()
        return data

    rewrite(archive, evil, change)
    with tarfile.open(evil, "r:gz") as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    with tarfile.open(evil, "w:gz") as t:
        for m, data in members + [(tarfile.TarInfo("../escape"), b"bad")]:
            m.size = len(data)
            t.addfile(m, io.BytesIO(data))
    with pytest.raises(MeshError, match="escape"):
        restore(evil, tmp_path / "target")
    assert not (tmp_path / "escape").exists()


def test_it_restores_only_into_a_new_or_empty_directory(archive, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(MeshError, match="not empty"):
        restore(archive, busy)
    assert (busy / "keep.txt").read_text() == "mine"
    with pytest.raises(MeshError, match="cannot open"):  # not a gzip archive at all
        restore(busy / "keep.txt", tmp_path / "t2")


def test_backup_names_a_directory_that_is_no_node(tmp_path):
    with pytest.raises(MeshError, match="no node.yaml"):
        backup(tmp_path, tmp_path / "x.tar.gz")
