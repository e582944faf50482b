"""The real entry point, as an admin runs it: `mailroom serve` in HTTP mode with the worker
in-process. A signed event gets an answer, and mail delivered to the mailbox shows up in the
account's Slack channel with nothing but the running process in between."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.accounts import create_imap_account
from bot.crypto import Vault, generate_key
from bot.providers.types import SmtpSettings
from bot.store import migrate
from bot.store.db import make_engine, make_session_factory, session_scope
from tests.mailservers.fixtures import imap_settings_for
from tests.slackfake.driver import SlackDriver
from tests.slackfake.fixtures import SIGNING_SECRET
from tests.slackfake.server import FakeSlack

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, fake_slack: FakeSlack) -> Iterator[dict[str, Any]]:
    port = _free_port()
    key = generate_key()
    db_url = f"sqlite:///{tmp_path / 'mailroom.db'}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": fake_slack.bot_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.api_url,
        "DATABASE_URL": db_url,
        "MAILROOM_SECRET_KEY": key,
        "MAILROOM_DATA_DIR": str(tmp_path),
        "PORT": str(port),
    }
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"], env=env, cwd=tmp_path, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "mailroom serve did not come up:\n" + (tmp_path / "serve.log").read_text()
                )
            time.sleep(0.2)
        yield {"base": base, "db_url": db_url, "key": key, "log": tmp_path / "serve.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_serve_answers_signed_events_and_rejects_unsigned_ones(
    served: dict[str, Any], fake_slack: FakeSlack
) -> None:
    driver = SlackDriver(served["base"] + "/slack/events", SIGNING_SECRET, fake_slack)
    event = {"type": "app_home_opened", "user": "UMEMBER", "tab": "home"}
    assert driver.event(event, bad_signature=True).status == 401
    assert driver.event(event).status == 200
    call = fake_slack.wait_for("views.publish", timeout=10)[0]
    assert call.ok and call.args["user_id"] == "UMEMBER"


def test_mail_delivered_to_the_mailbox_is_posted_by_the_running_worker(
    served: dict[str, Any], fake_slack: FakeSlack, dovecot: Any
) -> None:
    username, password = dovecot.new_user("served")
    engine = make_engine(served["db_url"])
    migrate.upgrade(engine)  # already at head: the process upgraded it on start
    with session_scope(make_session_factory(engine)) as s:
        create_imap_account(
            s,
            Vault(served["key"]),
            email=dovecot.address(username),
            imap=imap_settings_for(dovecot, username),
            smtp=SmtpSettings("127.0.0.1", 1, "plain", username),
            imap_password=password,
            smtp_password=password,
            channel_id="CINBOX",
        )
    engine.dispose()
    time.sleep(1.0)  # the account exists before the mail: this mail is new, not history
    dovecot.deliver(
        username,
        b"From: Casey Client <casey@client.example>\r\nTo: support@ours.example\r\n"
        b"Subject: Where is my order?\r\nMessage-ID: <order-1@client.example>\r\n"
        # Dated before the account was connected (a slow relay, a sender's clock): it still
        # arrived after, so it is announced.
        b"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n\r\nIt has not arrived.\r\n",
    )
    fake_slack.wait_until(
        lambda: any("Where is my order?" in str(m) for m in fake_slack.top_level("CINBOX")),
        timeout=60,
    )
    posted = [m for m in fake_slack.top_level("CINBOX") if "Where is my order?" in str(m)]
    assert len(posted) == 1, served["log"].read_text()
