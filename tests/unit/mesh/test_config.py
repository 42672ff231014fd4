"""node.yaml validation: good files load, bad ones fail with one line naming the field."""

from __future__ import annotations

import os

import pytest

from mesh.config import Config, ConfigError, read_identity, read_mesh_key, write_secret


def write(tmp_path, text):
    (tmp_path / "node.yaml").write_text(text)
    return tmp_path


def test_minimal_file_gets_defaults(tmp_path):
    cfg = Config.load(write(tmp_path, "name: a\n"))
    assert cfg.tier == "edge" and cfg.inference.max_queue == 8 and cfg.raft.voters == 3
    assert cfg.data_dir == tmp_path and cfg.listen_host == "127.0.0.1"


def test_round_trip_through_yaml(tmp_path):
    cfg = Config.from_dict({"name": "n", "tier": "cloud", "capabilities": ["gpu"], "raft": {"port": 4000}},
                           data_dir=tmp_path)
    cfg.save()
    assert Config.load(tmp_path) == cfg


@pytest.mark.parametrize(
    "text, needle",
    [
        ("tier: edge\n", "name: Field required"),
        ("name: a\ntier: spaceship\n", "tier: Input should be 'device', 'edge' or 'cloud'"),
        ("name: a\nlisten: tcp://x\n", "listen: must look like /ip4/HOST/tcp/PORT"),
        ("name: a\napi: nowhere\n", "api: must look like HOST:PORT"),
        ("name: a\njoin: [/ip4/1.2.3.4/tcp/1]\n", "join: "),
        ("name: a\ncolour: red\n", "colour: unknown field"),
        ("name: a\ninference: {max_queue: -1}\n", "inference.max_queue"),
        ("name: [a\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
    ],
)
def test_bad_files_name_the_field(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        Config.load(write(tmp_path, text))
    assert needle in str(err.value) and str(err.value).startswith("config: ")
    assert "\n" not in str(err.value)


def test_missing_file_says_how_to_create_it(tmp_path):
    with pytest.raises(ConfigError, match="meshnode init"):
        Config.load(tmp_path / "nowhere")


def test_secrets_are_private_and_checked(tmp_path):
    write_secret(tmp_path / "identity.key", b"x" * 32)
    assert (tmp_path / "identity.key").stat().st_mode & 0o777 == 0o600
    assert read_identity(tmp_path) == b"x" * 32
    os.chmod(tmp_path / "identity.key", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_identity(tmp_path)
    (tmp_path / "mesh.key").write_text("zz\n")
    with pytest.raises(ConfigError, match="64 hex"):
        read_mesh_key(tmp_path / "mesh.key")


def test_one_node_per_data_dir(tmp_path):
    from mesh.config import DataDirLock

    with DataDirLock(tmp_path):
        with pytest.raises(ConfigError, match=rf"already running in .* \(pid {os.getpid()}\)"):
            with DataDirLock(tmp_path):
                pass
    with DataDirLock(tmp_path):  # released on exit
        pass


def test_result_cache_size_default_zero_and_bad_value(tmp_path) -> None:
    assert Config.from_dict({"name": "n"}, data_dir=tmp_path).inference.result_cache_mb == 64
    assert Config.from_dict({"name": "n", "inference": {"result_cache_mb": 0}}, data_dir=tmp_path)
    with pytest.raises(ConfigError, match="inference.result_cache_mb"):
        Config.from_dict({"name": "n", "inference": {"result_cache_mb": -1}}, data_dir=tmp_path)


def test_offload_off_written_bare_in_yaml_means_off():
    import yaml

    from mesh.config import InferenceSettings

    assert InferenceSettings(**yaml.safe_load("offload: off")).offload == "off"
    assert InferenceSettings(**yaml.safe_load("offload: prefer")).offload == "prefer"
    with pytest.raises(ValueError, match="offload"):
        InferenceSettings(**yaml.safe_load("offload: on"))
