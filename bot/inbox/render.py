"""From store rows to the plain cards the Block Kit builders take."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.blocks.conversation import ConversationCard, EmailCard, Person
from bot.inbox.triage import triage_state
from bot.mail.parse import HEADER_ONLY_NOTE, is_header_only
from bot.mail.quotes import trim_quoted
from bot.store.models import Account, Conversation, Message


def _people(items: list[Any]) -> list[Person]:
    return [
        Person(str(i.get("name") or ""), str(i.get("email") or ""))
        for i in items or []
        if isinstance(i, dict)
    ]


def _messages(session: Session, conversation_id: int) -> list[Message]:
    return list(
        session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.date.is_(None), Message.date, Message.id)
        )
    )


def conversation_card(session: Session, conversation: Conversation) -> ConversationCard:
    """The parent shows the first email's sender and recipients and the latest snippet."""
    account = session.get(Account, conversation.account_id)
    messages = _messages(session, conversation.id)
    first = messages[0] if messages else None
    latest = messages[-1] if messages else None
    link = conversation.link
    return ConversationCard(
        conversation_id=conversation.id,
        account_email=account.email if account else "",
        subject=conversation.subject or (first.subject if first else ""),
        sender=Person(first.from_name, first.from_email) if first else Person("", ""),
        to=_people(first.to) if first else [],
        cc=_people(first.cc) if first else [],
        date=(latest.date or latest.received_at) if latest else conversation.last_message_at,
        snippet=latest.snippet if latest else "",
        message_count=conversation.message_count or len(messages),
        unread=conversation.unread_count > 0,
        archived=conversation.archived,
        deleted=conversation.deleted,
        client_name=link.client.name if link is not None else None,
        has_attachments=any(m.has_attachments for m in messages),
        merged_into_id=conversation.merged_into_id,
        triage=triage_state(conversation, session=session),
    )


def email_card(message: Message) -> EmailCard:
    # body_text is the converted text, stored once at parse (an HTML mail's text included):
    # converting the HTML again here ran on every post and every Open (security-review #3).
    body = message.body_text
    if not body.strip() and is_header_only(message.parse_defects):
        body = HEADER_ONLY_NOTE
    return EmailCard(
        conversation_id=message.conversation_id,
        message_id=message.id,
        sender=Person(message.from_name, message.from_email),
        to=_people(message.to),
        cc=_people(message.cc),
        date=message.date or message.received_at,
        body=trim_quoted(body),
        attachment_names=[a.filename or "unnamed" for a in message.attachments if not a.inline],
        outbound=message.direction.value == "outbound",
    )
