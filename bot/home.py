"""The inbox as one person may see it (store + Slack client): visible accounts, filters with
counts, result lines, and publishing the App Home tab.

Visibility is decided here, once, from channel membership: every query below takes the account
ids the person may see, so a listing can never leak another channel's mail.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.blocks.home import (
    ACCOUNTS_PAGE_SIZE,
    CLIENTS_PAGE_SIZE,
    RECENT_LIMIT,
    AccountSummary,
    ClientSummary,
    HomeData,
    HomePages,
    home_view,
)
from bot.blocks.search import FILTERS, ResultItem, thread_url
from bot.folder_choices import readable_folders
from bot.services import Services
from bot.store.db import read_scope
from bot.store.models import (
    Account,
    Client,
    Conversation,
    ConversationLink,
    ConversationNote,
    Message,
    Provider,
    RunStatus,
    SlackThread,
    SyncRun,
)
from bot.store.search import latest_notes, search_notes

log = logging.getLogger(__name__)


def visible_account_ids(services: Services, client: WebClient, user_id: str) -> list[int]:
    """Accounts whose channel the person is a member of (admins included: mail follows
    channel membership; admins manage accounts without reading their mail)."""
    with read_scope(services.session_factory) as session:
        rows = session.execute(select(Account.id, Account.channel_id)).all()
    channels = services.access.visible_channels(client, user_id, sorted({c for _, c in rows if c}))
    return sorted(acc_id for acc_id, channel in rows if channel in channels)


def filter_counts(
    session: Session, account_ids: Sequence[int], user_id: str | None = None
) -> dict[str, int]:
    """Conversations per filter among the visible accounts (store semantics); `user_id`
    is whose "mine" it is."""
    from bot.store import conversations

    if not account_ids:
        return dict.fromkeys(FILTERS, 0)
    return conversations.filter_counts(session, account_ids=list(account_ids), user_id=user_id)


def list_conversations(
    session: Session,
    account_ids: Sequence[int],
    filter_name: str = "all",
    *,
    client_id: int | None = None,
    limit: int = 10,
    offset: int = 0,
    user_id: str | None = None,
) -> list[Conversation]:
    """Newest activity first; ask for `limit + 1` to learn whether a next page exists."""
    from bot.store import conversations

    if not account_ids:
        return []
    return conversations.list_conversations(
        session,
        filter=filter_name if filter_name in FILTERS else "all",
        account_ids=list(account_ids),
        client_id=client_id,
        limit=limit,
        offset=offset,
        user_id=user_id,
    )


def _context(
    session: Session, conv_ids: Sequence[int], account_ids: Sequence[int]
) -> tuple[dict[int, str], dict[int, str], dict[int, tuple[str | None, str | None]]]:
    emails = dict(
        session.execute(
            select(Account.id, Account.email).where(Account.id.in_(set(account_ids)))
        ).all()
    )
    clients = dict(
        session.execute(
            select(ConversationLink.conversation_id, Client.name)
            .join(Client, Client.id == ConversationLink.client_id)
            .where(ConversationLink.conversation_id.in_(conv_ids))
        ).all()
    )
    threads: dict[int, tuple[str | None, str | None]] = {
        cid: (ch, ts)
        for cid, ch, ts in session.execute(
            select(SlackThread.conversation_id, SlackThread.channel_id, SlackThread.ts).where(
                SlackThread.conversation_id.in_(conv_ids)
            )
        ).all()
    }
    return emails, clients, threads


def hit_items(session: Session, hits: Sequence[Any]) -> list[ResultItem]:
    """Result lines for search hits (bot.store.search.SearchHit): one email each, or one
    conversation each with how many of its emails match (a per-conversation search)."""
    if not hits:
        return []
    conv_ids = sorted({h.conversation_id for h in hits})
    emails, clients, threads = _context(session, conv_ids, [h.account_id for h in hits])
    convs = {
        c.id: c for c in session.scalars(select(Conversation).where(Conversation.id.in_(conv_ids)))
    }
    items = []
    for h in hits:
        conv = convs.get(h.conversation_id)
        channel, ts = threads.get(h.conversation_id, (None, None))
        items.append(
            ResultItem(
                conversation_id=h.conversation_id,
                message_id=h.id,
                subject=h.subject,
                sender_name=h.from_name,
                sender_email=h.from_email,
                date=h.date,
                snippet=h.snippet,
                account_email=emails.get(h.account_id, ""),
                client_name=clients.get(h.conversation_id),
                thread_url=thread_url(channel, ts),
                unread=bool(conv and conv.unread_count > 0),
                archived=bool(conv and conv.archived),
                message_count=conv.message_count if conv else 1,
                matches=getattr(h, "matches", 0),
            )
        )
    return items


def result_items(session: Session, conversations: Sequence[Conversation]) -> list[ResultItem]:
    """Result lines for conversations: latest message's sender/snippet, account, client, thread."""
    if not conversations:
        return []
    conv_ids = [c.id for c in conversations]
    emails, clients, threads = _context(session, conv_ids, [c.account_id for c in conversations])
    notes = latest_notes(session, conv_ids)
    items: list[ResultItem] = []
    for conv in conversations:
        latest = session.scalars(
            select(Message)
            .where(Message.conversation_id == conv.id, Message.deleted.is_(False))
            .order_by(Message.date.desc().nulls_last(), Message.id.desc())
            .limit(1)
        ).first()
        channel, ts = threads.get(conv.id, (None, None))
        items.append(
            ResultItem(
                conversation_id=conv.id,
                subject=conv.subject or (latest.subject if latest else ""),
                sender_name=latest.from_name if latest else "",
                sender_email=latest.from_email if latest else "",
                date=conv.last_message_at or (latest.date if latest else None),
                snippet=latest.snippet if latest else "",
                account_email=emails.get(conv.account_id, ""),
                client_name=clients.get(conv.id),
                thread_url=thread_url(channel, ts),
                unread=conv.unread_count > 0,
                archived=conv.archived,
                message_count=conv.message_count,
                note=_note_line(notes.get(conv.id)),
            )
        )
    return items


