"""Gmail / Microsoft 365 tests: official client libraries against loopback fakes, the store
on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.access import AccessControl
from bot.config import Settings
from bot.crypto import Vault, generate_key
from bot.providers import gmail as gmail_mod
from bot.providers import graph as graph_mod
from bot.services import Services
from bot.store.db import SessionFactory, session_scope
from bot.store.models import (
    Account,
    Conversation,
    FolderState,
    Message,
    MessageLocation,
    Provider,
    SyncRun,
)
from bot.sync.api_sync import create_oauth_account, sync_api_account
from tests.fakes.gmail_server import FakeGmail
from tests.fakes.graph_server import FakeGraph
from tests.fakes.oauth_server import FakeOAuth

GOOGLE_CLIENT = ("google-client-1.apps.googleusercontent.com", "google-secret")
MS_CLIENT = ("11111111-2222-3333-4444-555555555555", "ms-secret")
TENANT = "contoso.onmicrosoft.com"
REDIRECT = "https://mailroom.example.com/oauth/callback"
_seq = itertools.count(1)


def make_raw(
    subject: str = "Hello",
    *,
    mid: str | None = None,
    sender: str = "alice@example.org",
    to: str = "support@mailroom.test",
    in_reply_to: str | None = None,
    body: str = "Hi there.\n",
) -> tuple[bytes, str]:
    mid = mid or f"api{next(_seq)}.{datetime.now(UTC).timestamp()}@example.org"
    headers = [
        f"From: Alice <{sender}>",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(datetime.now(UTC))}",
        f"Message-ID: <{mid}>",
    ]
    if in_reply_to:
        headers += [f"In-Reply-To: <{in_reply_to}>", f"References: <{in_reply_to}>"]
    headers += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
    return ("\r\n".join(headers) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode(), mid


@pytest.fixture(scope="session")
def oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeOAuth]:
    fake = FakeOAuth(Path(tmp_path_factory.mktemp("oauth")))
    fake.add_google_client(*GOOGLE_CLIENT)
    fake.add_microsoft_app(MS_CLIENT[0], MS_CLIENT[1], TENANT)
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def gmail_fake(oauth: FakeOAuth) -> Iterator[FakeGmail]:
    fake = FakeGmail(oauth)
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def graph_fake(oauth: FakeOAuth) -> Iterator[FakeGraph]:
    fake = FakeGraph(oauth)
    yield fake
    fake.close()


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry-After waits, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(gmail_mod, "SLEEP", recorded.append)
    monkeypatch.setattr(graph_mod, "SLEEP", recorded.append)
    return recorded


def google_config(oauth: FakeOAuth) -> dict[str, object]:
    return {
        "client_id": GOOGLE_CLIENT[0],
        "client_secret": GOOGLE_CLIENT[1],
        "redirect_uri": REDIRECT,
        "token_uri": f"{oauth.url}/token",
        "auth_uri": f"{oauth.url}/o/oauth2/v2/auth",
        "ca_file": oauth.ca_file,
    }


def microsoft_config(oauth: FakeOAuth, tenant: str = TENANT) -> dict[str, object]:
    return {
        "client_id": MS_CLIENT[0],
        "client_secret": MS_CLIENT[1],
        "redirect_uri": REDIRECT,
        "tenant": tenant,
        "authority_host": oauth.host,
        "ca_file": oauth.ca_file,
    }


@dataclass
class ApiEnv:
    services: Services
    oauth: FakeOAuth
    gmail: FakeGmail
    graph: FakeGraph
    run_ids: list[int] = field(default_factory=list)

    @property
    def factory(self) -> SessionFactory:
        return self.services.session_factory

    def add_account(
        self, provider: Provider, *, folders: tuple[str, ...] = (), **api: object
    ) -> tuple[int, str]:
        email = f"box{next(_seq)}@{'gmail.test' if provider == Provider.GMAIL else 'contoso.test'}"
        if provider == Provider.GMAIL:
            config = google_config(self.oauth)
            tokens = self.oauth.grant("google", GOOGLE_CLIENT[0], email)
            api = {"base_url": self.gmail.url, **api}
        else:
            config = microsoft_config(self.oauth)
            tokens = self.oauth.grant("microsoft", MS_CLIENT[0], email, TENANT)
            api = {"base_url": self.graph.base_url, **api}
        with session_scope(self.factory) as s:
            account = create_oauth_account(
                s,
                self.services.vault,
                provider=provider,
                email=email,
                oauth=config,
                tokens=tokens,
                channel_id="CAPI",
                api=api,
                folders=folders,
            )
            return account.id, email

    def sync(self, account_id: int) -> tuple[int, int, int]:
        with session_scope(self.factory) as s:
            run = SyncRun(account_id=account_id, worker="test", trigger="manual")
            s.add(run)
            s.flush()
            run_id = run.id
        self.run_ids.append(run_id)
        return sync_api_account(self.services, self.factory, account_id, run_id)

    def account(self, account_id: int) -> Account:
        with session_scope(self.factory) as s:
            return s.get_one(Account, account_id)

    def messages(self, account_id: int) -> list[Message]:
        with session_scope(self.factory) as s:
            return list(
                s.scalars(
                    select(Message).where(Message.account_id == account_id).order_by(Message.id)
                )
            )

    def by_mid(self, account_id: int, mid: str) -> Message:
        return next(m for m in self.messages(account_id) if m.message_id == mid)

    def conversation(self, conversation_id: int) -> Conversation:
        with session_scope(self.factory) as s:
            return s.get_one(Conversation, conversation_id)

    def where(self, account_id: int, mid: str) -> set[str]:
        """Folder names the store thinks the message is in."""
        with session_scope(self.factory) as s:
            return set(
                s.scalars(
                    select(FolderState.name)
                    .join(MessageLocation, MessageLocation.folder_id == FolderState.id)
                    .join(Message, Message.id == MessageLocation.message_id)
                    .where(Message.account_id == account_id, Message.message_id == mid)
                )
            )

    def cursor(self, account_id: int, name: str) -> str | None:
        with session_scope(self.factory) as s:
            return s.scalar(
                select(FolderState.cursor).where(
                    FolderState.account_id == account_id, FolderState.name == name
                )
            )

    def problems(self) -> list[dict[str, object]]:
        with session_scope(self.factory) as s:
            return [
                p
                for r in s.scalars(select(SyncRun).where(SyncRun.id.in_(self.run_ids)))
                for p in r.problems
            ]


def make_services(factory: SessionFactory) -> Services:
    settings = Settings(admins=frozenset({"UADMIN1"}), secret_key=generate_key())
    return Services(
        settings, factory, Vault(settings.secret_key or ""), AccessControl(settings.admins)
    )


@pytest.fixture
def api_env(
    session_factory: SessionFactory, oauth: FakeOAuth, gmail_fake: FakeGmail, graph_fake: FakeGraph
) -> ApiEnv:
    return ApiEnv(make_services(session_factory), oauth, gmail_fake, graph_fake)
