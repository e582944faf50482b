"""Seeding helpers for /inbox and App Home tests: accounts in channels, ingested mail."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from bot.store.db import session_scope
from bot.store.ingest import ingest_message
from bot.store.models import Account, Conversation

_seq = itertools.count(1)
BASE = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def raw_mail(subject: str, sender: str = "anna@client.test", body: str = "Hello.") -> bytes:
    n = next(_seq)
    return (
        f"From: Anna Client <{sender}>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(BASE + timedelta(minutes=n))}\r\n"
        f"Message-ID: <seed{n}.{datetime.now(UTC).timestamp()}@client.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def ingest(mailroom: Any, account_id: int, subject: str, **kw: Any) -> int:
    """Store one email as a new conversation; returns the conversation id."""
    with session_scope(mailroom.services.session_factory) as s:
        account = s.get_one(Account, account_id)
        result = ingest_message(s, account, raw_mail(subject, **kw))
        return result.conversation.id


def set_conv(mailroom: Any, conversation_id: int, **fields: Any) -> None:
    with session_scope(mailroom.services.session_factory) as s:
        conv = s.get_one(Conversation, conversation_id)
        for k, v in fields.items():
            setattr(conv, k, v)


def two_accounts(mailroom: Any) -> tuple[int, int]:
    """support@ in CINBOX (UADMIN, UMEMBER) and secret@ in CSECRET (UADMIN only)."""
    mailroom.fake.add_channel("CSECRET", "secret", ["UBOT", "UADMIN"])
    inbox = mailroom.account("support@example.com").id
    secret = mailroom.account("secret@example.com", channel_id="CSECRET").id
    return inbox, secret


def last_response(mailroom: Any, count: int) -> dict[str, Any]:
    """Wait for the `count`-th response_url post and return its body."""
    mailroom.fake.wait_until(lambda: len(mailroom.fake.responses) >= count)
    return mailroom.fake.responses[count - 1].body
