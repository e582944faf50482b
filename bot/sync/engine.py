"""Sync one account: connect, pick folders, sync each, record the run and the account's health.

``sync_account`` is what the scheduler, the IDLE trigger and ``mailroom sync --once`` call.
Every run writes a SyncRun row (the sync log). Provider errors end the run and drive the
account's status and backoff (bot/sync/status.py); per-message problems never end it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.accounts import imap_settings, passwords
from bot.admin_notify import alert_recipients
from bot.providers.errors import ConfigError, FolderNotFound, ProtocolError, ProviderError
from bot.providers.imap import ImapProvider
from bot.providers.types import FolderInfo
from bot.services import Services
from bot.store.db import session_scope
from bot.store.models import Account, Provider, RunStatus, SyncRun, utcnow
from bot.sync import leases, status
from bot.sync.imap_sync import (
    STALL_RUNS,
    AnnounceFn,
    BatchIngestFn,
    FolderJob,
    IngestFn,
    RunStats,
    sync_folder,
)
from bot.sync.parse_pool import MIN_BATCH, ParsePool, min_backlog
from bot.sync.state import mark_deleted_if_gone, recompute_conversations, refresh_parents

log = logging.getLogger(__name__)

DEFAULT_ROLES = ("inbox", "sent", "archive")
DEFAULT_MAX_SIZE = 25 * 1024 * 1024


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class SyncOptions:
    batch_size: int = 500
    max_size: int = DEFAULT_MAX_SIZE
    flag_window: int = 500
    # Test and CLI hooks: after each committed batch, and progress lines.
    after_batch: Callable[[str, int], None] | None = None
    progress: Callable[[str], None] | None = None
    # Ingest replacement for fault-injection tests; default bot.store.ingest.ingest_message.
    ingest: IngestFn | None = None
    # Parse big fetches in a second process (bot/sync/parse_pool.py); off = always inline.
    parse_in_worker: bool = True
    parse_min_batch: int = MIN_BATCH  # smallest batch worth sending to that process
    # The smallest folder backlog worth starting it for; None: parse_pool.min_backlog(),
    # lower once `mailroom worker` has its fork server running.
    parse_min_backlog: int | None = None


@dataclass
class RunSummary:
    run_id: int
    account_id: int
    email: str
    status: RunStatus
    folders: list[str]
    new: int
    changed: int
    removed: int
    problems: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def line(self) -> str:
        text = (
            f"{self.email}: {self.status.value}, {len(self.folders)} folder(s), "
            f"{self.new} new, {self.changed} changed, {self.removed} removed"
        )
        if self.problems:
            text += f", {len(self.problems)} problem(s)"
        if self.error:
            text += f" — {self.error}"
        return text


class AccountBusy(Exception):
    """Another worker is syncing this account right now."""


def _load_ingest() -> IngestFn:
    try:
        from bot.store.ingest import ingest_message
    except ImportError as exc:
        raise NotImplementedError(
            "bot.store.ingest.ingest_message is not installed yet: the sync engine cannot "
            "store mail without it"
        ) from exc
    return ingest_message  # type: ignore[return-value,unused-ignore]


def _load_ingest_batch() -> BatchIngestFn:
    from bot.store.ingest import ingest_batch

    return ingest_batch


_announce_warned = False


def _load_announce() -> AnnounceFn | None:
    global _announce_warned
    try:
        from bot.inbox.announce import announce_ingested
    except ImportError:
        if not _announce_warned:
            log.warning(
                "bot.inbox.announce is not installed: new mail is stored but not posted to Slack"
            )
            _announce_warned = True
        return None
    return announce_ingested  # type: ignore[no-any-return,unused-ignore]


def folders_to_sync(account: Account, infos: Sequence[FolderInfo]) -> list[FolderInfo]:
    """The account's chosen folders, else Inbox, Sent and Archive (when they exist)."""
    by_name = {i.name: i for i in infos}
    if account.folders:
        missing = [f for f in account.folders if f not in by_name]
        if missing:
            raise FolderNotFound(missing[0])
        return [by_name[f] for f in account.folders]
    return [i for role in DEFAULT_ROLES for i in infos if i.role == role][: len(DEFAULT_ROLES)]


def sync_account(
    services: Services,
    account_id: int,
    *,
    owner: str | None = None,
    trigger: str = "manual",
    claimed: bool = False,
    options: SyncOptions | None = None,
) -> RunSummary:
    """Sync one account now. Takes (and releases) the account's lease unless ``claimed``;
    raises AccountBusy when another worker holds it. The lease is renewed on a timer while
    the run lasts; without ``owner`` the run gets its own owner token."""
    owner = owner or leases.run_owner(worker_id())
    factory = services.session_factory
    if not claimed and not leases.claim(factory, account_id, owner):
        raise AccountBusy(f"account {account_id} is being synced by another worker")
    try:
        with leases.keep_renewed(factory, account_id, owner):
            return _run(services, account_id, owner, trigger, options or SyncOptions())
    finally:
        leases.release(factory, account_id, owner)


