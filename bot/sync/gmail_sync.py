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

from bot.providers.errors import ProtocolError, ProviderError, TransientError
from bot.providers.gmail import GmailClient, GmailMessage, HistoryExpired
from bot.store.db import session_scope
from bot.store.models import (
    Account,
    FolderState,
    Message,
    MessageLocation,
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
    if labels & {"TRASH", "SPAM"}:
        return []  # Gmail's views leave Trash and Spam out, whatever other labels remain
    wanted: list[str] = [n for n in ("INBOX", "SENT") if n in labels]
    if not labels & {"INBOX", "SENT", "TRASH", "SPAM", "DRAFT"}:
        wanted.append("ARCHIVE")
    return wanted


def gmail_label_chosen(labels: frozenset[str], chosen: Sequence[str] | None) -> bool:
    """Whether a NEW message is imported under the account's folder choice (label ids, plus
    ``ARCHIVE`` for archived mail: none of INBOX/SENT/TRASH/SPAM/DRAFT). Nothing chosen: all
    mail. Known messages keep updating whatever their labels (sync.md §1.2)."""
    if not chosen:
        return True
    # INBOX / SENT / ARCHIVE may have been typed by hand before labels were offered.
    wanted = {c.upper() if c.upper() in GMAIL_FOLDERS else c for c in chosen}
    if "ARCHIVE" in wanted and not labels & {"INBOX", "SENT", "TRASH", "SPAM", "DRAFT"}:
        return True
    return bool(labels & wanted)


Fetched = tuple[str, GmailMessage | ProviderError | None]  # None: deleted for good


def _gmail_batch(ctx: SyncCtx, fetched: list[Fetched], cursor: dict[str, Any] | None) -> None:
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

        def failed(gid: str, exc: Exception, what: str) -> None:
            attempts = retry.get(gid, 0) + 1
            if attempts >= MAX_ATTEMPTS:
                retry.pop(gid, None)
                quarantined.append(gid)
                ctx.stats.problem(
                    "Gmail",
                    None,
                    f"message {gid} quarantined after {attempts} failed attempts to {what} "
                    f"({type(exc).__name__}: {str(exc)[:120]})",
                )
            else:
                retry[gid] = attempts
                ctx.stats.problem(
                    "Gmail",
                    None,
                    f"message {gid} could not be {what} ({type(exc).__name__}); will retry",
                )

        for gid, gm in fetched:
            if isinstance(gm, ProviderError):  # Gmail kept refusing this one message
                failed(gid, gm, "read from Gmail")
                continue
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
                    if not gmail_label_chosen(gm.label_ids, account.folders):
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
                failed(gid, exc, "stored")
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
    client: GmailClient, ids: Sequence[str], known: set[str], retrying: set[str]
) -> list[Fetched]:
    """Known messages only need their labels (format=minimal, sync.md §1.2). A message Gmail
    keeps failing (after the client's own retries) is returned as its error, to be retried
    next run and quarantined after MAX_ATTEMPTS, so it cannot block the cursor; when every
    message of the batch fails (and not only ones already failing), Gmail itself is in
    trouble and the run ends instead."""
    got = client.get_many(ids, raw=lambda i: i not in known)
    out: list[Fetched] = [
        (i, got[i] if i in got else ProtocolError("Gmail's batch gave no answer for it"))
        for i in ids
    ]
    for _i, gm in out:
        if isinstance(gm, ProviderError) and not isinstance(gm, TransientError | ProtocolError):
            raise gm  # auth / configuration: the whole account, not this message
    errors = [gm for _i, gm in out if isinstance(gm, ProviderError)]
    if errors and len(errors) == len(out) and not set(ids) <= retrying:
        raise errors[0]
    return out