def _note_line(note: ConversationNote | None) -> str:
    if note is None:
        return ""
    return f"{note.author_name or 'someone'}: {note.text}"


def note_items(
    session: Session, query: str, account_ids: Collection[int] | None
) -> list[ResultItem]:
    """Conversations whose internal notes match the query, each line showing that note."""
    if not account_ids:
        return []
    found = search_notes(session, query, visible_account_ids=account_ids)
    by_conv: dict[int, ConversationNote] = {}
    for note in found:
        by_conv.setdefault(note.conversation_id, note)
    convs = list(session.scalars(select(Conversation).where(Conversation.id.in_(list(by_conv)))))
    return [
        replace(item, note=_note_line(by_conv.get(item.conversation_id)))
        for item in result_items(session, convs)
    ]


def _last_error_times(session: Session, account_ids: list[int]) -> dict[int, datetime]:
    """When each account's newest failed sync run started (one query for the page)."""
    if not account_ids:
        return {}
    rows = session.execute(
        select(SyncRun.account_id, func.max(SyncRun.started_at))
        .where(SyncRun.account_id.in_(account_ids), SyncRun.status == RunStatus.ERROR)
        .group_by(SyncRun.account_id)
    )
    return {int(a): t for a, t in rows if t is not None}


def _account_summary(a: Account, last_error_at: datetime | None = None) -> AccountSummary:
    from bot.blocks.connection import connection_lines

    return AccountSummary(
        id=a.id,
        email=a.email,
        provider=a.provider.value,
        channel_id=a.channel_id,
        status=a.status.value,
        last_error=a.last_error,
        last_sync_at=a.last_sync_at,
        last_success_at=a.last_success_at,
        next_sync_at=a.next_sync_at,
        sync_interval_seconds=a.sync_interval_seconds,
        folders=readable_folders(a.provider.value, a.folders, a.config),
        servers=connection_lines(a.config or {}) if a.provider == Provider.IMAP else (),
        last_error_at=last_error_at,
    )


def client_summaries(session: Session, clients: Sequence[Client]) -> list[ClientSummary]:
    ids = [c.id for c in clients]
    counts = dict(
        session.execute(
            select(ConversationLink.client_id, func.count(ConversationLink.id))
            .where(ConversationLink.client_id.in_(ids))
            .group_by(ConversationLink.client_id)
        ).all()
    )
    return [
        ClientSummary(
            id=c.id,
            name=c.name,
            company=c.company,
            addresses=tuple(a.email for a in c.addresses),
            domains=tuple(d.domain for d in c.domains),
            conversation_count=int(counts.get(c.id, 0)),
        )
        for c in clients
    ]


def _template_blocks(session: Session, user_id: str, is_admin: bool) -> list[dict[str, Any]]:
    """The templates the person may use (shared and their own), with what they may change."""
    from bot.blocks.templates import template_section
    from bot.store.templates import list_templates

    try:
        templates = list_templates(session, user_id=user_id)
        return list(template_section(templates, is_admin=is_admin, user_id=user_id))
    except Exception:  # their section must never take the whole Home tab down
        log.exception("template section failed to build")
        return []