def _run(
    services: Services, account_id: int, owner: str, trigger: str, opts: SyncOptions
) -> RunSummary:
    factory = services.session_factory
    with session_scope(factory) as s:
        account = s.get_one(Account, account_id)
        email = account.email
        run = SyncRun(account_id=account_id, worker=owner, trigger=trigger, started_at=utcnow())
        s.add(run)
        s.flush()
        run_id = run.id
        provider_kind = account.provider
    stats = RunStats()
    error: BaseException | None = None
    unfinished: set[int] = set()  # removed in a folder whose sync did not finish
    try:
        if provider_kind in (Provider.GMAIL, Provider.GRAPH):
            from bot.sync.api_sync import sync_api_account

            sync_api_account(
                services,
                factory,
                account_id,
                run_id,
                stats=stats,
                after_batch=_heartbeat(services, account_id, owner, opts.after_batch),
            )
            return _summary(run_id, account_id, email, stats, None)
        with session_scope(factory) as s:
            account = s.get_one(Account, account_id)
            settings = imap_settings(account)
            secret = passwords(services, account)["imap_password"]
        ingest = opts.ingest or _load_ingest()
        with (
            ImapProvider(settings, secret) as provider,
            ParsePool(
                enabled=opts.parse_in_worker,
                min_batch=opts.parse_min_batch,
                min_backlog=(
                    opts.parse_min_backlog if opts.parse_min_backlog is not None else min_backlog()
                ),
            ) as pool,
        ):
            infos = provider.list_folders()
            with session_scope(factory) as s:
                account = s.get_one(Account, account_id)
                account.capabilities = sorted(provider.capabilities)
                chosen = folders_to_sync(account, infos)
            job = FolderJob(
                factory=factory,
                account_id=account_id,
                provider=provider,
                stats=stats,
                ingest=ingest,
                ingest_batch=None if opts.ingest else _load_ingest_batch(),
                announce=_load_announce(),
                batch_size=opts.batch_size,
                max_size=opts.max_size,
                flag_window=opts.flag_window,
                after_batch=_heartbeat(services, account_id, owner, opts.after_batch),
                progress=opts.progress,
                parse_pool=pool,
            )
            for info in chosen:
                stats.folders.append(info.name)
                before = set(stats.removed_messages)
                try:
                    sync_folder(job, info.name, info.role)
                except FolderNotFound as exc:
                    unfinished |= stats.removed_messages - before
                    stats.problem(info.name, None, str(exc))
                except BaseException:
                    unfinished |= stats.removed_messages - before
                    raise
            stuck = sorted(n for n, runs in stats.stalled.items() if runs >= STALL_RUNS)
            if stuck:
                raise ProtocolError(
                    f"new mail in {', '.join(stuck)} has not been fetched for {STALL_RUNS} runs "
                    "in a row although the server has it; see the sync log"
                )
    except (ProviderError, leases.LeaseLost) as exc:
        error = exc
    except Exception as exc:  # a bug: record it on the run, back off, keep the worker alive
        log.exception("sync of account %s failed", account_id)
        error = exc
    finally:
        _finish(services, account_id, run_id, stats, error, unfinished=unfinished)
    return _summary(run_id, account_id, email, stats, error)


def _summary(
    run_id: int, account_id: int, email: str, stats: RunStats, error: BaseException | None
) -> RunSummary:
    run_status = RunStatus.ERROR if error else RunStatus.PARTIAL if stats.problems else RunStatus.OK
    return RunSummary(
        run_id=run_id,
        account_id=account_id,
        email=email,
        status=run_status,
        folders=stats.folders,
        new=stats.new,
        changed=stats.changed,
        removed=stats.removed,
        problems=stats.problems,
        error=status.error_text(error) if error else None,
    )


def _heartbeat(
    services: Services, account_id: int, owner: str, hook: Callable[[str, int], None] | None
) -> Callable[[str, int], None]:
    def after_batch(folder: str, last_uid: int) -> None:
        leases.renew(services.session_factory, account_id, owner)
        if hook is not None:
            hook(folder, last_uid)

    return after_batch


def _finish(
    services: Services,
    account_id: int,
    run_id: int,
    stats: RunStats,
    error: BaseException | None,
    *,
    unfinished: set[int] | frozenset[int] = frozenset(),
) -> None:
    with session_scope(services.session_factory) as s:
        # A folder that failed part-way lost locations it had not found again yet: after a
        # UIDVALIDITY reset, all of them. Those are not "gone" (security review #18); the next
        # run re-reads the folder and finds them by Message-ID.
        convs = mark_deleted_if_gone(s, stats.removed_messages - unfinished)
        changed = recompute_conversations(s, convs) | stats.changed_conversations
        refresh_parents(s, changed)
        account = s.get_one(Account, account_id)
        run = s.get_one(SyncRun, run_id)
        now = utcnow()
        run.finished_at = now
        run.folders = list(stats.folders)
        run.new_count, run.changed_count, run.removed_count = (
            stats.new,
            stats.changed,
            stats.removed,
        )
        run.problems = list(stats.problems)
        admins = alert_recipients(services.settings.admins, account)
        if error is None:
            run.status = RunStatus.PARTIAL if stats.problems else RunStatus.OK
            status.record_success(s, account, admins=admins, now=now)
        else:
            run.status = RunStatus.ERROR
            run.error = status.error_text(error)
            if not isinstance(error, ProviderError | leases.LeaseLost):
                run.error = f"internal error: {type(error).__name__}: {error}"
            if isinstance(error, leases.LeaseLost):
                return  # the other worker owns the account's health now
            if isinstance(error, ConfigError):
                log.warning("account %s settings problem: %s", account.email, run.error)
            status.record_failure(s, account, error, admins=admins, now=now)
