"""Write docs/cli.md from the `mailroom` command's own help (run after changing the CLI).

tests/foundation/test_docs.py fails when docs/cli.md is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.cli import cli  # noqa: E402

HEADER = """# Command line reference

Generated from `mailroom --help` by `python scripts/gen_cli_docs.py`; do not edit by hand.
"""


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += _walk(command.commands[name], [*path, name])
    return found


def render() -> str:
    out = [HEADER]
    for path, command in _walk(cli, ["mailroom"]):
        ctx = click.Context(
            command, info_name=" ".join(path), terminal_width=100, max_content_width=100
        )
        out.append(f"\n## `{' '.join(path)}`\n\n```\n{command.get_help(ctx).strip()}\n```\n")
    return "".join(out)


if __name__ == "__main__":
    target = ROOT / "docs" / "cli.md"
    target.parent.mkdir(exist_ok=True)
    target.write_text(render())
    print(f"wrote {target}")
