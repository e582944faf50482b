"""Gmail sync: ``history.list`` from the stored historyId, a bounded full sync otherwise.

The cursor is one FolderState row named ``""`` with ``{"history_id", "retry",
"quarantined"}``. Gmail's 404 on an old historyId → a bounded full resync (the newest
``full_sync_limit`` messages), re-read through ``ingest_message``, which is idempotent by
provider id and Message-ID, so nothing doubles.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from bot.providers.gmail import GmailClient, GmailMessage, HistoryExpired
from bot.store.db import session_scope
from bot.store.models import (
    Account,
    FolderState,
    Message,
)
from bot.sync.api_store import (
    FETCH_BATCH,
    MAX_ATTEMPTS,
    SyncCtx,
    begin_batch,
    drop_locations,
    ingest,
    known_provider_ids,
    set_locations,
)
from bot.sync.state import (
    folder_state,
    json_cursor,
    set_json_cursor,
)

log = logging.getLogger(__name__)

FULL_SYNC_LIMIT = 2000  # newest messages read by a first sync or a resync
GMAIL_CURSOR = ""  # the FolderState row holding Gmail's historyId

# Gmail labels that are locations (name → role); ARCHIVE is "All Mail minus Inbox".
GMAIL_FOLDERS = {"INBOX": "inbox", "SENT": "sent", "ARCHIVE": "archive"}
_GMAIL_SKIP_NEW = frozenset({"DRAFT", "SPAM", "TRASH"})  # never imported as new mail


def gmail_wanted(labels: frozenset[str]) -> list[str]:
    wanted: list[str] = [n for n in ("INBOX", "SENT") if n in labels]
    if not labels & {"INBOX", "SENT", "TRASH", "SPAM", "DRAFT"}:
        wanted.append("ARCHIVE")
    return wanted


def _gmail_batch(
    ctx: SyncCtx, fetched: list[tuple[str, GmailMessage | None]], cursor: dict[str, Any] | None
) -> None:
    """Store one batch; when ``cursor`` is given it is committed with it."""
    factory = ctx.services.session_factory
    with session_scope(factory) as s:
        fs_id = ctx.folders[GMAIL_CURSOR]
        begin_batch(s, fs_id)
        account = s.get_one(Account, ctx.account_id)
        fs = s.get_one(FolderState, fs_id)
        state = json_cursor(fs)
        retry: dict[str, int] = dict(state.get("retry") or {})
        quarantined: list[str] = list(state.get("quarantined") or [])
        for gid, gm in fetched:
            if gm is None:  # deleted for good
                if drop_locations(ctx, s, gid, GMAIL_FOLDERS):
                    ctx.stats.removed += 1
                retry.pop(gid, None)
                continue
            message = s.scalar(
                select(Message).where(
                    Message.account_id == ctx.account_id, Message.provider_id == gid
                )
            )
            unread = "UNREAD" in gm.label_ids
            try:
                if message is None:
                    if gm.label_ids & _GMAIL_SKIP_NEW or not gm.raw:
                        continue
                    message = ingest(
                        ctx,
                        s,
                        account,
                        gm.raw,
                        provider_id=gid,
                        thread_id=gm.thread_id,
                        is_read=not unread,
                        received_at=gm.internal_date,
                        where="Gmail",
                    )
                elif message.is_read == unread:
                    message.is_read = not unread
                    ctx.stats.changed += 1
                    ctx.stats.touched_conversations.add(message.conversation_id)
            except Exception as exc:
                log.exception("Gmail message %s could not be stored", gid)
                attempts = retry.get(gid, 0) + 1
                if attempts >= MAX_ATTEMPTS:
                    retry.pop(gid, None)
                    quarantined.append(gid)
                    ctx.stats.problem(
                        "Gmail",
                        None,
                        f"message {gid} quarantined after {attempts} failed attempts ({type(exc).__name__})",
                    )
                else:
                    retry[gid] = attempts
                    ctx.stats.problem(
                        "Gmail",
                        None,
                        f"message {gid} could not be stored ({type(exc).__name__}); will retry",
                    )
                continue
            retry.pop(gid, None)
            message.is_flagged = "STARRED" in gm.label_ids
            set_locations(ctx, s, message.id, gid, gmail_wanted(gm.label_ids), GMAIL_FOLDERS)
            ctx.stats.touched_conversations.add(message.conversation_id)
        if cursor is not None:
            state.update(cursor)
        state["retry"], state["quarantined"] = retry, sorted(set(quarantined))[-1000:]
        set_json_cursor(fs, {k: v for k, v in state.items() if v})


def _gmail_fetch(
    client: GmailClient, ids: Sequence[str], known: set[str]
) -> list[tuple[str, GmailMessage | None]]:
    # Known messages only need their labels (format=minimal, sync.md §1.2).
    return [(i, client.get(i, raw=i not in known)) for i in ids]


def _gmail_apply(
    ctx: SyncCtx,
    client: GmailClient,
    ids: list[str],
    deleted: Sequence[str],
    cursor: dict[str, Any],
) -> None:
    factory = ctx.services.session_factory
    known = known_provider_ids(factory, ctx.account_id, ids)
    batches = [ids[i : i + FETCH_BATCH] for i in range(0, len(ids), FETCH_BATCH)]
    gone: list[tuple[str, GmailMessage | None]] = [(d, None) for d in deleted]
    if not batches:
        _gmail_batch(ctx, gone, cursor)
        return
    for n, chunk in enumerate(batches):
        fetched = _gmail_fetch(client, chunk, known)
        if n == 0:
            fetched = gone + fetched
        _gmail_batch(ctx, fetched, cursor if n == len(batches) - 1 else None)


def sync_gmail(ctx: SyncCtx, client: GmailClient, limit: int) -> None:
    factory = ctx.services.session_factory
    with session_scope(factory) as s:
        for name, role in (*GMAIL_FOLDERS.items(), (GMAIL_CURSOR, None)):
            ctx.folders[name] = folder_state(s, ctx.account_id, name, role).id
        state = json_cursor(s.get_one(FolderState, ctx.folders[GMAIL_CURSOR]))
    ctx.stats.folders.extend(["INBOX", "SENT", "ARCHIVE"])
    history_id = state.get("history_id")
    retry = [str(k) for k in state.get("retry") or {}]
    if history_id:
        try:
            page = client.history(str(history_id))
        except HistoryExpired:
            ctx.stats.problem(
                "Gmail",
                None,
                "history expired on the server: newest messages re-read, no duplicates",
            )
            history_id = None
        else:
            gone = set(page.deleted)
            ids = [
                i for i in dict.fromkeys([*retry, *page.added, *page.relabelled]) if i not in gone
            ]
            _gmail_apply(ctx, client, ids, sorted(gone), {"history_id": page.history_id})
            return
    # Full (re)sync. The cursor is read first, so changes made meanwhile are replayed.
    start = str(client.profile().get("historyId") or "")
    ids = [i for i, _t in client.list_ids(limit=limit)]
    ids.reverse()  # oldest first: parents before replies
    _gmail_apply(ctx, client, list(dict.fromkeys([*retry, *ids])), (), {"history_id": start})
    with session_scope(factory) as s:
        fs = s.get_one(FolderState, ctx.folders[GMAIL_CURSOR])
        fs.last_full_scan_at = datetime.now(UTC)
