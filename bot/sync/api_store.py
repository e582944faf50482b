"""Store steps shared by the Gmail and Microsoft 365 syncs, write-back and sends.

Where a message is: ``MessageLocation`` rows in per-label (Gmail: ``INBOX``, ``SENT``,
``ARCHIVE`` = in neither, not trashed) or per-folder (Graph) FolderStates, with
``uidvalidity = 1`` and ``uid`` a 63-bit hash of the provider id. So conversation state
(archived / deleted / unread) is derived exactly as for IMAP (bot/sync/state.py).
A cursor moves in the same transaction as the messages it covers (sync.md §1.4): a crash
repeats work, never skips it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.services import Services
from bot.store.db import SessionFactory, session_scope
from bot.store.models import (
    Account,
    FolderState,
    Message,
    MessageLocation,
    SyncRun,
)
from bot.sync.imap_sync import RunStats
from bot.sync.state import (
    mark_deleted_if_gone,
    recompute_conversations,
    refresh_parents,
)

log = logging.getLogger(__name__)

UIDVALIDITY = 1  # API locations have no UIDVALIDITY; a constant keeps the IMAP shape
FETCH_BATCH = 100  # messages per transaction
MAX_ATTEMPTS = 3  # failed ingests of one message before it is quarantined


def location_uid(provider_id: str) -> int:
    """A stable 63-bit key for a provider id (fits BIGINT; collisions ~never)."""
    return int.from_bytes(hashlib.sha256(provider_id.encode()).digest()[:8], "big") >> 1


@dataclass
class SyncCtx:
    services: Services
    account_id: int
    stats: RunStats
    folders: dict[str, int]  # FolderState name → id
    # Called after each committed batch / page: renews the account's lease (LeaseLost ends
    # the run), as the IMAP sync does.
    after_batch: Callable[[str, int], None] | None = None


def _announce(s: Session, account: Account, result: Any, stats: RunStats, where: str) -> None:
    try:
        from bot.inbox.announce import announce_ingested
    except ImportError:
        return
    try:
        with s.begin_nested():
            announce_ingested(s, account, result)
    except Exception as exc:  # stored anyway; a Slack post problem must not undo the mail
        log.exception("announce failed for %s", where)
        stats.problem(where, None, f"not announced in Slack: {type(exc).__name__}")


def ingest(
    ctx: SyncCtx,
    s: Session,
    account: Account,
    raw: bytes,
    *,
    provider_id: str,
    thread_id: str | None,
    is_read: bool,
    received_at: datetime | None,
    where: str,
) -> Message:
    from bot.store.ingest import ingest_message

    with s.begin_nested():
        result = ingest_message(
            s,
            account,
            raw,
            provider_id=provider_id,
            provider_thread_id=thread_id or None,
            is_read=is_read,
            received_at=received_at,
        )
    message: Message = result.message
    if result.created:
        ctx.stats.new += 1
        if message.parse_defects:
            ctx.stats.problem(
                where,
                None,
                "kept with defects: " + "; ".join(message.parse_defects[:3]),
                message.message_id,
            )
        _announce(s, account, result, ctx.stats, where)
    else:
        if message.deleted:
            message.deleted = False  # seen again: it is back
        if message.provider_id is None:
            message.provider_id = provider_id  # our own send, stored before its id was known
        if message.is_read != is_read:
            message.is_read = is_read
            ctx.stats.changed += 1
    ctx.stats.touched_conversations.add(message.conversation_id)
    return message


def set_locations(
    ctx: SyncCtx,
    s: Session,
    message_pk: int,
    provider_id: str,
    wanted: Iterable[str],
    managed: Iterable[str],
) -> None:
    """Make the message's locations among the ``managed`` folders equal ``wanted``."""
    uid = location_uid(provider_id)
    managed_ids = {ctx.folders[n] for n in managed}
    wanted_ids = {ctx.folders[n] for n in wanted}
    have = {
        loc.folder_id: loc
        for loc in s.scalars(
            select(MessageLocation).where(
                MessageLocation.uid == uid,
                MessageLocation.folder_id.in_(managed_ids),
            )
        )
    }
    for folder_id, loc in have.items():
        if folder_id not in wanted_ids:
            s.delete(loc)
            ctx.stats.removed_messages.add(loc.message_id)
    for folder_id in wanted_ids - set(have):
        s.add(
            MessageLocation(
                message_id=message_pk,
                folder_id=folder_id,
                uidvalidity=UIDVALIDITY,
                uid=uid,
                flags=[],
            )
        )
    s.flush()


def drop_locations(ctx: SyncCtx, s: Session, provider_id: str, folders: Iterable[str]) -> int:
    uid = location_uid(provider_id)
    ids = [ctx.folders[n] for n in folders]
    gone = list(
        s.scalars(
            select(MessageLocation).where(
                MessageLocation.uid == uid, MessageLocation.folder_id.in_(ids)
            )
        )
    )
    for loc in gone:
        ctx.stats.removed_messages.add(loc.message_id)
        s.delete(loc)
    s.flush()
    return len(gone)


def begin_batch(s: Session, fs_id: int) -> None:
    # A write first: opens the transaction (pysqlite) and locks the cursor row.
    s.execute(
        update(FolderState).where(FolderState.id == fs_id).values(synced_at=datetime.now(UTC))
    )


def finish_run(ctx: SyncCtx, run_id: int | None) -> None:
    with session_scope(ctx.services.session_factory) as s:
        convs = mark_deleted_if_gone(s, ctx.stats.removed_messages)
        changed = recompute_conversations(s, convs | ctx.stats.touched_conversations)
        refresh_parents(s, changed | ctx.stats.changed_conversations)
        if run_id is not None:
            run = s.get(SyncRun, run_id)
            if run is not None:
                run.problems = [*(run.problems or []), *ctx.stats.problems]
                run.folders = sorted(set(run.folders or []) | set(ctx.stats.folders))


def known_provider_ids(factory: SessionFactory, account_id: int, ids: Sequence[str]) -> set[str]:
    known: set[str] = set()
    with session_scope(factory) as s:
        for i in range(0, len(ids), 500):
            known.update(
                x
                for x in s.scalars(
                    select(Message.provider_id).where(
                        Message.account_id == account_id,
                        Message.provider_id.in_(list(ids[i : i + 500])),
                    )
                )
                if x
            )
    return known
