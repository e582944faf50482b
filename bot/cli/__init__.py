"""The `mailroom` command line. Each command group lives in its own module with `register()`."""

from __future__ import annotations

import logging
import sys

import click

from bot.cli import db, runtime
from bot.config import ConfigError

COMMAND_MODULES = [runtime, db]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mailroom")
def cli() -> None:
    """Mailroom: a team's shared email inbox that lives in Slack."""


def _register_all() -> None:
    import importlib

    for module in COMMAND_MODULES:
        module.register(cli)
    # Groups that come with later parts of the product register themselves when present.
    for name in ("bot.cli.mail", "bot.cli.clients", "bot.cli.accounts", "bot.cli.sync"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not (exc.name and name.startswith(exc.name)):
                raise
            continue
        module.register(cli)


_register_all()


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        logging.getLogger("mailroom").debug("config error", exc_info=True)
        click.echo(f"Configuration error: {exc}", err=True)
        sys.exit(2)
