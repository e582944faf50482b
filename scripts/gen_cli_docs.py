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


def _walk(
    command: click.Command, path: list[str], parent: click.Context | None = None
) -> list[tuple[list[str], click.Context]]:
    # Each context has its parent's, as when the command runs: settings such as the group's
    # help_option_names ("-h") are inherited. A context without one rendered "--help" only,
    # unless an earlier invocation had cached the option on the command (an order-dependent
    # test failure).
    ctx = command.context_class(
        command,
        parent=parent,
        info_name=path[-1],
        terminal_width=100,
        max_content_width=100,
        **command.context_settings,
    )
    found = [(path, ctx)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += _walk(command.commands[name], [*path, name], ctx)
    return found


def render() -> str:
    out = [HEADER]
    for path, ctx in _walk(cli, ["mailroom"]):
        out.append(f"\n## `{' '.join(path)}`\n\n```\n{ctx.command.get_help(ctx).strip()}\n```\n")
    return "".join(out)


if __name__ == "__main__":
    target = ROOT / "docs" / "cli.md"
    target.parent.mkdir(exist_ok=True)
    target.write_text(render())
    print(f"wrote {target}")
