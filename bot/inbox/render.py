"""From store rows to the plain cards the Block Kit builders take."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.blocks.conversation import Activity, ConversationCard, EmailCard, Person
from bot.inbox.triage import triage_state
from bot.mail.parse import HEADER_ONLY_NOTE, is_header_only
from bot.mail.quotes import trim_quoted
from bot.store.models import Account, AuditLog, Conversation, LinkMethod, Message

# Audit actions shown on the parent's state line, by the slot they fill.
_READ_ACTIONS = {"conversation.read": "read", "conversation.mark_unread": "mark_unread"}
_STATE_ACTIONS = {
    "conversation.archive": "archive",
    "conversation.unarchive": "unarchive",
    "conversation.delete": "delete",
    "conversation.returned": "returned",
}
# Recent audit rows read for the state line (a conversation's history can be long).
_AUDIT_WINDOW = 50


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


def _person_id(actor: str | None) -> str | None:
    """A Slack user id, or None for "system"/"cli" (the state line names people only)."""
    if not actor or actor in ("system", "cli") or not actor[:1].isupper():
        return None
    return actor


def _activity(session: Session, conversation_id: int) -> tuple[Activity | None, Activity | None]:
    read_by: Activity | None = None
    state_by: Activity | None = None
    rows = session.execute(
        select(AuditLog.action, AuditLog.actor)
        .where(
            AuditLog.conversation_id == conversation_id,
            AuditLog.action.in_([*_READ_ACTIONS, *_STATE_ACTIONS]),
        )
        .order_by(AuditLog.id.desc())
        .limit(_AUDIT_WINDOW)
    )
    for action, actor in rows:
        if read_by is None and action in _READ_ACTIONS:
            read_by = Activity(_READ_ACTIONS[action], _person_id(actor))
        elif state_by is None and action in _STATE_ACTIONS:
            state_by = Activity(_STATE_ACTIONS[action], _person_id(actor))
        if read_by is not None and state_by is not None:
            break
    return read_by, state_by


def conversation_card(session: Session, conversation: Conversation) -> ConversationCard:
    """The parent keeps the first email's sender, recipients and snippet (never the newest's:
    later emails are in the thread), with the date of the latest activity."""
    account = session.get(Account, conversation.account_id)
    messages = _messages(session, conversation.id)
    first = messages[0] if messages else None
    latest = messages[-1] if messages else None
    link = conversation.link
    read_by, state_by = _activity(session, conversation.id)
    linked_by = None
    if link is not None and link.method == LinkMethod.MANUAL:
        linked_by = Activity("link", _person_id(link.linked_by))
    return ConversationCard(
        conversation_id=conversation.id,
        account_email=account.email if account else "",
        subject=conversation.subject or (first.subject if first else ""),
        sender=Person(first.from_name, first.from_email) if first else Person("", ""),
        to=_people(first.to) if first else [],
        cc=_people(first.cc) if first else [],
        date=(latest.date or latest.received_at) if latest else conversation.last_message_at,
        snippet=first.snippet if first else "",
        message_count=conversation.message_count or len(messages),
        unread=conversation.unread_count > 0,
        archived=conversation.archived,
        deleted=conversation.deleted,
        client_name=link.client.name if link is not None else None,
        has_attachments=any(m.has_attachments for m in messages),
        merged_into_id=conversation.merged_into_id,
        triage=triage_state(conversation, session=session),
        read_by=read_by,
        state_by=state_by,
        linked_by=linked_by,
    )


def card_user_ids(card: ConversationCard) -> set[str]:
    """The Slack users the card names (their display names are looked up outside the session)."""
    ids = {
        a.user_id
        for a in (card.read_by, card.state_by, card.linked_by)
        if a is not None and a.user_id
    }
    return ids | (card.triage.user_ids() if card.triage is not None else set())


def with_names(card: ConversationCard, names: Mapping[str, str]) -> ConversationCard:
    def named(a: Activity | None) -> Activity | None:
        if a is None or not a.user_id:
            return a
        return dataclasses.replace(a, name=names.get(a.user_id, ""))

    triage = card.triage
    if triage is not None:
        triage = dataclasses.replace(
            triage, names={u: names[u] for u in triage.user_ids() if names.get(u)}
        )
    return dataclasses.replace(
        card,
        read_by=named(card.read_by),
        state_by=named(card.state_by),
        linked_by=named(card.linked_by),
        triage=triage,
    )


def email_card(message: Message, *, first: bool = False) -> EmailCard:
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
        sent_by=message.sent_by,
        first=first,
    )
