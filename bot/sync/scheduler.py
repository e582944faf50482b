"""Keeps every account current: a ticking claimer, a small thread pool, IDLE watchers.

* Every ``tick_seconds`` the scheduler leases due accounts (``next_sync_at`` reached,
  which already includes each account's interval and backoff) up to the free pool slots,
  and runs them. Leases make several workers (replicas) safe: none syncs an account
  another is syncing.
* Each syncable IMAP account gets an IDLE watcher on its Inbox; a change triggers a sync
  at once (or right after the run in progress, never two at a time).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from bot.accounts import imap_settings, passwords
from bot.providers.types import ImapSettings
from bot.services import Services
from bot.store.db import session_scope
from bot.store.models import Account, Provider, utcnow
from bot.sync import leases
from bot.sync.engine import SyncOptions, sync_account, worker_id

log = logging.getLogger(__name__)


@dataclass
class _Watch:
    signature: str
    watcher: object  # bot.providers.idle.IdleWatcher


class SyncScheduler:
    def __init__(
        self,
        services: Services,
        *,
        tick_seconds: float = 5.0,
        max_workers: int = 3,
        idle: bool = True,
        owner: str | None = None,
        options: SyncOptions | None = None,
    ) -> None:
        self.services = services
        self.tick_seconds = tick_seconds
        self.max_workers = max_workers
        self.idle = idle
        self.owner = owner or f"{worker_id()}:{id(self):x}"
        self.options = options
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sync")
        self._lock = threading.Lock()
        self._running: set[int] = set()
        self._dirty: set[int] = set()
        self._watches: dict[int, _Watch] = {}
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.tick_seconds,
            id="sync-tick",
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),
        )
        self._scheduler.start()
        log.info("sync scheduler started (%s, %d threads)", self.owner, self.max_workers)

    def stop(self) -> None:
        self._stopped = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        for watch in list(self._watches.values()):
            watch.watcher.stop()  # type: ignore[attr-defined]
        self._watches.clear()
        self._pool.shutdown(wait=True)

    # -- claiming and running ----------------------------------------------------------

    def tick(self) -> None:
        try:
            with self._lock:
                free = self.max_workers - len(self._running)
                running = set(self._running)
            # One owner token per claim: each run renews and releases only its own lease. An
            # account still running here is skipped even when its lease lapsed (finding #17).
            owner = leases.run_owner(self.owner)
            for account_id in leases.claim_due(
                self.services.session_factory, owner, limit=free, exclude=running
            ):
                self._submit(account_id, "schedule", owner)
            if self.idle:
                self.reconcile_watchers()
        except Exception:
            log.exception("sync tick failed")

    def trigger(self, account_id: int, reason: str = "idle") -> None:
        """Sync this account now; if it is running, once more right after."""
        if self._stopped:
            return
        with self._lock:
            if account_id in self._running:
                self._dirty.add(account_id)
                return
        owner = leases.run_owner(self.owner)
        if leases.claim(self.services.session_factory, account_id, owner):
            self._submit(account_id, reason, owner)
        else:
            # Another worker has it; make it due so the next free claim reruns it.
            with session_scope(self.services.session_factory) as s:
                account = s.get(Account, account_id)
                if account is not None:
                    account.next_sync_at = utcnow()

    def _submit(self, account_id: int, trigger: str, owner: str) -> None:
        with self._lock:
            self._running.add(account_id)
            self._dirty.discard(account_id)
        try:
            self._pool.submit(self._run, account_id, trigger, owner)
        except RuntimeError:  # pool shut down
            with self._lock:
                self._running.discard(account_id)
            leases.release(self.services.session_factory, account_id, owner)

    def _run(self, account_id: int, trigger: str, owner: str) -> None:
        started = utcnow()
        try:
            summary = sync_account(
                self.services,
                account_id,
                owner=owner,
                trigger=trigger,
                claimed=True,
                options=self.options,
            )
            log.info("sync %s", summary.line())
        except Exception:
            log.exception("sync of account %s crashed", account_id)
        finally:
            with self._lock:
                self._running.discard(account_id)
                again = account_id in self._dirty
                self._dirty.discard(account_id)
        # A push that arrived while this run was going may announce mail it did not see.
        again = again or _pushed_since(self.services, account_id, started)
        if again and not self._stopped:
            self.trigger(account_id, "idle")

    # -- IDLE --------------------------------------------------------------------------

    def reconcile_watchers(self) -> None:
        """One watcher per syncable IMAP account whose server has IDLE; restarted when the
        settings or password change, stopped when the account goes away or stops syncing."""
        from bot.providers.idle import IdleWatcher

        wanted: dict[int, tuple[str, ImapSettings, str]] = {}
        with session_scope(self.services.session_factory) as s:
            for account in s.scalars(
                select(Account).where(
                    Account.provider == Provider.IMAP, Account.status.in_(leases.SYNCABLE)
                )
            ):
                caps = set(account.capabilities or [])
                if caps and "IDLE" not in caps:
                    continue
                try:
                    settings = imap_settings(account)
                    secret = passwords(self.services, account)["imap_password"]
                except Exception as exc:
                    log.warning("no IDLE for %s: %s", account.email, type(exc).__name__)
                    continue
                digest = hashlib.sha256(f"{settings!r}\0{secret}".encode()).hexdigest()
                wanted[account.id] = (digest, settings, secret)
        for account_id in list(self._watches):
            if (
                account_id not in wanted
                or wanted[account_id][0] != self._watches[account_id].signature
            ):
                self._watches.pop(account_id).watcher.stop()  # type: ignore[attr-defined]
        for account_id, (digest, settings, secret) in wanted.items():
            if account_id in self._watches or self._stopped:
                continue
            watcher = IdleWatcher(
                settings,
                secret,
                "INBOX",
                on_change=self._trigger_for(account_id),
                poll_seconds=0.5,
            )
            watcher.start()
            self._watches[account_id] = _Watch(digest, watcher)

    def _trigger_for(self, account_id: int) -> Callable[[], None]:
        return lambda: self.trigger(account_id, "idle")

    @property
    def watched_accounts(self) -> set[int]:
        return set(self._watches)


def _pushed_since(services: Services, account_id: int, started: datetime) -> bool:
    from bot.store.push import notified_since

    try:
        return notified_since(services.session_factory, account_id, started)
    except Exception:  # the push's mark on next_sync_at still gets it run
        log.warning("checking pushes for account %s failed", account_id, exc_info=True)
        return False
