"""docs/reference.md names every CLI verb with each of its flags, and every node.yaml field with its default."""

from __future__ import annotations

import re
from pathlib import Path

import click
import yaml
from pydantic import BaseModel

from mesh.cli import main
from mesh.config import Config

REFERENCE = (Path(__file__).resolve().parents[2] / "docs" / "reference.md").read_text()
GLOBAL = {"--help", "--json", "--data-dir"}  # every client verb has them; the reference says so once


def commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from commands(cmd, path + (name,))
        else:
            yield path + (name,), cmd


def config_fields(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from config_fields(kind, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def test_every_cli_verb_and_flag_is_in_the_reference():
    missing = []
    for path, cmd in commands(main):
        verb = "meshnode " + " ".join(path)
        # A row of the CLI table naming it: `meshnode state get ...` or, in a shared row, `state list ...`.
        named = re.compile(rf"`(meshnode )?{re.escape(' '.join(path))}(\s|`)")
        rows = [line for line in REFERENCE.splitlines() if line.startswith("| `meshnode ") and named.search(line)]
        if not rows:
            missing.append(verb)
            continue
        for option in (p for p in cmd.params if isinstance(p, click.Option)):
            names = set(option.opts) | set(option.secondary_opts)
            if names & GLOBAL or "-h" in names:
                continue
            if not any(re.search(rf"{re.escape(n)}\b", rows[0]) for n in names):
                missing.append(f"{verb} {max(names, key=len)}")
    assert not missing, f"docs/reference.md lacks: {missing}"


def test_every_node_yaml_field_is_in_the_reference_with_its_default():
    table = REFERENCE[REFERENCE.index("## `node.yaml`"):REFERENCE.index("## Embedding API")]
    missing = [name for name, field in config_fields(Config)
               if not field.exclude and f"| `{name}` |" not in table]
    assert not missing, f"docs/reference.md's node.yaml table lacks: {missing}"
    rows = {line.split("|")[1].strip(" `"): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("| `")}
    wrong = []
    for name, field in config_fields(Config):
        default = field.get_default(call_default_factory=True)
        if field.exclude or field.is_required() or not isinstance(default, (bool, int, float, str, list, type(None))):
            continue
        shown = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
        if isinstance(default, str):
            shown = default if default else '""'
        if f"`{shown}`" not in rows[name]:
            wrong.append(f"{name}: default {shown!r}, the reference says {rows[name]}")
    assert not wrong, "\n".join(wrong)
