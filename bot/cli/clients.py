"""`mailroom clients …`: manage clients (CRM contacts) from a shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from bot.store.models import Client


def register(cli: click.Group) -> None:
    cli.add_command(clients)


def _row(c: Client) -> dict[str, object]:
    return {
        "id": c.id,
        "name": c.name,
        "company": c.company,
        "emails": sorted(a.email for a in c.addresses),
        "domains": sorted(d.domain for d in c.domains),
    }


@click.group()
def clients() -> None:
    """Clients: names, companies, addresses and domains used to link conversations."""


@clients.command("add")
@click.argument("name")
@click.option("--company", default="")
@click.option("--email", "emails", multiple=True, help="Address (repeatable, or 'a@x; b@y').")
@click.option("--domain", "domains", multiple=True, help="Domain (repeatable); not webmail.")
def add(name: str, company: str, emails: tuple[str, ...], domains: tuple[str, ...]) -> None:
    """Add a client."""
    from bot.cli.common import settings_and_db
    from bot.store.clients import ClientError, create_client, split_list
    from bot.store.db import session_scope

    _s, factory = settings_and_db()
    try:
        with session_scope(factory) as s:
            c = create_client(
                s,
                name=name,
                company=company,
                emails=[e for v in emails for e in split_list(v)],
                domains=[d for v in domains for d in split_list(v)],
            )
            click.echo(f"Added client #{c.id} {c.name}.")
    except ClientError as exc:
        raise click.ClickException(str(exc)) from exc


@clients.command("edit")
@click.argument("client_id", type=int)
@click.option("--name", default=None)
@click.option("--company", default=None)
@click.option("--add-email", multiple=True)
@click.option("--remove-email", multiple=True)
@click.option("--add-domain", multiple=True)
@click.option("--remove-domain", multiple=True)
def edit(
    client_id: int,
    name: str | None,
    company: str | None,
    add_email: tuple[str, ...],
    remove_email: tuple[str, ...],
    add_domain: tuple[str, ...],
    remove_domain: tuple[str, ...],
) -> None:
    """Change a client's name, company, addresses or domains."""
    from bot.cli.common import settings_and_db
    from bot.store.clients import ClientError, edit_client
    from bot.store.db import session_scope

    _s, factory = settings_and_db()
    try:
        with session_scope(factory) as s:
            c = edit_client(
                s,
                client_id,
                name=name,
                company=company,
                add_emails=add_email,
                remove_emails=remove_email,
                add_domains=add_domain,
                remove_domains=remove_domain,
            )
            click.echo(f"Updated client #{c.id} {c.name}.")
    except ClientError as exc:
        raise click.ClickException(str(exc)) from exc


@clients.command("delete")
@click.argument("client_id", type=int)
@click.confirmation_option(prompt="Delete this client and its conversation links?")
def delete(client_id: int) -> None:
    """Delete a client (its conversations stay, unlinked)."""
    from bot.cli.common import settings_and_db
    from bot.store.clients import ClientError, delete_client
    from bot.store.db import session_scope

    _s, factory = settings_and_db()
    try:
        with session_scope(factory) as s:
            delete_client(s, client_id)
    except ClientError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Deleted client #{client_id}.")


@clients.command("list")
@click.option("--query", default=None, help="Match name, company, address or domain.")
@click.option("--limit", type=int, default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def list_cmd(query: str | None, limit: int, as_json: bool) -> None:
    """List clients by name."""
    from bot.cli.common import settings_and_db
    from bot.store.clients import list_clients
    from bot.store.db import session_scope

    _s, factory = settings_and_db()
    with session_scope(factory) as s:
        rows = [_row(c) for c in list_clients(s, query=query, limit=limit)]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        extra = ", ".join([*r["emails"], *r["domains"]])  # type: ignore[misc]
        click.echo(f"{r['id']:>5}  {r['name']}  ({r['company']})  {extra}")


@clients.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_cmd(path: Path) -> None:
    """Import clients from a CSV file with columns name, company, emails, domains."""
    from bot.cli.common import settings_and_db
    from bot.store.clients import import_clients_csv
    from bot.store.db import session_scope

    _s, factory = settings_and_db()
    text = path.read_bytes().decode("utf-8", errors="replace")
    with session_scope(factory) as s:
        report = import_clients_csv(s, text, actor="cli")
    for err in report.errors:
        click.echo(f"{path}:{err.line}: {err.message}", err=True)
    click.echo(
        f"{len(report.created)} added, {len(report.updated)} updated, "
        f"{len(report.errors)} rows skipped."
    )
    if report.errors:
        raise SystemExit(1)
