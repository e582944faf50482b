"""Sync one IMAP folder into the store.

Order inside a folder (sync.md §1.4): new messages in batches, each batch one transaction
(ingest every message in its own SAVEPOINT, add locations, advance ``last_uid`` to the
batch's highest UID, commit); then flag changes; then expunges; then the folder's
UIDNEXT/HIGHESTMODSEQ as seen at SELECT time. A crash between batches repeats at most one
batch and never skips one, because the cursor moves in the same commit as its messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from bot.mail.parse import is_header_only
from bot.providers.imap import ImapProvider
from bot.providers.types import FetchedMessage, FlagChange, FolderStatus
from bot.store.db import SessionFactory, session_scope
from bot.store.ingest import IngestItem, IngestResult
from bot.store.models import Account, FolderState, Message, MessageLocation
from bot.store.rows import dialect_key
from bot.sync.parse_pool import BatchParse, ParsedBatch, ParsePool
from bot.sync.prefetch import prefetch
from bot.sync.state import (
    chunks,
    folder_state,
    json_cursor,
    recompute_conversations,
    set_json_cursor,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # ingest failures of one message before it is quarantined
STALL_RUNS = 3  # runs in a row with mail above the cursor that fetching did not return
FLAG_WINDOW = 500  # without CONDSTORE: newest messages whose flags are re-read each run
SEEN = "\\Seen"


class IngestFn(Protocol):
    def __call__(self, session: Session, account: Account, raw: bytes, **kwargs: Any) -> Any: ...


AnnounceFn = Callable[[Session, Account, Any], None]
BatchIngestFn = Callable[[Session, Account, list[IngestItem]], list[Any]]


@dataclass
class RunStats:
    """What one run did, for the SyncRun row and the CLI."""

    new: int = 0
    changed: int = 0
    removed: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    removed_messages: set[int] = field(default_factory=set)  # lost a location this run
    stalled: dict[str, int] = field(default_factory=dict)  # folder -> stuck runs in a row
    touched_conversations: set[int] = field(default_factory=set)
    changed_conversations: set[int] = field(default_factory=set)

    def problem(self, folder: str, uid: int | None, problem: str, message_id: str = "") -> None:
        self.problems.append(
            {"folder": folder, "uid": uid, "message_id": message_id, "problem": problem}
        )


@dataclass
class FolderJob:
    factory: SessionFactory
    account_id: int
    provider: ImapProvider
    stats: RunStats
    ingest: IngestFn
    announce: AnnounceFn | None
    # The fast path: a whole fetch batch in a few statements. None (fault-injection tests
    # replace `ingest`) means one message at a time.
    ingest_batch: BatchIngestFn | None = None
    batch_size: int = 500
    max_size: int = 25 * 1024 * 1024
    # A fetch batch holds at most this many bytes of mail as well (up to ~4 batches are alive:
    # two waiting, one being stored, one being fetched).
    max_batch_bytes: int = 64 * 1024 * 1024
    flag_window: int = FLAG_WINDOW
    after_batch: Callable[[str, int], None] | None = None  # (folder, last_uid) after commit
    progress: Callable[[str], None] | None = None
    parse_pool: ParsePool | None = None  # parse big batches in a second process
    prefetch: bool = True  # fetch the next batch in a thread while this one is stored


def _say(job: FolderJob, text: str) -> None:
    log.info(text)
    if job.progress is not None:
        job.progress(text)


def sync_folder(job: FolderJob, name: str, role: str | None) -> None:
    status = job.provider.select(name)
    with session_scope(job.factory) as s:
        fs = folder_state(s, job.account_id, name, role)
        if fs.uidvalidity is not None and fs.uidvalidity != status.uidvalidity:
            _reset_folder(s, fs, job.stats, status)
        fs.uidvalidity = status.uidvalidity
        fs_id, last_uid = fs.id, fs.last_uid
        prev = (fs.uidnext, fs.highestmodseq, fs.exists_count)
        extra = json_cursor(fs)
    condstore = status.highestmodseq is not None
    unchanged = prev == (status.uidnext, status.highestmodseq, status.exists)
    if condstore and unchanged and not extra.get("retry") and not extra.get("stalled_runs"):
        with session_scope(job.factory) as s:
            s.execute(
                update(FolderState)
                .where(FolderState.id == fs_id)
                .values(synced_at=datetime.now(UTC))
            )
        return  # nothing new, nothing changed, nothing expunged
    if job.parse_pool is not None and job.ingest_batch is not None and status.uidnext:
        job.parse_pool.warm(status.uidnext - 1 - last_uid, dialect=_dialect(job))
    if extra.get("retry"):
        _retry(job, name, fs_id, status.uidvalidity)
    # A pipeline: a thread fetches batch N+1 and hands it to the parse worker while this
    # thread stores batch N. Batches are still stored in order, each with its cursor.
    fetched = (
        (batch, _start_parse(job, batch))
        for batch in job.provider.fetch_new(
            name,
            last_uid,
            batch_size=job.batch_size,
            max_size=job.max_size,
            max_batch_bytes=job.max_batch_bytes,
        )
    )
    # Two batches may wait: the store's time per batch varies (new conversations, merges)
    # and the fetch keeps going meanwhile; still bounded, so memory stays flat.
    batches = prefetch(fetched, ahead=2, name=f"fetch {name}") if job.prefetch else fetched
    try:
        for batch, parsing in batches:
            last_uid = _store_and_report(job, name, fs_id, status.uidvalidity, batch, parsing)
    finally:
        # Now, not when the traceback lets go of this frame: closing joins the fetch thread,
        # so it is off the IMAP connection before anyone (the logout, a retry) uses it again.
        batches.close()
    _check_cursor(job, name, fs_id, status, last_uid)
    if condstore and prev[1] is not None:
        _apply_flags(job, fs_id, status.uidvalidity, job.provider.changed_flags(name, prev[1]))
    elif not condstore:
        newest = _newest_uids(job, fs_id, status.uidvalidity)
        if newest:
            _apply_flags(job, fs_id, status.uidvalidity, job.provider.all_flags(name, newest))
    _check_expunges(job, name, fs_id, status)
    with session_scope(job.factory) as s:
        fs = s.get_one(FolderState, fs_id)
        fs.uidnext = status.uidnext
        fs.highestmodseq = status.highestmodseq
        fs.exists_count = status.exists
        fs.synced_at = datetime.now(UTC)


def _start_parse(job: FolderJob, batch: list[FetchedMessage]) -> ParsedBatch | None:
    if job.ingest_batch is None:
        return None  # the one-by-one path parses for itself
    raws = [m.raw for m in batch]
    if job.parse_pool is None:
        # Parsed and encoded before the store's transaction opens, never inside it: on SQLite
        # that transaction holds the one write lock (security-review #1).
        return ParsedBatch(raws, None, dialect=_dialect(job))
    return job.parse_pool.submit(raws, dialect=_dialect(job))


def _dialect(job: FolderJob) -> str | None:
    """The store's dialect, for the parse worker to encode rows for (bot/store/rows.py)."""
    bind = job.factory.kw.get("bind")
    return dialect_key(bind.dialect) if bind is not None else None


