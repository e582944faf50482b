"""Sending through the Gmail and Microsoft 365 APIs (they file the Sent copy themselves)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.mail.parse import parse_message
from bot.services import Services
from bot.store.db import session_scope
from bot.store.models import (
    Account,
    Direction,
    Message,
    Provider,
)
from bot.sync.api_accounts import gmail_client, graph_client, load_account
from bot.sync.api_store import (
    SyncCtx,
    set_locations,
)
from bot.sync.graph_sync import graph_folders
from bot.sync.imap_sync import RunStats
from bot.sync.state import (
    folder_state,
)

log = logging.getLogger(__name__)


def _thread_hint(s: Session, account_id: int, raw: bytes) -> str | None:
    """Gmail threads a sent reply only when told the thread id (sync.md §1.2)."""
    parsed = parse_message(raw)
    refs = [*parsed.in_reply_to, *reversed(parsed.references)]
    for ref in refs:
        thread = s.scalar(
            select(Message.provider_thread_id).where(
                Message.account_id == account_id, Message.message_id == ref.strip("<>")
            )
        )
        if thread:
            return str(thread)
    return None


def _ingest_sent(
    services: Services,
    account_id: int,
    raw: bytes,
    provider_id: str | None,
    thread_id: str | None,
    sent_by: str | None,
    folder: str | None,
) -> None:
    from bot.store.ingest import ingest_message

    with session_scope(services.session_factory) as s:
        account = s.get_one(Account, account_id)
        result = ingest_message(
            s,
            account,
            raw,
            provider_id=provider_id,
            provider_thread_id=thread_id,
            is_read=True,
            direction=Direction.OUTBOUND,
            sent_by=sent_by,
        )
        if provider_id and result.message.provider_id is None:
            result.message.provider_id = provider_id
        if provider_id and folder:
            ctx = SyncCtx(
                services,
                account_id,
                RunStats(),
                {folder: folder_state(s, account_id, folder, "sent").id},
            )
            set_locations(ctx, s, result.message.id, provider_id, [folder], [folder])
        if result.created:
            try:
                from bot.inbox.announce import announce_ingested
            except ImportError:
                pass
            else:
                announce_ingested(s, account, result)


def send_mail_api(
    services: Services,
    account: Account,
    raw: bytes,
    message_id: str,
    *,
    sent_by: str | None = None,
    accepted: dict[str, Any] | None = None,
    before_send: Callable[[], None] | None = None,
    on_accepted: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Send through the mailbox's own API; it files the Sent copy itself (no append).

    Idempotent by Message-ID: skipped when the store or the mailbox's Sent already has it
    (Gmail ``q=rfc822msgid:``; Graph ``$filter=internetMessageId eq '<…>'`` in Sent Items).
    ``accepted``/``before_send``/``on_accepted`` as in ``writeback.send_mail``: an accepted
    send is never sent again (Graph files its Sent copy late, so the search can miss it)."""
    account = load_account(services, account.id)
    mid = message_id.strip().strip("<>")
    with session_scope(services.session_factory) as s:
        if (
            s.scalar(
                select(Message.id).where(
                    Message.account_id == account.id, Message.message_id == mid
                )
            )
            is not None
        ):
            return
        thread = _thread_hint(s, account.id, raw) if account.provider == Provider.GMAIL else None
    if account.provider == Provider.GMAIL:
        gmail = gmail_client(services, account)
        if accepted and accepted.get("gmail_id"):
            gid, tid = str(accepted["gmail_id"]), accepted.get("thread_id")
            _ingest_sent(services, account.id, raw, gid, tid, sent_by, "SENT")
            return
        found = gmail.find_message_id(mid)
        if found:
            gm = gmail.get(found[0], raw=False)
            _ingest_sent(
                services, account.id, raw, found[0], gm.thread_id if gm else None, sent_by, "SENT"
            )
            return
        if before_send is not None:
            before_send()
        sent = gmail.send(raw, thread_id=thread)
        log.info("sent %s through Gmail for account %s", mid, account.id)
        if on_accepted is not None:
            on_accepted({"gmail_id": sent.id, "thread_id": sent.thread_id})
        _ingest_sent(services, account.id, raw, sent.id, sent.thread_id, sent_by, "SENT")
        return
    with graph_client(services, account) as graph:
        found = [] if accepted else graph.find_internet_message_id("sentitems", mid)
        if not found and not accepted:
            if before_send is not None:
                before_send()
            graph.send_mime(raw)
            log.info("sent %s through Microsoft Graph for account %s", mid, account.id)
            if on_accepted is not None:
                on_accepted({})
    # Graph's sendMail returns no id: the Sent Items delta supplies it on the next sync.
    folder = "sentitems" if "sentitems" in [n for n, _r in graph_folders(account)] else None
    _ingest_sent(
        services,
        account.id,
        raw,
        found[0] if found else None,
        None,
        sent_by,
        folder if found else None,
    )
