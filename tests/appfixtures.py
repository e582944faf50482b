"""The whole app under test: Bolt served over real HTTP on loopback, its Web API client pointed
at the fake Slack server, a real database (SQLite and PostgreSQL), and the outbox dispatcher.

    def test_something(mailroom):
        acc = mailroom.account("support@example.com", imap=..., smtp=..., password="pw")
        mailroom.driver.event({"type": "app_home_opened", "user": "UADMIN", "tab": "home"})
        mailroom.run_outbox()
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import pytest
from slack_bolt import App

from bot.access import AccessControl
from bot.app import create_app
from bot.config import Settings
from bot.crypto import Vault, generate_key
from bot.outbox.dispatch import Dispatcher
from bot.providers.types import ImapSettings, SmtpSettings
from bot.services import Services
from bot.store.db import SessionFactory, session_scope
from bot.store.models import Account, AccountStatus, Provider, utcnow
from bot.web import make_wsgi_app
from tests.slackfake.driver import SlackDriver
from tests.slackfake.fixtures import SIGNING_SECRET
from tests.slackfake.serve import serve_wsgi
from tests.slackfake.server import FakeSlack


@dataclass
class Mailroom:
    services: Services
    app: App
    fake: FakeSlack
    driver: SlackDriver
    url: str
    dispatcher: Dispatcher = field(init=False)

    def __post_init__(self) -> None:
        self.dispatcher = Dispatcher(self.services, self.app.client)
        self.listeners = _track_listeners(self.app)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every listener Bolt started has finished: a listener writes after its
        ack (the HTTP answer), so a test that acts on those writes waits for them first."""
        self.listeners.wait_idle(timeout)

    def run_outbox(self, timeout: float = 15.0) -> None:
        """Run every due outbox row (Slack posts, write-backs, sends) until none is due."""
        self.settle()
        self.dispatcher.run_until_idle(timeout)

    def account(
        self,
        email: str,
        *,
        imap: ImapSettings | None = None,
        smtp: SmtpSettings | None = None,
        password: str = "",
        channel_id: str = "CINBOX",
        announce_history: bool = True,
        **fields: Any,
    ) -> Account:
        """An IMAP account bound to a channel. With `announce_history`, mail already in the
        mailbox is announced too (tests want to see it); real accounts announce only new mail."""
        imap = imap or ImapSettings(host="127.0.0.1", port=1, security="plain", username=email)
        smtp = smtp or SmtpSettings(host="127.0.0.1", port=1, security="plain", username=email)
        with session_scope(self.services.session_factory) as s:
            acc = Account(
                provider=Provider.IMAP,
                email=email,
                config={
                    "imap": {
                        "host": imap.host,
                        "port": imap.port,
                        "security": imap.security,
                        "username": imap.username,
                    },
                    "smtp": {
                        "host": smtp.host,
                        "port": smtp.port,
                        "security": smtp.security,
                        "username": smtp.username,
                    },
                },
                credentials=self.services.vault.encrypt(
                    {"imap_password": password, "smtp_password": password}
                ),
                channel_id=channel_id,
                status=AccountStatus.ACTIVE,
                announce_after=None if announce_history else utcnow(),
                **fields,
            )
            s.add(acc)
        return acc

    def mailbox_account(
        self, dovecot: Any, smtp_server: Any, *, prefix: str = "support", **fields: Any
    ) -> tuple[Account, Any]:
        """A fresh Dovecot user connected as an IMAP + SMTP account in #inbox.

        Returns (account, mail user); the user's address is the account's email address.
        """
        from tests.mailservers.fixtures import imap_settings_for

        username, password = dovecot.new_user(prefix)
        user = dovecot.user(username)
        acc = self.account(
            user.address,
            imap=imap_settings_for(dovecot, username),
            smtp=smtp_server.settings(username),
            password=password,
            **fields,
        )
        return acc, user


class _TrackingExecutor(Executor):
    """Bolt's listener executor, counting the listeners still running."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.cond = threading.Condition()
        self.running = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self.cond:
            self.running += 1
        future = self.inner.submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future[Any]) -> None:
        with self.cond:
            self.running -= 1
            self.cond.notify_all()

    def wait_idle(self, timeout: float) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.running == 0, timeout):
                raise AssertionError(f"listeners still running after {timeout}s")


def _track_listeners(app: App) -> _TrackingExecutor:
    runner = app._listener_runner
    tracking = _TrackingExecutor(runner.listener_executor)
    runner.listener_executor = tracking
    runner.lazy_listener_runner.executor = tracking  # type: ignore[attr-defined]
    return tracking


def make_services(session_factory: SessionFactory, fake: FakeSlack) -> Services:
    settings = Settings(
        slack_bot_token=fake.bot_token,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake.api_url,
        # Explicitly, for tests only: the fake serves files on loopback over http.
        slack_files_url=fake.base_url,
        database_url=str(session_factory.kw["bind"].url),
        secret_key=generate_key(),
        admins=frozenset(),  # admins come from Slack's is_admin (UADMIN in the fake)
    )
    return Services(
        settings=settings,
        session_factory=session_factory,
        vault=Vault(settings.secret_key or ""),
        access=AccessControl(settings.admins),
    )


@pytest.fixture
def mailroom(session_factory: SessionFactory, fake_slack: FakeSlack) -> Iterator[Mailroom]:
    services = make_services(session_factory, fake_slack)
    app = create_app(services)
    with serve_wsgi(make_wsgi_app(app, services)) as url:
        driver = SlackDriver(url, SIGNING_SECRET, fake_slack)
        yield Mailroom(services=services, app=app, fake=fake_slack, driver=driver, url=url)