def _store_and_report(
    job: FolderJob,
    name: str,
    fs_id: int,
    uv: int,
    batch: list[FetchedMessage],
    parsing: ParsedBatch | None,
) -> int:
    parsed = parsing.result() if parsing is not None else None
    last_uid = _store_batch(job, name, fs_id, uv, batch, parsed)
    _say(job, f"{name}: stored up to UID {last_uid}")
    if job.after_batch is not None:
        job.after_batch(name, last_uid)
    return last_uid


def _check_cursor(
    job: FolderJob, name: str, fs_id: int, status: FolderStatus, last_uid: int
) -> None:
    """peers.md §3 row 8: a fetch that keeps returning nothing while the server holds newer
    mail must not go unnoticed. After the fetch, any UID above the cursor is mail we missed;
    each such run is a problem in the sync log, and from the STALL_RUNS-th in a row on the run
    fails, so the usual health rules apply: backoff, then Error and one alert to the admins."""
    missed: list[int] = []
    if status.uidnext is not None and status.uidnext - 1 > last_uid:
        # UIDNEXT runs ahead after expunges of the newest mail too: only real UIDs count.
        missed = sorted(u for u in job.provider.list_uids(name) if u > last_uid)
    with session_scope(job.factory) as s:
        fs = s.get_one(FolderState, fs_id)
        extra = json_cursor(fs)
        runs = int(extra.get("stalled_runs") or 0) + 1 if missed else 0
        extra["stalled_runs"] = runs
        set_json_cursor(fs, {k: v for k, v in extra.items() if v})
    if missed:
        job.stats.stalled[name] = runs
        job.stats.problem(
            name,
            missed[0],
            f"{len(missed)} message(s) above UID {last_uid} were not fetched "
            f"(run {runs} in a row): the sync cursor is not moving",
        )


