"""`mailroom accounts …`: add, list, test and remove IMAP/SMTP accounts (admins at the shell)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from bot.providers.types import ImapSettings, SmtpSettings

SECURITY = click.Choice(["ssl", "starttls", "plain"])
DEFAULT_PORTS = {
    "imap": {"ssl": 993, "starttls": 143, "plain": 143},
    "smtp": {"ssl": 465, "starttls": 587, "plain": 25},
}


def register(cli: click.Group) -> None:
    cli.add_command(accounts)


def _services():  # type: ignore[no-untyped-def]
    from bot.app import make_services
    from bot.cli.common import settings_and_db

    settings, _ = settings_and_db()
    return make_services(settings)


def _password(env_var: str | None, prompt: str) -> str:
    """From an environment variable or a hidden prompt; never from the command line, where
    it would land in the shell history and the process list."""
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            raise click.UsageError(f"Environment variable {env_var} is not set or empty.")
        return value
    return str(click.prompt(prompt, hide_input=True))


def _inbox_options(f: Callable[..., None]) -> Callable[..., None]:
    """--channel, --frequency and --auto-link: what every `add-…` command asks of an inbox."""
    f = click.option("--auto-link/--no-auto-link", default=True, show_default=True)(f)
    f = click.option(
        "--frequency", type=int, default=300, show_default=True, help="Seconds between syncs."
    )(f)
    return click.option(
        "--channel", "channel_id", default=None, help="Slack channel id for this inbox."
    )(f)


def _connect_or_exit(connect: Callable[[], int]) -> int:
    """The new account's id, or "Not saved." with the provider's reason and exit status 1."""
    from bot.providers.errors import ProviderError

    try:
        return connect()
    except ProviderError as exc:
        click.echo(f"Not saved. {exc}", err=True)
        sys.exit(1)


@click.group()
def accounts() -> None:
    """Mailboxes Mailroom syncs."""


@accounts.command("add-imap")
@click.option("--email", required=True, help="The mailbox address.")
@click.option("--imap-host", required=True)
@click.option("--imap-port", type=int, default=None, help="Default 993 (ssl) or 143.")
@click.option("--imap-security", type=SECURITY, default="ssl", show_default=True)
@click.option("--smtp-host", default=None, help="Default: the IMAP host.")
@click.option("--smtp-port", type=int, default=None, help="Default 587 (starttls), 465 (ssl).")
@click.option("--smtp-security", type=SECURITY, default="starttls", show_default=True)
@click.option("--username", default=None, help="IMAP login (default: the email address).")
@click.option("--smtp-username", default=None, help="SMTP login (default: the IMAP login).")
@click.option("--password-env", default=None, metavar="VAR", help="Read the password from $VAR.")
@click.option("--smtp-password-env", default=None, metavar="VAR", help="Separate SMTP password.")
@click.option("--separate-smtp-password", is_flag=True, help="Prompt for a separate SMTP password.")
@click.option(
    "--folders", default="", help="Comma-separated folders (default Inbox, Sent, Archive)."
)
@_inbox_options
@click.option("--skip-test", is_flag=True, help="Save without checking the connection first.")
def add_imap(
    email: str,
    imap_host: str,
    imap_port: int | None,
    imap_security: str,
    smtp_host: str | None,
    smtp_port: int | None,
    smtp_security: str,
    username: str | None,
    smtp_username: str | None,
    password_env: str | None,
    smtp_password_env: str | None,
    separate_smtp_password: bool,
    channel_id: str | None,
    frequency: int,
    folders: str,
    auto_link: bool,
    skip_test: bool,
) -> None:
    """Add an IMAP/SMTP mailbox. Checks the connection first and saves nothing on failure."""
    from bot.accounts import AccountError, check_settings, create_imap_account
    from bot.store.db import session_scope

    login = username or email
    imap = ImapSettings(
        host=imap_host,
        port=imap_port or DEFAULT_PORTS["imap"][imap_security],
        security=imap_security,  # type: ignore[arg-type]
        username=login,
    )
    smtp = SmtpSettings(
        host=smtp_host or imap_host,
        port=smtp_port or DEFAULT_PORTS["smtp"][smtp_security],
        security=smtp_security,  # type: ignore[arg-type]
        username=smtp_username if smtp_username is not None else login,
    )
    password = _password(password_env, "Password")
    if smtp_password_env or separate_smtp_password:
        smtp_password = _password(smtp_password_env, "SMTP password")
    else:
        smtp_password = password
    folder_list = tuple(f.strip() for f in folders.split(",") if f.strip())
    services = _services()
    if not skip_test:
        click.echo(
            f"Checking {imap.host}:{imap.port} ({imap.security}) and SMTP {smtp.host}:{smtp.port}…"
        )
        result = check_settings(
            imap, smtp, imap_password=password, smtp_password=smtp_password, folders=folder_list
        )
        if not result.ok:
            click.echo(f"Not saved. {result.message()}", err=True)
            sys.exit(1)
        click.echo(result.message())
    try:
        with session_scope(services.session_factory) as s:
            account = create_imap_account(
                s,
                services.vault,
                email=email,
                imap=imap,
                smtp=smtp,
                imap_password=password,
                smtp_password=smtp_password,
                channel_id=channel_id,
                sync_interval_seconds=frequency,
                folders=folder_list,
                auto_link=auto_link,
            )
            account_id = account.id
    except AccountError as exc:
        click.echo(f"Not saved. {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"Saved {email} (account {account_id}). Existing mail is imported as history on the "
        "first sync; only mail arriving from now on is posted to Slack."
    )


@accounts.command("edit")
@click.argument("address")
@click.option("--imap-host", default=None)
@click.option("--imap-port", type=int, default=None)
@click.option("--imap-security", type=SECURITY, default=None)
@click.option("--username", default=None, help="IMAP login.")
@click.option("--smtp-host", default=None)
@click.option("--smtp-port", type=int, default=None)
@click.option("--smtp-security", type=SECURITY, default=None)
@click.option("--smtp-username", default=None, help="SMTP login.")
@click.option("--smtp-no-login", is_flag=True, help="The SMTP server is a relay: no AUTH.")
@click.option("--password-env", default=None, metavar="VAR", help="A new password from $VAR.")
@click.option("--smtp-password-env", default=None, metavar="VAR", help="A new SMTP password.")
@click.option("--skip-test", is_flag=True, help="Save without checking the servers first.")
def edit_cmd(
    address: str,
    imap_host: str | None,
    imap_port: int | None,
    imap_security: str | None,
    username: str | None,
    smtp_host: str | None,
    smtp_port: int | None,
    smtp_security: str | None,
    smtp_username: str | None,
    smtp_no_login: bool,
    password_env: str | None,
    smtp_password_env: str | None,
    skip_test: bool,
) -> None:
    """Change an IMAP account's servers, ports, security or logins. Checked against the servers
    first (nothing is saved on failure); synced mail and conversations are kept."""
    from dataclasses import replace

    from bot.accounts import (
        AccountError,
        ConnectionChange,
        apply_connection_change,
        check_connection_change,
        get_account,
        imap_settings,
        smtp_settings,
    )
    from bot.store.db import session_scope

    services = _services()
    with services.session_factory() as s:
        account = get_account(s, address)
        if account is None:
            click.echo(f"No account {address}.", err=True)
            sys.exit(1)
        try:
            imap, smtp = imap_settings(account), smtp_settings(account)
        except AccountError as exc:
            raise click.UsageError(str(exc)) from exc
        credentials = account.credentials
    imap = replace(
        imap,
        host=imap_host or imap.host,
        port=imap_port or imap.port,
        security=imap_security or imap.security,  # type: ignore[arg-type]
        username=username or imap.username,
    )
    smtp = replace(
        smtp,
        host=smtp_host or smtp.host,
        port=smtp_port or smtp.port,
        security=smtp_security or smtp.security,  # type: ignore[arg-type]
        username="" if smtp_no_login else (smtp_username or smtp.username or imap.username),
    )
    change = ConnectionChange(
        imap=imap,
        smtp=smtp,
        imap_password=_password(password_env, "") if password_env else None,
        smtp_password=_password(smtp_password_env, "") if smtp_password_env else None,
    )
    if not skip_test:
        click.echo(
            f"Checking {imap.host}:{imap.port} ({imap.security}) and {smtp.host}:{smtp.port}…"
        )
        try:
            result = check_connection_change(services.vault, credentials, change)
        except AccountError as exc:
            click.echo(f"Not saved. {exc}", err=True)
            sys.exit(1)
        if not result.ok:
            click.echo(f"Not saved. {result.message()}", err=True)
            sys.exit(1)
        click.echo(result.message())
    with session_scope(services.session_factory) as s:
        account = get_account(s, address)
        if account is None:
            click.echo(f"No account {address}.", err=True)
            sys.exit(1)
        try:
            details = apply_connection_change(s, services.vault, account, change, actor="cli")
        except AccountError as exc:
            click.echo(f"Not saved. {exc}", err=True)
            sys.exit(1)
    reread = (
        " Its folders are re-read on the next sync (no duplicates)."
        if details["folders_reread"]
        else ""
    )
    click.echo(f"Saved {address}; it syncs now.{reread}")


@accounts.command("add-m365-app")
@click.option("--email", required=True, help="The Microsoft 365 (shared) mailbox address.")
@_inbox_options
def add_m365_app(email: str, channel_id: str | None, frequency: int, auto_link: bool) -> None:
    """Add a Microsoft 365 mailbox through the app's application permissions (client
    credentials; docs/oauth-providers.md, "Shared mailboxes"). Checks access first."""
    from bot.oauth_connect import connect_app_only_mailbox

    account_id = _connect_or_exit(
        lambda: connect_app_only_mailbox(
            _services(),
            mailbox=email,
            channel_id=channel_id,
            interval=frequency,
            auto_link=auto_link,
            created_by="cli",
        )
    )
    click.echo(f"Saved {email} (account {account_id}); it syncs with the app's own token.")


@accounts.command("add-gmail-sa")
@click.option("--email", required=True, help="The Google Workspace mailbox address.")
@click.option(
    "--key-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The service account's JSON key (its private key is stored encrypted).",
)
@_inbox_options
def add_gmail_sa(
    email: str, key_file: str, channel_id: str | None, frequency: int, auto_link: bool
) -> None:
    """Add a Google Workspace mailbox through a service account with domain-wide delegation
    (docs/oauth-providers.md, "Shared mailboxes"). Checks access first."""
    import json

    from bot.oauth_connect import connect_gmail_service_account

    with open(key_file, encoding="utf-8") as fh:
        key = json.load(fh)
    account_id = _connect_or_exit(
        lambda: connect_gmail_service_account(
            _services(),
            key=key,
            mailbox=email,
            channel_id=channel_id,
            interval=frequency,
            auto_link=auto_link,
            created_by="cli",
        )
    )
    click.echo(f"Saved {email} (account {account_id}); Mailroom acts as it by delegation.")


@accounts.command("list")
def list_cmd() -> None:
    """Every account with its sync status."""
    from bot.accounts import list_accounts
    from bot.store.db import session_scope

    services = _services()
    with session_scope(services.session_factory) as s:
        rows = list_accounts(s)
        if not rows:
            click.echo("No accounts yet: add one with `mailroom accounts add-imap`.")
            return
        for a in rows:
            last = (
                a.last_success_at.strftime("%Y-%m-%d %H:%M UTC") if a.last_success_at else "never"
            )
            line = (
                f"{a.email:40} {a.provider.value:6} {a.status.value:13} channel={a.channel_id or '-'} "
                f"every {a.sync_interval_seconds}s, last success {last}"
            )
            click.echo(line)
            if a.last_error:
                click.echo(f"    error: {a.last_error}")


@accounts.command("test")
@click.argument("address")
def test_cmd(address: str) -> None:
    """Check an account's stored settings and password; a good check re-activates it."""
    from bot.accounts import get_account, test_account
    from bot.store.db import session_scope
    from bot.sync.status import reactivate

    services = _services()
    with session_scope(services.session_factory) as s:
        account = get_account(s, address)
        if account is None:
            click.echo(f"No account {address}.", err=True)
            sys.exit(1)
        result = test_account(services, account)
        if result.ok:
            reactivate(s, account)
    if not result.ok:
        click.echo(f"Failed. {result.message()}", err=True)
        sys.exit(1)
    click.echo(f"OK. {result.message()}")


