"""Sync tests: a real Dovecot (and SMTP) on loopback, the store on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.access import AccessControl
from bot.accounts import create_imap_account
from bot.config import Settings
from bot.crypto import Vault, generate_key
from bot.providers.types import ImapSettings, SmtpSettings
from bot.services import Services
from bot.store.db import SessionFactory, session_scope
from bot.store.models import Account, Conversation, Message, MessageLocation, SyncRun
from bot.sync.engine import RunSummary, SyncOptions, sync_account
from tests.mailservers.dovecot import DovecotServer, MailUser
from tests.mailservers.fixtures import imap_settings_for

ADMIN = "UADMIN1"
_seq = itertools.count(1)


def make_raw(
    subject: str = "Hello",
    *,
    mid: str | None = None,
    sender: str = "alice@example.org",
    to: str = "support@mailroom.test",
    in_reply_to: str | None = None,
    references: str | None = None,
    body: str = "Hi there.\n",
    date: datetime | None = None,
) -> tuple[bytes, str]:
    mid = mid or f"m{next(_seq)}.{datetime.now(UTC).timestamp()}@example.org"
    headers = [
        f"From: Alice <{sender}>",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(date or datetime.now(UTC))}",
        f"Message-ID: <{mid}>",
    ]
    if in_reply_to:
        headers.append(f"In-Reply-To: <{in_reply_to}>")
        headers.append(f"References: {references or f'<{in_reply_to}>'}")
    headers += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
    return ("\r\n".join(headers) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode(), mid


@dataclass
class Env:
    services: Services
    dovecot: DovecotServer

    @property
    def factory(self) -> SessionFactory:
        return self.services.session_factory

    def new_account(
        self,
        *,
        smtp: SmtpSettings | None = None,
        folders: tuple[str, ...] = (),
        server: DovecotServer | None = None,
    ) -> tuple[int, MailUser]:
        server = server or self.dovecot
        username, password = server.new_user("sync")
        user = server.user(username)
        imap = imap_settings_for(server, username)
        smtp = smtp or SmtpSettings(host="127.0.0.1", port=1, security="plain", username="")
        with session_scope(self.factory) as s:
            account = create_imap_account(
                s,
                self.services.vault,
                email=user.address,
                imap=imap,
                smtp=smtp,
                imap_password=password,
                smtp_password=password,
                channel_id="CSYNC",
                folders=folders,
            )
            return account.id, user

    def sync(self, account_id: int, **opts: object) -> RunSummary:
        return sync_account(self.services, account_id, options=SyncOptions(**opts))  # type: ignore[arg-type]

    def messages(self, account_id: int) -> list[Message]:
        with session_scope(self.factory) as s:
            return list(
                s.scalars(
                    select(Message).where(Message.account_id == account_id).order_by(Message.id)
                )
            )

    def count(self, model: type[Any], account_id: int) -> int:
        """Rows of `model` (any model with an account_id column) of one account."""
        with session_scope(self.factory) as s:
            return s.execute(
                select(func.count()).select_from(model).where(model.account_id == account_id)
            ).scalar_one()

    def locations(self, account_id: int) -> list[tuple[str, int, str]]:
        """(folder, uid, Message-ID) of every stored location."""
        from bot.store.models import FolderState

        with session_scope(self.factory) as s:
            return sorted(
                (fs.name, loc.uid, m.message_id)
                for loc, fs, m in s.execute(
                    select(MessageLocation, FolderState, Message)
                    .join(FolderState, FolderState.id == MessageLocation.folder_id)
                    .join(Message, Message.id == MessageLocation.message_id)
                    .where(Message.account_id == account_id)
                )
            )

    def account(self, account_id: int) -> Account:
        with session_scope(self.factory) as s:
            return s.get_one(Account, account_id)

    def runs(self, account_id: int) -> list[SyncRun]:
        with session_scope(self.factory) as s:
            return list(
                s.scalars(
                    select(SyncRun).where(SyncRun.account_id == account_id).order_by(SyncRun.id)
                )
            )

    def conversation(self, conversation_id: int) -> Conversation:
        with session_scope(self.factory) as s:
            return s.get_one(Conversation, conversation_id)


def make_services(factory: SessionFactory) -> Services:
    settings = Settings(admins=frozenset({ADMIN}), secret_key=generate_key())
    return Services(
        settings=settings,
        session_factory=factory,
        vault=Vault(settings.secret_key or ""),
        access=AccessControl(settings.admins),
    )


@pytest.fixture
def env(session_factory: SessionFactory, dovecot: DovecotServer) -> Env:
    return Env(make_services(session_factory), dovecot)


def imap_for(env: Env, account_id: int) -> ImapSettings:
    from bot.accounts import imap_settings

    return imap_settings(env.account(account_id))
