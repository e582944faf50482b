"""`mailroom db …`: schema migrations."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    cli.add_command(db)
    cli.add_command(secret_key)


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade(revision: str) -> None:
    """Apply migrations to DATABASE_URL (SQLite or PostgreSQL)."""
    from bot.config import load_settings
    from bot.store import migrate
    from bot.store.db import make_engine

    settings = load_settings()
    migrate.upgrade(make_engine(settings.database_url), revision)
    click.echo(f"Database upgraded to {revision}.")


@db.command("check")
def check() -> None:
    """Fail if the models and the migrations disagree."""
    from bot.config import load_settings
    from bot.store import migrate
    from bot.store.db import make_engine

    settings = load_settings()
    migrate.check(make_engine(settings.database_url))
    click.echo("Models and migrations agree.")


@click.command("secret-key")
def secret_key() -> None:
    """Print a new key for MAILROOM_SECRET_KEY."""
    from bot.crypto import generate_key

    click.echo(generate_key())