@accounts.command("set-password")
@click.argument("address")
@click.option("--password-env", metavar="VAR", help="Read the new password from this variable.")
@click.option(
    "--smtp-password-env", metavar="VAR", help="A different SMTP password, from this variable."
)
def set_password_cmd(address: str, password_env: str | None, smtp_password_env: str | None) -> None:
    """Re-enter an IMAP account's password: tested first, stored only if the servers accept it,
    and the account syncs again at once."""
    from bot.accounts import AccountError, get_account, set_passwords
    from bot.store.db import session_scope

    services = _services()
    password = _password(password_env, "New password")
    smtp_password = _password(smtp_password_env, "SMTP password") if smtp_password_env else None
    with session_scope(services.session_factory) as s:
        account = get_account(s, address)
        if account is None:
            click.echo(f"No account {address}.", err=True)
            sys.exit(1)
        try:
            result = set_passwords(
                services, s, account, imap_password=password, smtp_password=smtp_password
            )
        except AccountError as exc:
            raise click.UsageError(str(exc)) from exc
    if not result.ok:
        click.echo(f"Not saved. {result.message()}", err=True)
        sys.exit(1)
    click.echo(f"Saved. {result.message()} The account syncs again now.")


@accounts.command("remove")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove_cmd(address: str, yes: bool) -> None:
    """Remove an account and what was synced from it (the mailbox is not touched)."""
    from bot.accounts import remove_account
    from bot.store.db import session_scope

    if not yes:
        click.confirm(f"Remove {address} and its conversations from Mailroom?", abort=True)
    services = _services()
    from bot.accounts import get_account
    from bot.sync.push import close

    with session_scope(services.session_factory) as s:
        found = get_account(s, address)
        found_id = found.id if found is not None else None
    if found_id is not None:
        close(services, found_id)  # stop the Gmail watch / Graph subscription first
    with session_scope(services.session_factory) as s:
        removed = remove_account(s, address)
    if not removed:
        click.echo(f"No account {address}.", err=True)
        sys.exit(1)
    click.echo(f"Removed {address}.")