def _reset_folder(s: Session, fs: FolderState, stats: RunStats, status: FolderStatus) -> None:
    """UIDVALIDITY changed: every cached UID is void. Drop this folder's locations and
    fetch it again; ingest finds the messages by Message-ID, so nothing doubles and
    conversations, links and Slack threads survive."""
    log.warning(
        "folder %s: UIDVALIDITY %s -> %s, resyncing", fs.name, fs.uidvalidity, status.uidvalidity
    )
    stats.removed_messages.update(
        s.scalars(select(MessageLocation.message_id).where(MessageLocation.folder_id == fs.id))
    )
    s.execute(delete(MessageLocation).where(MessageLocation.folder_id == fs.id))
    fs.last_uid = 0
    fs.uidnext = None
    fs.highestmodseq = None
    fs.exists_count = None
    set_json_cursor(fs, {})
    stats.problem(fs.name, None, "UIDVALIDITY changed on the server: folder re-read, no duplicates")


def _ingest_one(
    job: FolderJob, s: Session, account: Account, fs: FolderState, uv: int, m: FetchedMessage
) -> Any:
    with s.begin_nested():
        result = job.ingest(
            s,
            account,
            m.raw,
            is_read=SEEN in m.flags,
            location=(fs, uv, m.uid),
            flags=sorted(m.flags),
            truncated=m.truncated,
            received_at=m.internaldate,
        )
    _announce(job, s, account, fs, m, result)
    return result


def _announce(
    job: FolderJob, s: Session, account: Account, fs: FolderState, m: FetchedMessage, result: Any
) -> None:
    if job.announce is None:
        return
    try:
        with s.begin_nested():
            job.announce(s, account, result)
    except Exception as exc:  # the mail is stored; a Slack post problem must not undo it
        log.exception("announce failed for %s uid %s", fs.name, m.uid)
        job.stats.problem(fs.name, m.uid, f"not announced in Slack: {type(exc).__name__}")


def _announce_all(
    job: FolderJob,
    s: Session,
    account: Account,
    fs: FolderState,
    batch: list[FetchedMessage],
    results: list[Any],
) -> None:
    """Announce a stored batch under one SAVEPOINT (3,000 of them cost a history sync a sixth
    of its time); if any announce fails, roll that back and go one by one, so only the
    failing message misses its Slack post."""
    if job.announce is None:
        return
    try:
        with s.begin_nested():
            for result in results:
                job.announce(s, account, result)
        return
    except Exception:
        log.warning("announcing a batch failed in %s; one by one", fs.name, exc_info=True)
    for m, result in zip(batch, results, strict=True):
        _announce(job, s, account, fs, m, result)


def _ingest_whole_batch(
    job: FolderJob,
    s: Session,
    account: Account,
    fs: FolderState,
    uv: int,
    batch: list[FetchedMessage],
    parsed: BatchParse | None,
) -> list[Any] | None:
    """Store the batch in one go; None if that failed (the caller then goes one by one, so a
    single bad message is isolated and retried instead of blocking the rest)."""
    if job.ingest_batch is None:
        return None
    items = [
        IngestItem(
            m.raw,
            parsed=parsed.parsed[i] if parsed is not None and parsed.parsed else None,
            encoded=parsed.encoded[i] if parsed is not None and parsed.encoded else None,
            is_read=SEEN in m.flags,
            location=(fs, uv, m.uid),
            flags=sorted(m.flags),
            truncated=m.truncated,
            received_at=m.internaldate,
        )
        for i, m in enumerate(batch)
    ]
    try:
        with s.begin_nested():
            return job.ingest_batch(s, account, items)
    except Exception:
        log.warning("batch ingest failed in %s; storing one by one", fs.name, exc_info=True)
        return None


