"""`mailroom accounts …` and `mailroom sync --once` against Dovecot and a real database."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.crypto import generate_key
from tests.mailservers.dovecot import DovecotServer
from tests.mailservers.smtp_server import SmtpServer
from tests.sync.conftest import make_raw


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, db_url: str, engine: object) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("MAILROOM_SECRET_KEY", generate_key())
    monkeypatch.setenv("MAILROOM_LOG_LEVEL", "WARNING")


def _add(dovecot: DovecotServer, username: str, password_var: str, smtp_port: int = 0) -> list[str]:
    return [
        "accounts",
        "add-imap",
        "--email",
        f"{username}@mailroom.test",
        "--imap-host",
        "127.0.0.1",
        "--imap-port",
        str(dovecot.port),
        "--imap-security",
        "plain",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(smtp_port or dovecot.port),
        "--smtp-security",
        "plain",
        "--username",
        username,
        "--password-env",
        password_var,
        "--channel",
        "C123",
        "--frequency",
        "120",
        "--no-auto-link",
        "--skip-test",
    ]


def test_add_refuses_a_wrong_password_and_never_prints_it(
    cli_env: None, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    username, _ = dovecot.new_user("cli")
    monkeypatch.setenv("BAD_PW", "wrong-secret-123")
    args = [a for a in _add(dovecot, username, "BAD_PW") if a != "--skip-test"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "Not saved" in result.output and "IMAP (login)" in result.output
    assert "wrong-secret-123" not in result.output
    listed = CliRunner().invoke(cli, ["accounts", "list"])
    assert "No accounts yet" in listed.output


def test_add_list_sync_test_remove(
    cli_env: None, dovecot: DovecotServer, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    username, password = dovecot.new_user("cli")
    monkeypatch.setenv("GOOD_PW", password)
    dovecot.deliver(username, make_raw("Hello CLI")[0])
    runner = CliRunner()
    added = runner.invoke(cli, _add(dovecot, username, "GOOD_PW", smtp_server.port))
    assert added.exit_code == 0, added.output
    assert password not in added.output
    listed = runner.invoke(cli, ["accounts", "list"])
    assert f"{username}@mailroom.test" in listed.output and "active" in listed.output
    synced = runner.invoke(cli, ["sync", "--once", "--account", f"{username}@mailroom.test"])
    assert synced.exit_code == 0, synced.output
    assert "1 new" in synced.output
    tested = runner.invoke(cli, ["accounts", "test", f"{username}@mailroom.test"])
    assert tested.exit_code == 0 and tested.output.startswith("OK."), tested.output
    assert password not in tested.output
    removed = runner.invoke(cli, ["accounts", "remove", f"{username}@mailroom.test", "--yes"])
    assert removed.exit_code == 0
    assert "No accounts yet" in runner.invoke(cli, ["accounts", "list"]).output


def test_edit_checks_first_then_keeps_the_synced_mail(
    cli_env: None,
    dovecot: DovecotServer,
    smtp_server: SmtpServer,
    smtp_relay: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`accounts edit` changes the SMTP server to a relay without login: a wrong port is
    refused with the reason and nothing saved; the right one is saved in place and the next
    sync finds nothing new (the stored mail stays, nothing doubles)."""
    username, password = dovecot.new_user("cliedit")
    address = f"{username}@mailroom.test"
    monkeypatch.setenv("GOOD_PW", password)
    dovecot.deliver(username, make_raw("Before the edit")[0])
    runner = CliRunner()
    assert runner.invoke(cli, _add(dovecot, username, "GOOD_PW", smtp_server.port)).exit_code == 0
    assert "1 new" in runner.invoke(cli, ["sync", "--once", "--account", address]).output

    closed = runner.invoke(
        cli, ["accounts", "edit", address, "--smtp-port", "1", "--smtp-no-login"]
    )
    assert closed.exit_code == 1 and "Not saved" in closed.output and "SMTP" in closed.output
    relay = runner.invoke(
        cli,
        ["accounts", "edit", address, "--smtp-port", str(smtp_relay.port), "--smtp-no-login"],
    )
    assert relay.exit_code == 0, relay.output
    assert "(no login)" in relay.output and password not in relay.output
    tested = runner.invoke(cli, ["accounts", "test", address])
    assert tested.exit_code == 0 and "(no login)" in tested.output, tested.output
    again = runner.invoke(cli, ["sync", "--once", "--account", address])
    assert again.exit_code == 0 and "0 new" in again.output, again.output


# What `mailroom sync --once` has no use for: the Slack app and its listeners, the Gmail and
# Microsoft 365 client libraries, the template engine. Each cost start-up time and memory
# in every sync (issue 19); the commands that use them import them when they run.
NOT_FOR_SYNC = (
    "slack_bolt",
    "slack_sdk",
    "bot.handlers",
    "googleapiclient",
    "google.auth",
    "msal",
    "jinja2",
    "bot.templates",
    "alembic.autogenerate",
)

# A submodule's import loads its package first, so the package names are enough.
_SYNC_PROBE = """
import sys
WATCH = sys.argv[1:]
from bot.cli import main
try:
    sys.argv = ["mailroom", "sync", "--once"]
    main()
except SystemExit as exc:
    print("EXIT=" + str(exc.code))
print("LOADED=" + ",".join(m for m in WATCH if m in sys.modules))
"""


def test_sync_once_runs_without_loading_slack_or_the_api_providers(
    cli_env: None, dovecot: DovecotServer, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `sync --once` of a real mailbox, in a fresh interpreter: the mail is stored and
    none of NOT_FOR_SYNC (nor any module under them) was imported on the way."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    username, password = dovecot.new_user("cliimports")
    monkeypatch.setenv("GOOD_PW", password)
    dovecot.deliver(username, make_raw("Imports")[0])
    added = CliRunner().invoke(cli, _add(dovecot, username, "GOOD_PW", smtp_server.port))
    assert added.exit_code == 0, added.output
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    result = subprocess.run(
        [sys.executable, "-c", _SYNC_PROBE, *NOT_FOR_SYNC],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "EXIT=0" in result.stdout, result.stdout + result.stderr
    assert "1 new" in result.stdout, result.stdout
    loaded = next(ln for ln in result.stdout.splitlines() if ln.startswith("LOADED="))
    assert loaded == "LOADED=", f"sync --once imported {loaded[7:]}"
