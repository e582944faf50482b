"""Docs grow with the features: every setting and every command is documented."""

from __future__ import annotations

from pathlib import Path

import click

from bot.cli import cli
from bot.config import SETTINGS_HELP

ROOT = Path(__file__).resolve().parents[2]


def _all_docs() -> str:
    parts = [(ROOT / "README.md").read_text()]
    parts += [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(parts)


def _command_paths(group: click.Group, prefix: str = "mailroom") -> list[str]:
    paths = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            paths += _command_paths(command, path)
        else:
            paths.append(path)
    return paths


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in SETTINGS_HELP:
        assert f"| `{name}` |" in readme, f"{name} is missing from README → Configuration"


def test_cli_reference_is_up_to_date() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts/gen_cli_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (ROOT / "docs" / "cli.md").read_text()
    assert current == module.render(), "docs/cli.md is stale: run python scripts/gen_cli_docs.py"
    for path in _command_paths(cli):
        assert f"## `{path}`" in current
