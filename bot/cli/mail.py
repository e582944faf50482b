"""`mailroom import`, `threads` and `search`: mail from the shell.

Only click is imported at module level: `mailroom --help` must not pay for SQLAlchemy, the
parser or Alembic (each command imports what it uses when it runs)."""

from __future__ import annotations

import json
from pathlib import Path

import click


def register(cli: click.Group) -> None:
    cli.add_command(import_mail)
    cli.add_command(threads)
    cli.add_command(search_cmd)


class _FilterChoice(click.Choice[str]):
    """The conversation filters, read from the store module on first use (the help of
    `threads`, or a run), not when the CLI starts."""

    def __init__(self) -> None:  # no super().__init__: it would read the choices now
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        from bot.store.conversations import ConversationFilter

        return tuple(f.value for f in ConversationFilter)


@click.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--account", "address", required=True, help="Mailbox address to import into.")
@click.option("--mark-read", is_flag=True, help="Import every message as read.")
def import_mail(path: Path, address: str, mark_read: bool) -> None:
    """Import an mbox file, a Maildir, or .eml files/folders into ACCOUNT (offline)."""
    from bot.cli.common import settings_and_db
    from bot.cli.mail_import import import_path

    _settings, factory = settings_and_db()
    stats = import_path(factory, path, address, mark_read=mark_read)
    click.echo(
        f"{stats['new']} new, {stats['duplicates']} already known, {stats['errors']} skipped, "
        f"{stats['conversations']} new conversations."
    )


@click.command("threads")
@click.option(
    "--filter",
    "filter_",
    type=_FilterChoice(),
    default="all",
    show_default=True,
)
@click.option("--account", "address", default=None, help="Only this mailbox address.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--offset", type=int, default=0)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of conversation objects.")
def threads(filter_: str, address: str | None, limit: int, offset: int, as_json: bool) -> None:
    """List conversations, newest activity first."""
    from sqlalchemy import func, select

    from bot.cli.common import settings_and_db
    from bot.store.conversations import list_conversations, message_ids_by_conversation
    from bot.store.db import read_scope
    from bot.store.models import Account

    _settings, factory = settings_and_db()
    with read_scope(factory) as s:  # reads only: never queues behind a running sync
        account_ids: list[int] | None = None
        if address:
            account_ids = list(
                s.scalars(select(Account.id).where(func.lower(Account.email) == address.lower()))
            )
        convs = list_conversations(
            s, filter=filter_, account_ids=account_ids, limit=limit, offset=offset
        )
        ids = message_ids_by_conversation(s, [c.id for c in convs])
        rows = [
            {
                "id": c.id,
                "account_id": c.account_id,
                "subject": c.subject,
                "message_ids": ids.get(c.id, []),
                "message_count": c.message_count,
                "client": c.link.client.name if c.link else None,
                "client_id": c.link.client_id if c.link else None,
                "unread": c.unread_count > 0,
                "unread_count": c.unread_count,
                "archived": c.archived,
                "first_message_at": c.first_message_at.isoformat() if c.first_message_at else None,
                "last_message_at": c.last_message_at.isoformat() if c.last_message_at else None,
            }
            for c in convs
        ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        flags = ("U" if r["unread"] else " ") + ("A" if r["archived"] else " ")
        client = f" [{r['client']}]" if r["client"] else ""
        click.echo(
            f"{r['id']:>6} {flags} {r['message_count']:>3}  {str(r['subject'])[:70]}{client}"
        )


@click.command("search")
@click.argument("query", nargs=-1, required=True)
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--offset", type=int, default=0)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of hits.")
def search_cmd(query: tuple[str, ...], limit: int, offset: int, as_json: bool) -> None:
    """Search mail (see docs/search.md for the query language)."""
    from bot.cli.common import settings_and_db
    from bot.store.db import read_scope
    from bot.store.search import all_account_ids, search

    _settings, factory = settings_and_db()
    with read_scope(factory) as s:  # reads only: never queues behind a running sync
        page = search(
            s, " ".join(query), visible_account_ids=all_account_ids(s), limit=limit, offset=offset
        )
    for err in page.errors:
        click.echo(f"note: {err}", err=True)
    if as_json:
        click.echo(json.dumps([h.as_dict() for h in page.hits], ensure_ascii=False, indent=2))
        return
    click.echo(f"{page.total_label} matches")
    for h in page.hits:
        when = h.date.strftime("%Y-%m-%d %H:%M") if h.date else "????-??-??"
        click.echo(
            f"{when}  {h.from_email[:30]:<30}  {h.subject[:60]}  (conversation {h.conversation_id})"
        )
        if h.snippet:
            click.echo(f"    {h.snippet[:160]}")