def _gmail_apply(
    ctx: SyncCtx,
    client: GmailClient,
    ids: list[str],
    deleted: Sequence[str],
    cursor: dict[str, Any],
) -> None:
    factory = ctx.services.session_factory
    known = known_provider_ids(factory, ctx.account_id, ids)
    with session_scope(factory) as s:
        retrying = set(
            json_cursor(s.get_one(FolderState, ctx.folders[GMAIL_CURSOR])).get("retry") or {}
        )
    batches = [ids[i : i + FETCH_BATCH] for i in range(0, len(ids), FETCH_BATCH)]
    gone: list[Fetched] = [(d, None) for d in deleted]
    if not batches:
        _gmail_batch(ctx, gone, cursor)
        return
    for n, chunk in enumerate(batches):
        fetched = _gmail_fetch(client, chunk, known, retrying)
        if n == 0:
            fetched = gone + fetched
        _gmail_batch(ctx, fetched, cursor if n == len(batches) - 1 else None)
        if ctx.after_batch is not None:
            ctx.after_batch("Gmail", n)  # renews the lease; LeaseLost ends the run


def sync_gmail(ctx: SyncCtx, client: GmailClient, limit: int) -> None:
    factory = ctx.services.session_factory
    with session_scope(factory) as s:
        for name, role in (*GMAIL_FOLDERS.items(), (GMAIL_CURSOR, None)):
            ctx.folders[name] = folder_state(s, ctx.account_id, name, role).id
        state = json_cursor(s.get_one(FolderState, ctx.folders[GMAIL_CURSOR]))
    ctx.stats.folders.extend(["INBOX", "SENT", "ARCHIVE"])
    history_id = state.get("history_id")
    retry = [str(k) for k in state.get("retry") or {}]
    skip = set(state.get("quarantined") or [])
    expired = False
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
            expired = True
        else:
            gone = set(page.deleted)
            ids = [
                i
                for i in dict.fromkeys([*retry, *page.added, *page.relabelled])
                if i not in gone and i not in skip
            ]
            _gmail_apply(ctx, client, ids, sorted(gone), {"history_id": page.history_id})
            return
    # Full (re)sync. The cursor is read first, so changes made meanwhile are replayed.
    start = str(client.profile().get("historyId") or "")
    ids = [i for i, _t in client.list_ids(limit=limit)]
    ids.reverse()  # oldest first: parents before replies
    listed = [i for i in dict.fromkeys([*retry, *ids]) if i not in skip]
    _gmail_apply(ctx, client, listed, (), {"history_id": start})
    if expired:
        _reconcile_deleted(ctx, client, set(ids), complete=len(ids) < limit)
    with session_scope(factory) as s:
        fs = s.get_one(FolderState, ctx.folders[GMAIL_CURSOR])
        fs.last_full_scan_at = datetime.now(UTC)


def _reconcile_deleted(ctx: SyncCtx, client: GmailClient, listed: set[str], complete: bool) -> None:
    """After a resync that followed expired history: mail deleted meanwhile left no history
    record, so what the store still places in Gmail's views but the relist did not return is
    checked. When the relist covered the whole mailbox (``complete``) it is gone; otherwise
    only messages at least as new as the oldest one listed are asked about
    (``messages.get`` minimal: 404 → gone, else its labels are taken)."""
    factory = ctx.services.session_factory
    folder_ids = [ctx.folders[n] for n in GMAIL_FOLDERS]
    with session_scope(factory) as s:
        rows = s.execute(
            select(Message.id, Message.provider_id, Message.received_at)
            .join(MessageLocation, MessageLocation.message_id == Message.id)
            .where(
                Message.account_id == ctx.account_id,
                MessageLocation.folder_id.in_(folder_ids),
                Message.provider_id.is_not(None),
            )
            .distinct()
        ).all()
    dates = [r.received_at for r in rows if r.provider_id in listed and r.received_at]
    oldest = min(dates) if dates else None
    candidates = [
        (r.id, str(r.provider_id))
        for r in rows
        if r.provider_id not in listed
        and (complete or (oldest is not None and r.received_at and r.received_at >= oldest))
    ]
    results: list[tuple[int, str, GmailMessage | None]] = []
    for pk, pid in candidates:
        results.append((pk, pid, None if complete else client.get(pid, raw=False)))
    if not results:
        return
    with session_scope(factory) as s:
        for pk, pid, gm in results:
            if gm is None:
                if drop_locations(ctx, s, pid, GMAIL_FOLDERS):
                    ctx.stats.removed += 1
            else:
                set_locations(ctx, s, pk, pid, gmail_wanted(gm.label_ids), GMAIL_FOLDERS)
