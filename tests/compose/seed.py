"""Seeding a mailbox conversation through the real ingest path."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy.orm import Session

from bot.store.ingest import IngestResult, ingest_message
from bot.store.models import Account, Provider


def email(
    *,
    message_id: str,
    sender: str = "Jane Doe <jane@acme.test>",
    to: str = "support@mailroom.test",
    cc: str | None = None,
    subject: str = "Order 42",
    body: str = "Where is my order?\n",
    in_reply_to: str | None = None,
    references: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
    when: datetime | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{message_id}>"
    msg["Date"] = format_datetime(when or datetime(2024, 3, 1, 9, 0, tzinfo=UTC))
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        msg["References"] = references
    msg.set_content(body)
    for name, ctype, data in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def account(
    session: Session, address: str = "support@mailroom.test", channel: str = "CINBOX"
) -> Account:
    acc = Account(provider=Provider.IMAP, email=address, channel_id=channel, config={})
    session.add(acc)
    session.flush()
    return acc


def ingest(session: Session, acc: Account, raw: bytes) -> IngestResult:
    return ingest_message(session, acc, raw)
