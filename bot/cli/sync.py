"""`mailroom sync --once`: sync now, in the foreground, printing progress and a summary."""

from __future__ import annotations

import sys

import click


def register(cli: click.Group) -> None:
    cli.add_command(sync)


@click.command()
@click.option("--once", is_flag=True, required=True, help="One run of each account, then exit.")
@click.option("--account", "address", default=None, help="Only this account (email address).")
def sync(once: bool, address: str | None) -> None:
    """Sync mailboxes now (the worker does this continuously)."""
    from sqlalchemy import select

    from bot.app import make_services
    from bot.cli.common import bound_heap, settings_and_db
    from bot.store.db import session_scope
    from bot.store.models import Account, Provider
    from bot.sync.engine import AccountBusy, SyncOptions, sync_account

    bound_heap()
    settings, _ = settings_and_db()
    services = make_services(settings)
    with session_scope(services.session_factory) as s:
        query = select(Account.id, Account.email).where(Account.provider == Provider.IMAP)
        if address:
            query = query.where(Account.email == address.strip().lower())
        targets = list(s.execute(query.order_by(Account.email)))
    if not targets:
        click.echo(f"No account {address}." if address else "No IMAP accounts.", err=True)
        sys.exit(1)
    failed = False
    for account_id, email in targets:
        click.echo(f"Syncing {email}…")
        opts = SyncOptions(progress=lambda line: click.echo(f"  {line}"))
        try:
            summary = sync_account(services, account_id, trigger="manual", options=opts)
        except AccountBusy:
            click.echo(f"  skipped: another worker is syncing {email} right now")
            continue
        click.echo(f"  {summary.line()}")
        for p in summary.problems[:20]:
            where = f"{p.get('folder')} uid {p.get('uid')}" if p.get("uid") else p.get("folder")
            click.echo(f"    - {where}: {p.get('problem')}")
        if len(summary.problems) > 20:
            click.echo(f"    … {len(summary.problems) - 20} more in the sync log")
        failed = failed or summary.error is not None
    sys.exit(1 if failed else 0)