def _after_ingest(job: FolderJob, name: str, m: FetchedMessage, result: IngestResult) -> None:
    facts = result.facts  # plain values: new mail needs no ORM load here
    if result.created:
        job.stats.new += 1
    elif result.message.deleted:
        result.message.deleted = False  # seen again in a folder: it is back
    job.stats.touched_conversations.add(result.conversation.id)
    if m.truncated:
        job.stats.problem(
            name,
            m.uid,
            f"larger than {job.max_size // (1024 * 1024)} MB ({m.size} bytes): stored headers only",
            facts.message_id,
        )
        message: Message = result.message
        defects = list(message.parse_defects or [])
        if not any(d.startswith("truncated") for d in defects):
            message.parse_defects = [*defects, f"truncated: over the size limit ({m.size} bytes)"]
        message.truncated = True
    elif result.created and is_header_only(facts.parse_defects):
        # Over the parse budget or past a structural cap: the sync goes on; the log says so.
        reason = next((d for d in facts.parse_defects[1:2]), "")
        job.stats.problem(
            name,
            m.uid,
            f"too large or complex to show: stored with headers only ({reason})",
            facts.message_id,
        )
    elif facts.parse_defects and result.created:
        job.stats.problem(
            name,
            m.uid,
            "kept with defects: " + "; ".join(facts.parse_defects[:3]),
            facts.message_id,
        )