def _clients_page(session: Session, pages: HomePages) -> tuple[list[ClientSummary], int, HomePages]:
    """The page of clients the person is on (narrowed by their search), for everyone."""
    from bot.store.clients import count_clients, list_clients

    query = pages.client_query or None
    total = count_clients(session, query=query)
    page = min(pages.clients, max(0, (total - 1) // CLIENTS_PAGE_SIZE))
    rows = list_clients(
        session, query=query, limit=CLIENTS_PAGE_SIZE, offset=page * CLIENTS_PAGE_SIZE
    )
    return client_summaries(session, rows), total, replace(pages, clients=page)


def home_data(
    services: Services, client: WebClient, user_id: str, pages: HomePages | None = None
) -> HomeData:
    pages = pages or HomePages()
    is_admin = services.access.is_admin(client, user_id)
    account_ids = visible_account_ids(services, client, user_id)
    with read_scope(services.session_factory) as session:
        connected = int(session.scalar(select(func.count(Account.id))) or 0)
        counts = filter_counts(session, account_ids, user_id)
        recent = result_items(session, list_conversations(session, account_ids, limit=RECENT_LIMIT))
        triage = triage_home_blocks(session, account_ids, user_id)
        clients, clients_total, pages = _clients_page(session, pages)
        if not is_admin:
            return HomeData(
                is_admin=False,
                triage_blocks=triage,
                counts=counts,
                recent=recent,
                visible_accounts=len(account_ids),
                connected_accounts=connected,
                clients=clients,
                clients_total=clients_total,
                template_blocks=_template_blocks(session, user_id, False),
                pages=pages,
            )
        accounts_total = int(session.scalar(select(func.count(Account.id))) or 0)
        acc_page = min(pages.accounts, max(0, (accounts_total - 1) // ACCOUNTS_PAGE_SIZE))
        accounts = session.scalars(
            select(Account)
            .order_by(Account.email)
            .limit(ACCOUNTS_PAGE_SIZE)
            .offset(acc_page * ACCOUNTS_PAGE_SIZE)
        ).all()
        errors_at = _last_error_times(session, [a.id for a in accounts])
        return HomeData(
            is_admin=True,
            triage_blocks=triage,
            counts=counts,
            recent=recent,
            visible_accounts=len(account_ids),
            connected_accounts=connected,
            accounts=[_account_summary(a, errors_at.get(a.id)) for a in accounts],
            accounts_total=accounts_total,
            clients=clients,
            clients_total=clients_total,
            template_blocks=_template_blocks(session, user_id, True),
            pages=replace(pages, accounts=acc_page),
        )


TRIAGE_HOME_LIMIT = 5


def triage_home_blocks(
    session: Session, account_ids: Sequence[int], user_id: str
) -> list[dict[str, Any]]:
    """The person's conversations and the unassigned ones, oldest waiting customer first,
    and their assignment-DM switch (issue 16)."""
    from bot.blocks.triage import home_blocks, home_item
    from bot.store import triage

    if not account_ids:
        return []
    mine, unassigned = triage.home_conversations(
        session, account_ids, user_id, limit=TRIAGE_HOME_LIMIT
    )

    def items(convs: Sequence[Conversation]) -> list[dict[str, Any]]:
        lines = result_items(session, convs)
        return [
            home_item(
                c.id,
                line.subject,
                line.sender_name or line.sender_email,
                line.account_email,
                c.waiting_since,
                triage.effective_status(c),
                line.thread_url,
            )
            for c, line in zip(convs, lines, strict=True)
        ]

    dms_on = triage.wants_assignment_dms(session, user_id)
    return home_blocks(items(mine), items(unassigned), dms_on)


def publish_home(
    services: Services, client: WebClient, user_id: str, pages: HomePages | None = None
) -> None:
    view = home_view(home_data(services, client, user_id, pages))
    try:
        client.views_publish(user_id=user_id, view=view)
    except SlackApiError as exc:
        # A Home tab that failed to refresh is not worth failing the action that caused it.
        log.warning("views.publish for %s failed: %s", user_id, exc.response.get("error"))


def refresh_admin_homes(services: Services, client: WebClient, user_ids: Sequence[str]) -> None:
    for uid in dict.fromkeys(user_ids):
        publish_home(services, client, uid)
