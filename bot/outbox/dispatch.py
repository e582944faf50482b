"""Running outbox rows: claim, call the kind's handler, record the outcome, retry with backoff.

Handlers are registered per kind by the modules that own the effect (Slack posting, mailbox
write-back, sending). A handler must be idempotent: a row can run again after a crash between
its side effect and the DONE mark, so it checks its own durable marker first.

Lanes (docs/outbox.md): every row has a lane (a Slack channel, an account's write-back, an
account's sends). A lane runs one row at a time, oldest first; lanes run side by side on a
small pool of runner threads, so one channel's pacing, a 429 or one slow effect delays only its
own lane. Pacing is a "not before" time stored with the lane, which every worker honours.

Leases are per row: the dispatcher renews the leases of the rows it is running on a timer, and
a handler checks its lease right before a side effect (`ctx.check_lease(row)`), so a row whose
lease ran out (a stalled worker) is never run by two workers at once.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.services import Services
from bot.store.db import SessionFactory, session_scope
from bot.store.models import Outbox, OutboxStatus, utcnow
from bot.store.outbox import (
    claim_due,
    dependency_failed,
    due_count,
    next_wake,
    pace_lane,
    renew_leases,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
LEASE_SECONDS = 120.0
CHANNEL_INTERVAL = 1.1  # Slack allows about one post per second per channel
RUNNERS = 6  # rows (of different lanes) running at once per dispatcher


class RetryLater(Exception):
    """A transient failure: try again later (after `after_seconds` if the remote said so).

    `counts=False` is for waiting on something that will come (a thread's parent post), not a
    failure: the attempt is not counted, so a long Slack outage cannot fail the row. Name what
    is awaited with `waiting_for` (an outbox row id, or a (kind, conversation_id) pair): when
    that row has FAILED, the wait counts again, so the row fails after MAX_ATTEMPTS instead of
    waiting for ever (and still completes if a person retries the other row meanwhile)."""

    def __init__(
        self,
        message: str,
        after_seconds: float | None = None,
        *,
        counts: bool = True,
        waiting_for: int | tuple[str, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.after_seconds = after_seconds
        self.counts = counts
        self.waiting_for = waiting_for


class PermanentFailure(Exception):
    """Retrying cannot help (bad address, revoked access…): the row fails and a person decides."""


class LeaseLost(Exception):
    """This worker no longer holds the row's lease: another worker may run it. Stop before any
    side effect; the dispatcher records nothing for the row."""


class LeaseKeeper:
    """The leases of the rows one dispatcher is running: renewed on a timer while the effects
    run, and checked (and extended) on demand right before a side effect."""

    def __init__(self, factory: SessionFactory, owner: str, lease_seconds: float) -> None:
        self.factory = factory
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._held: set[int] = set()
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, row_id: int) -> None:
        with self._lock:
            self._held.add(row_id)
            self._lost.discard(row_id)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._renew_loop, name="outbox-leases", daemon=True
                )
                self._thread.start()

    def untrack(self, row_id: int) -> None:
        with self._lock:
            self._held.discard(row_id)
            self._lost.discard(row_id)

    def _renew_loop(self) -> None:
        # A third of the lease: two renewals can fail (a busy database) before it runs out.
        while not self._stop.wait(max(0.05, self.lease_seconds / 3)):
            with self._lock:
                if not self._held:  # idle: the next track() starts a new thread
                    self._thread = None
                    return
            try:
                self.renew()
            except Exception:
                log.exception("renewing outbox leases failed")

    def renew(self) -> None:
        with self._lock:
            ids = set(self._held)
        if not ids:
            return
        with session_scope(self.factory) as session:
            kept = renew_leases(session, ids, self.owner, self.lease_seconds)
        with self._lock:
            self._lost |= (ids - kept) & self._held

    def check(self, row: Outbox) -> None:
        """Raise LeaseLost unless this worker still holds `row`'s lease; extends it."""
        with self._lock:
            if row.id in self._lost:
                raise LeaseLost(f"outbox row {row.id}: lease lost")
        with session_scope(self.factory) as session:
            kept = renew_leases(session, [row.id], self.owner, self.lease_seconds)
        if row.id not in kept:
            with self._lock:
                self._lost.add(row.id)
            raise LeaseLost(f"outbox row {row.id}: lease expired or taken over")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@dataclass
class OutboxContext:
    services: Services
    slack: WebClient
    # Set by the Dispatcher; a context built by hand (tests, scripts) has no lease to check.
    leases: LeaseKeeper | None = None

    def check_lease(self, row: Outbox) -> None:
        """Call right before a side effect: raises LeaseLost if another worker may now run
        `row` (this worker's lease expired), and extends the lease otherwise."""
        if self.leases is not None:
            self.leases.check(row)

    def still_leased(self, row: Outbox) -> bool:
        try:
            self.check_lease(row)
        except LeaseLost:
            return False
        return True


Handler = Callable[[OutboxContext, Outbox], "dict[str, Any] | None"]


@dataclass
class _Registration:
    handler: Handler
    paced_by_channel: bool


@dataclass
class Registry:
    handlers: dict[str, _Registration] = field(default_factory=dict)

    def register(self, kind: str, handler: Handler, *, paced_by_channel: bool = False) -> None:
        if kind in self.handlers:
            raise ValueError(f"outbox kind {kind!r} registered twice")
        self.handlers[kind] = _Registration(handler, paced_by_channel)


_default_registry: Registry | None = None


def default_registry() -> Registry:
    """Every built-in handler; modules that are not built yet are simply absent."""
    global _default_registry
    if _default_registry is None:
        import importlib

        registry = Registry()
        for name in (
            "bot.outbox.slack_handlers",
            "bot.outbox.mail_handlers",
            "bot.compose.outbox",
        ):
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if not (exc.name and name.startswith(exc.name)):
                    raise
                continue
            module.register(registry)
        _default_registry = registry
    return _default_registry


def backoff_seconds(attempts: int) -> float:
    """5 s, 10 s, 20 s … capped at 15 minutes, with jitter so retries do not stampede."""
    base: float = min(5.0 * 2 ** max(0, attempts - 1), 900.0)
    return base * (0.8 + 0.4 * random.random())


def _awaited_failed(session: Session, waiting_for: int | tuple[str, int]) -> Outbox | None:
    if isinstance(waiting_for, int):
        other = session.get(Outbox, waiting_for)
        failed = (OutboxStatus.FAILED, OutboxStatus.CANCELLED)
        return other if other is not None and other.status in failed else None
    kind, conversation_id = waiting_for
    return dependency_failed(session, kind=kind, conversation_id=int(conversation_id))


@dataclass
class _Outcome:
    status: OutboxStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    delay: float = 0.0
    uncounted: bool = False
    waiting_for: int | tuple[str, int] | None = None
    lane_pause: float | None = None  # seconds the whole lane waits (a 429)


class Dispatcher:
    def __init__(
        self,
        services: Services,
        slack: WebClient,
        registry: Registry | None = None,
        *,
        runners: int = RUNNERS,
        lease_seconds: float = LEASE_SECONDS,
        channel_interval: float | None = None,
        owner: str | None = None,
    ) -> None:
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lease_seconds = lease_seconds
        self.channel_interval = CHANNEL_INTERVAL if channel_interval is None else channel_interval
        self.runners = max(1, runners)
        self.leases = LeaseKeeper(services.session_factory, self.owner, lease_seconds)
        self.ctx = OutboxContext(services, slack, self.leases)
        self.registry = registry or default_registry()
        self._pool = ThreadPoolExecutor(self.runners, thread_name_prefix="outbox")
        self._wake = threading.Event()

    def claim(self, limit: int) -> list[Outbox]:
        with session_scope(self.ctx.services.session_factory) as session:
            rows = claim_due(
                session,
                owner=self.owner,
                lease_seconds=self.lease_seconds,
                limit=limit,
            )
            session.expunge_all()
        for row in rows:
            self.leases.track(row.id)
        return rows

    def run_once(self, limit: int = 50) -> int:
        """Claim due rows (one per free lane) and run them side by side; returns how many ran."""
        rows = self.claim(limit)
        if len(rows) == 1:
            self._run(rows[0])
        else:
            for future in [self._pool.submit(self._run, row) for row in rows]:
                future.result()
        return len(rows)

    def _run(self, row: Outbox) -> None:
        try:
            self._run_tracked(row)
        except Exception:  # never lose the runner thread; the lease expires, the row reruns
            log.exception("outbox row %s (%s): recording the outcome failed", row.id, row.kind)
        finally:
            self.leases.untrack(row.id)
            self._wake.set()

    def _run_tracked(self, row: Outbox) -> None:
        reg = self.registry.handlers.get(row.kind)
        started = utcnow()
        if reg is None:
            out = _Outcome(OutboxStatus.FAILED, error=f"no handler for outbox kind {row.kind!r}")
        else:
            try:
                out = _Outcome(OutboxStatus.DONE, result=reg.handler(self.ctx, row))
            except LeaseLost as exc:
                log.warning("outbox row %s (%s): %s; left to its new owner", row.id, row.kind, exc)
                return
            except RetryLater as exc:
                out = _Outcome(
                    OutboxStatus.PENDING,
                    error=str(exc),
                    uncounted=not exc.counts,
                    waiting_for=exc.waiting_for,
                    delay=(
                        exc.after_seconds
                        if exc.after_seconds is not None
                        else backoff_seconds(row.attempts)
                    ),
                )
                if exc.counts and row.attempts >= MAX_ATTEMPTS:
                    out.status = OutboxStatus.FAILED
                if reg.paced_by_channel and exc.counts and exc.after_seconds is not None:
                    out.lane_pause = exc.after_seconds  # Slack's Retry-After: the whole channel
            except PermanentFailure as exc:
                out = _Outcome(OutboxStatus.FAILED, error=str(exc))
            except Exception as exc:  # a bug in a handler must not kill the loop; retried
                log.exception("outbox row %s (%s) failed", row.id, row.kind)
                out = _Outcome(
                    OutboxStatus.FAILED if row.attempts >= MAX_ATTEMPTS else OutboxStatus.PENDING,
                    error=f"{type(exc).__name__}: {exc}",
                    delay=backoff_seconds(row.attempts),
                )
        # A wait (the parent is not posted yet) called nobody: it does not pace the channel.
        paced = bool(reg and reg.paced_by_channel) and not out.uncounted
        self._record(row, out, started, paced=paced)

    def _record(self, row: Outbox, out: _Outcome, started: datetime, *, paced: bool) -> None:
        with session_scope(self.ctx.services.session_factory) as session:
            if row.lane is not None and (paced or out.lane_pause is not None):
                until = started + timedelta(seconds=self.channel_interval if paced else 0)
                if out.lane_pause is not None:
                    until = max(until, utcnow() + timedelta(seconds=out.lane_pause))
                pace_lane(session, row.lane, until)
            fresh = session.get(Outbox, row.id)
            if fresh is None or fresh.lease_owner != self.owner:
                return  # someone else took it over after our lease expired
            if fresh.status != OutboxStatus.RUNNING:
                return  # a handler may have set its own final state (e.g. HELD)
            if out.uncounted and out.waiting_for is not None:
                failed = _awaited_failed(session, out.waiting_for)
                if failed is not None:
                    # Waiting on a row that failed: count the waits, so it ends.
                    out.uncounted = False
                    out.error = f"{out.error} (outbox row #{failed.id} it waits for failed)"
                    out.delay = max(out.delay, backoff_seconds(row.attempts))
                    if row.attempts >= MAX_ATTEMPTS:
                        out.status = OutboxStatus.FAILED
            fresh.status = out.status
            fresh.last_error = out.error
            if out.uncounted:
                fresh.attempts = max(0, fresh.attempts - 1)
            fresh.lease_owner = None
            fresh.lease_expires_at = None
            if out.result:
                fresh.result = {**(fresh.result or {}), **out.result}
            if out.status == OutboxStatus.DONE:
                fresh.done_at = utcnow()
            elif out.status == OutboxStatus.PENDING:
                fresh.next_attempt_at = utcnow() + timedelta(seconds=out.delay)

    def _pause(self, idle_sleep: float) -> float:
        """How long until something may become claimable (a due time, a lane's pacing)."""
        with session_scope(self.ctx.services.session_factory) as session:
            wake = next_wake(session)
        if wake is None:
            return idle_sleep
        return min(idle_sleep, max(0.01, (wake - utcnow()).total_seconds()))

    def run_until_idle(self, timeout: float = 10.0) -> None:
        """Run due rows until none is due (rows delayed into the future are left for later);
        rows held back by their lane (a row still running, pacing of up to `lane_wait`
        seconds) are waited for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run_once() == 0:
                with session_scope(self.ctx.services.session_factory) as session:
                    if due_count(session, lane_wait=max(2.0, self.channel_interval)) == 0:
                        return
                time.sleep(min(self._pause(0.25), max(0.0, deadline - time.monotonic())))
        log.warning("outbox still busy after %.1fs", timeout)

    def run_forever(self, stop: threading.Event, idle_sleep: float = 0.5) -> None:
        """Keep up to `runners` rows running; claim again as soon as one finishes."""
        inflight: set[Future[None]] = set()
        while not stop.is_set():
            inflight = {f for f in inflight if not f.done()}
            ran = 0
            free = self.runners - len(inflight)
            if free > 0:
                self._wake.clear()
                try:
                    for row in self.claim(free):
                        inflight.add(self._pool.submit(self._run, row))
                        ran += 1
                except Exception:
                    log.exception("outbox loop error")
            if ran == 0 or free <= ran:
                try:
                    pause = self._pause(idle_sleep)
                except Exception:
                    pause = idle_sleep
                self._wake.wait(pause)
        for future in inflight:
            future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.leases.close()


def retry_row(services: Services, outbox_id: int) -> bool:
    """A person asked to retry a failed or held row: make it due now."""
    with session_scope(services.session_factory) as session:
        row = session.scalar(select(Outbox).where(Outbox.id == outbox_id))
        if row is None or row.status not in (OutboxStatus.FAILED, OutboxStatus.HELD):
            return False
        row.status = OutboxStatus.PENDING
        row.next_attempt_at = utcnow()
        row.attempts = 0
        return True