def _relaxed_commit(s: Session) -> None:
    """PostgreSQL: this batch's COMMIT returns without waiting for its WAL to reach the disk
    (`SET LOCAL`: this transaction only; the session's other transactions, the outbox's
    included, stay synchronous). A server crash can lose the last batches committed this way,
    never part of one: each is one transaction that moves the folder cursor with its
    messages, so the next run fetches them again (docs/sync.md). SQLite in WAL mode with
    synchronous=NORMAL already commits without a sync."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SET LOCAL synchronous_commit = off"))


def _store_batch(
    job: FolderJob,
    name: str,
    fs_id: int,
    uv: int,
    batch: list[FetchedMessage],
    parsed: BatchParse | None = None,
) -> int:
    with session_scope(job.factory) as s:
        # A write first: it opens the transaction (pysqlite would otherwise let the first
        # SAVEPOINT start, and its RELEASE commit, a transaction of its own) and locks
        # the folder row against a second writer.
        s.execute(
            update(FolderState).where(FolderState.id == fs_id).values(synced_at=datetime.now(UTC))
        )
        _relaxed_commit(s)
        fs = s.get_one(FolderState, fs_id)
        account = s.get_one(Account, job.account_id)
        extra = json_cursor(fs)
        retry: dict[str, int] = dict(extra.get("retry") or {})
        touched: set[int] = set()
        fresh: set[int] = set()
        results = _ingest_whole_batch(job, s, account, fs, uv, batch, parsed)
        if results is not None and fs.role == "inbox":
            # Made by this batch from Inbox mail alone: deriving their state again gives what
            # they were made with (in the Inbox, neither archived nor deleted, unread as
            # counted), so they are left out of the recompute below.
            fresh = {r.conversation.id for r in results if r.new_conversation}
        if results is not None:
            _announce_all(job, s, account, fs, batch, results)
            for m, result in zip(batch, results, strict=True):
                _after_ingest(job, name, m, result)
                touched.add(result.conversation.id)
        for m in batch if results is None else ():
            try:
                result = _ingest_one(job, s, account, fs, uv, m)
            except Exception as exc:
                log.exception("ingest failed for %s uid %s", name, m.uid)
                retry[str(m.uid)] = 1
                job.stats.problem(
                    name,
                    m.uid,
                    f"could not be stored ({type(exc).__name__}: {exc}); "
                    f"will retry {MAX_ATTEMPTS - 1} more time(s)",
                )
                continue
            _after_ingest(job, name, m, result)
            touched.add(result.conversation.id)
        fs.last_uid = max(fs.last_uid, max(m.uid for m in batch))
        extra["retry"] = retry
        set_json_cursor(fs, {k: v for k, v in extra.items() if v})
        job.stats.changed_conversations |= recompute_conversations(s, touched - fresh)
        return fs.last_uid


def _retry(job: FolderJob, name: str, fs_id: int, uv: int) -> None:
    """Messages whose ingest failed before get another try; after MAX_ATTEMPTS they are
    quarantined (listed in the folder state and the run's problems, never re-fetched)."""
    with session_scope(job.factory) as s:
        s.execute(
            update(FolderState).where(FolderState.id == fs_id).values(synced_at=datetime.now(UTC))
        )
        fs = s.get_one(FolderState, fs_id)
        account = s.get_one(Account, job.account_id)
        extra = json_cursor(fs)
        retry: dict[str, int] = dict(extra.get("retry") or {})
        quarantined: list[int] = list(extra.get("quarantined") or [])
        for key, attempts in sorted(retry.items()):
            uid = int(key)
            m = job.provider.fetch_raw(name, uid)
            if m is None:
                del retry[key]  # gone from the server meanwhile
                continue
            if m.size > job.max_size:
                m = FetchedMessage(m.uid, m.flags, m.internaldate, m.size, m.raw, True)
            try:
                result = _ingest_one(job, s, account, fs, uv, m)
            except Exception as exc:
                attempts += 1
                if attempts >= MAX_ATTEMPTS:
                    del retry[key]
                    quarantined.append(uid)
                    job.stats.problem(
                        name,
                        uid,
                        f"quarantined after {attempts} failed attempts "
                        f"({type(exc).__name__}: {exc})",
                    )
                else:
                    retry[key] = attempts
                    job.stats.problem(
                        name, uid, f"could not be stored (attempt {attempts}): {type(exc).__name__}"
                    )
                continue
            del retry[key]
            _after_ingest(job, name, m, result)
            job.stats.changed_conversations |= recompute_conversations(s, {result.conversation.id})
        extra["retry"], extra["quarantined"] = retry, sorted(set(quarantined))
        set_json_cursor(fs, {k: v for k, v in extra.items() if v})


def _newest_uids(job: FolderJob, fs_id: int, uv: int) -> list[int]:
    with session_scope(job.factory) as s:
        return list(
            s.scalars(
                select(MessageLocation.uid)
                .where(MessageLocation.folder_id == fs_id, MessageLocation.uidvalidity == uv)
                .order_by(MessageLocation.uid.desc())
                .limit(job.flag_window)
            )
        )


def _apply_flags(job: FolderJob, fs_id: int, uv: int, changes: list[FlagChange]) -> None:
    """Remote wins: the mailbox's \\Seen becomes the message's read state."""
    if not changes:
        return
    by_uid = {c.uid: c for c in changes}
    with session_scope(job.factory) as s:
        touched: set[int] = set()
        for uids in chunks(sorted(by_uid)):
            rows = s.execute(
                select(MessageLocation, Message)
                .join(Message, Message.id == MessageLocation.message_id)
                .where(
                    MessageLocation.folder_id == fs_id,
                    MessageLocation.uidvalidity == uv,
                    MessageLocation.uid.in_(uids),
                )
            )
            for loc, msg in rows:
                flags = sorted(by_uid[loc.uid].flags)
                if list(loc.flags or []) != flags:
                    loc.flags = flags
                seen = SEEN in flags
                flagged = "\\Flagged" in flags
                if msg.is_read != seen or msg.is_flagged != flagged:
                    msg.is_read, msg.is_flagged = seen, flagged
                    job.stats.changed += 1
                    touched.add(msg.conversation_id)
        job.stats.changed_conversations |= recompute_conversations(s, touched)


def _check_expunges(job: FolderJob, name: str, fs_id: int, status: FolderStatus) -> None:
    """EXISTS differs from what we hold ⇒ diff the UID lists and drop what is gone."""
    with session_scope(job.factory) as s:
        fs = s.get_one(FolderState, fs_id)
        extra = json_cursor(fs)
        held = int(
            s.scalar(
                select(func.count(MessageLocation.id)).where(
                    MessageLocation.folder_id == fs_id,
                    MessageLocation.uidvalidity == status.uidvalidity,
                )
            )
            or 0
        )
    skipped = set(map(int, extra.get("retry") or {})) | set(extra.get("quarantined") or [])
    if held + len(skipped) == status.exists:
        return
    server = job.provider.list_uids(name)
    with session_scope(job.factory) as s:
        gone = [
            (loc_id, mid)
            for loc_id, uid, mid in s.execute(
                select(MessageLocation.id, MessageLocation.uid, MessageLocation.message_id).where(
                    MessageLocation.folder_id == fs_id,
                    MessageLocation.uidvalidity == status.uidvalidity,
                )
            )
            if uid not in server
        ]
        for ids in chunks([g[0] for g in gone]):
            s.execute(delete(MessageLocation).where(MessageLocation.id.in_(ids)))
        job.stats.removed += len(gone)
        job.stats.removed_messages.update(g[1] for g in gone)
        if skipped - server:
            fs = s.get_one(FolderState, fs_id)
            extra = json_cursor(fs)
            extra["retry"] = {
                k: v for k, v in (extra.get("retry") or {}).items() if int(k) in server
            }
            extra["quarantined"] = [u for u in extra.get("quarantined") or [] if u in server]
            set_json_cursor(fs, {k: v for k, v in extra.items() if v})
    if gone:
        _say(job, f"{name}: {len(gone)} message(s) removed on the server")
