"""Conversation queries: filtered listings, counts, a client's timeline, one by id.

Merged conversations (merged_into_id set) and conversations moved to Trash never show in
listings; `get_conversation(..., follow_merges=True)` turns an old id into the live one.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from bot.store.models import Conversation, ConversationLink, Message


class ConversationFilter(enum.StrEnum):
    ALL = "all"  # every live conversation, archived included
    UNREAD = "unread"  # at least one unread message
    ARCHIVED = "archived"
    LINKED = "linked"  # linked to a client
    UNLINKED = "unlinked"
    # Team triage views (bot/store/triage.py); `mine` needs the person's Slack id.
    MINE = "mine"
    UNASSIGNED = "unassigned"
    WAITING = "waiting"
    SNOOZED = "snoozed"
    UNANSWERED = "unanswered"


def _live() -> list[ColumnElement[bool]]:
    return [Conversation.merged_into_id.is_(None), Conversation.deleted.is_(False)]


def _filter_condition(
    name: ConversationFilter | str, user_id: str | None = None
) -> list[ColumnElement[bool]]:
    f = ConversationFilter(name)
    from bot.store import triage

    if f.value in triage.VIEWS:
        return triage.view_conditions(f.value, user_id)
    linked = select(ConversationLink.conversation_id)
    if f == ConversationFilter.UNREAD:
        return [Conversation.unread_count > 0]
    if f == ConversationFilter.ARCHIVED:
        return [Conversation.archived.is_(True)]
    if f == ConversationFilter.LINKED:
        return [Conversation.id.in_(linked)]
    if f == ConversationFilter.UNLINKED:
        return [Conversation.id.not_in(linked)]
    return []


def _base(
    filter: ConversationFilter | str,
    account_ids: Collection[int] | None,
    client_id: int | None,
    user_id: str | None = None,
) -> Select[Any]:
    from bot.store import triage

    stmt = select(Conversation).where(*_live(), *_filter_condition(filter, user_id))
    if account_ids is not None:
        account: Any = Conversation.account_id
        if ConversationFilter(filter).value in triage.VIEWS:
            # A triage view reads its partial index (all it tests is in it), not the
            # per-account one (a table lookup for each of the accounts' conversations).
            account = triage.Unindexed(account)
        stmt = stmt.where(account.in_(list(account_ids)))
    if client_id is not None:
        stmt = stmt.where(
            Conversation.id.in_(
                select(ConversationLink.conversation_id).where(
                    ConversationLink.client_id == client_id
                )
            )
        )
    return stmt


def list_conversations(
    session: Session,
    *,
    filter: ConversationFilter | str = ConversationFilter.ALL,
    account_ids: Collection[int] | None,
    client_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
    user_id: str | None = None,
) -> list[Conversation]:
    """Newest activity first. `account_ids` is the access filter (None: every account; only
    for trusted callers such as the CLI). `user_id`: whose "mine" it is."""
    stmt = (
        _base(filter, account_ids, client_id, user_id)
        .options(selectinload(Conversation.link).selectinload(ConversationLink.client))
        .order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(stmt))


def count_conversations(
    session: Session,
    *,
    filter: ConversationFilter | str = ConversationFilter.ALL,
    account_ids: Collection[int] | None,
    client_id: int | None = None,
    user_id: str | None = None,
) -> int:
    inner = (
        _base(filter, account_ids, client_id, user_id).with_only_columns(Conversation.id).subquery()
    )
    return int(session.scalar(select(func.count()).select_from(inner)) or 0)


def filter_counts(
    session: Session, *, account_ids: Collection[int] | None, user_id: str | None = None
) -> dict[str, int]:
    """How many conversations each filter shows (for tabs / App Home)."""
    return {
        f.value: count_conversations(session, filter=f, account_ids=account_ids, user_id=user_id)
        for f in ConversationFilter
    }


def client_timeline(
    session: Session,
    client_id: int,
    *,
    account_ids: Collection[int] | None,
    limit: int = 50,
    offset: int = 0,
) -> list[Conversation]:
    """A client's conversations, newest activity first."""
    return list_conversations(
        session,
        filter=ConversationFilter.ALL,
        account_ids=account_ids,
        client_id=client_id,
        limit=limit,
        offset=offset,
    )


def get_conversation(
    session: Session, conversation_id: int, *, follow_merges: bool = True
) -> Conversation | None:
    conversation = session.get(Conversation, conversation_id)
    seen: set[int] = set()
    while (
        follow_merges
        and conversation is not None
        and conversation.merged_into_id is not None
        and conversation.id not in seen
    ):
        seen.add(conversation.id)
        conversation = session.get(Conversation, conversation.merged_into_id)
    return conversation


def conversation_messages(session: Session, conversation_id: int) -> list[Message]:
    """A conversation's messages, oldest first."""
    return list(
        session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.date, Message.id)
        )
    )


def message_ids_by_conversation(
    session: Session, conversation_ids: Collection[int]
) -> dict[int, list[str]]:
    """Message-ID headers per conversation, oldest first (one query for a whole page)."""
    out: dict[int, list[str]] = {cid: [] for cid in conversation_ids}
    if not conversation_ids:
        return out
    rows = session.execute(
        select(Message.conversation_id, Message.message_id)
        .where(Message.conversation_id.in_(list(conversation_ids)))
        .order_by(Message.conversation_id, Message.date, Message.id)
    )
    for cid, mid in rows:
        out[cid].append(mid)
    return out
