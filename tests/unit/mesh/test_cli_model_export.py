"""`meshnode model export`: shipped and built models written out, ready for `model add`; bad requests refused."""

from __future__ import annotations

import hashlib
import json

from click.testing import CliRunner

from inference.catalog import shipped_model
from inference.early_exit import EXIT_OUTPUT
from inference.spec import read_model_spec
from mesh.cli import main


def test_a_shipped_model_is_written_byte_for_byte(tmp_path):
    out = tmp_path / "cls.onnx"
    result = CliRunner().invoke(main, ["model", "export", "ppocr-cls", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert out.read_bytes() == shipped_model("ppocr-cls").path().read_bytes()
    assert doc["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() and doc["size"] == out.stat().st_size


def test_the_early_exit_model_is_the_same_bytes_every_time(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    for path in (a, b):
        assert CliRunner().invoke(main, ["model", "export", "ppocr-cls-exit", str(path)]).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    assert EXIT_OUTPUT in read_model_spec(a).output_names


def test_bad_sizes_names_and_paths_fail_with_one_line(tmp_path):
    bad_size = CliRunner().invoke(main, ["model", "export", "resnet18", str(tmp_path / "r.onnx"), "--size", "100"])
    assert bad_size.exit_code == 1 and "multiple of 32" in bad_size.output
    unknown = CliRunner().invoke(main, ["model", "export", "gpt-5", str(tmp_path / "x.onnx")])
    assert unknown.exit_code == 2 and "gpt-5" in unknown.output
    nowhere = CliRunner().invoke(main, ["model", "export", "ppocr-cls", str(tmp_path / "no" / "x.onnx")])
    assert nowhere.exit_code == 1 and "cannot write" in nowhere.output
