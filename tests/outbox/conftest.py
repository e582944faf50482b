"""Fixtures for the outbox tests that send real mail (Dovecot + the loopback SMTP server)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bot.store.db import SessionFactory, session_scope
from bot.store.models import Account
from bot.store.outbox import enqueue
from tests.mailservers.dovecot import DovecotServer, MailUser
from tests.mailservers.smtp_server import SmtpServer
from tests.sync.conftest import Env, make_services


@pytest.fixture
def env(session_factory: SessionFactory, dovecot: DovecotServer) -> Env:
    return Env(make_services(session_factory), dovecot)


def smtp_account(env: Env, smtp_server: SmtpServer) -> tuple[int, MailUser, MailUser]:
    """An IMAP account that sends through the loopback SMTP server, and a customer mailbox."""
    aid, support = env.new_account()
    cust_name, _ = env.dovecot.new_user("customer")
    customer = env.dovecot.user(cust_name)
    with session_scope(env.factory) as s:
        acc = s.get_one(Account, aid)
        smtp = smtp_server.settings(support.username)
        acc.config = {
            **acc.config,
            "smtp": {
                "host": smtp.host,
                "port": smtp.port,
                "security": "plain",
                "username": support.username,
            },
        }
    return aid, support, customer


def queue_send(env: Env, account_id: int, sender: MailUser, to: MailUser, subject: str) -> str:
    """A "mail.send" row as compose submit queues it (a new email); returns its Message-ID."""
    mid = f"{uuid.uuid4().hex}@mailroom.test"
    payload: dict[str, Any] = {
        "mode": "new",
        "message_id": mid,
        "conversation_id": None,
        "slack_user": "UMEMBER",
        "from": {"name": "Support", "email": sender.address},
        "to": [{"name": "", "email": to.address}],
        "cc": [],
        "bcc": [],
        "subject": subject,
        "body": f"{subject}\n",
        "in_reply_to": None,
        "references": [],
        "slack_files": [],
        "send_anyway": False,
    }
    with session_scope(env.factory) as s:
        enqueue(
            s,
            kind="mail.send",
            key=f"compose:{mid}",
            payload=payload,
            account_id=account_id,
            created_by="UMEMBER",
        )
    return mid


def sends_of(smtp_server: SmtpServer, mid: str) -> int:
    """How many times the SMTP server accepted the email with this Message-ID."""
    with smtp_server.lock:
        return sum(1 for m in smtp_server.messages if f"<{mid}>".encode() in m.raw)
