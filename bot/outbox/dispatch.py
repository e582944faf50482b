"""Running outbox rows: claim, call the kind's handler, record the outcome, retry with backoff.

Handlers are registered per kind by the modules that own the effect (Slack posting, mailbox
write-back, sending). A handler must be idempotent: a row can run again after a crash between
its side effect and the DONE mark, so it checks its own durable marker first.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from sqlalchemy import select

from bot.services import Services
from bot.store.db import session_scope
from bot.store.models import Outbox, OutboxStatus, utcnow
from bot.store.outbox import claim_due

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
LEASE_SECONDS = 120.0
CHANNEL_INTERVAL = 1.1  # Slack allows about one post per second per channel


class RetryLater(Exception):
    """A transient failure: try again later (after `after_seconds` if the remote said so).

    `counts=False` is for waiting on something that will come (a thread's parent post), not a
    failure: the attempt is not counted, so a long Slack outage cannot fail the row."""

    def __init__(
        self, message: str, after_seconds: float | None = None, *, counts: bool = True
    ) -> None:
        super().__init__(message)
        self.after_seconds = after_seconds
        self.counts = counts


class PermanentFailure(Exception):
    """Retrying cannot help (bad address, revoked access…): the row fails and a person decides."""


@dataclass
class OutboxContext:
    services: Services
    slack: WebClient


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


class Dispatcher:
    def __init__(
        self, services: Services, slack: WebClient, registry: Registry | None = None
    ) -> None:
        self.ctx = OutboxContext(services, slack)
        self.registry = registry or default_registry()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._last_post: dict[str, float] = {}

    def run_once(self, limit: int = 50) -> int:
        """Claim and run due rows; returns how many ran."""
        factory = self.ctx.services.session_factory
        with session_scope(factory) as session:
            rows = claim_due(session, owner=self.owner, lease_seconds=LEASE_SECONDS, limit=limit)
            session.expunge_all()
        for row in rows:
            self._run(row)
        return len(rows)

    def _pace(self, row: Outbox) -> None:
        reg = self.registry.handlers.get(row.kind)
        if not (reg and reg.paced_by_channel and row.channel_id):
            return
        wait = self._last_post.get(row.channel_id, 0.0) + CHANNEL_INTERVAL - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_post[row.channel_id] = time.monotonic()

    def _run(self, row: Outbox) -> None:
        reg = self.registry.handlers.get(row.kind)
        status: OutboxStatus
        result: dict[str, Any] | None = None
        error: str | None = None
        delay = 0.0
        uncounted = False
        if reg is None:
            status, error = OutboxStatus.FAILED, f"no handler for outbox kind {row.kind!r}"
        else:
            self._pace(row)
            try:
                result = reg.handler(self.ctx, row)
                status = OutboxStatus.DONE
            except RetryLater as exc:
                error = str(exc)
                uncounted = not exc.counts
                if exc.counts and row.attempts >= MAX_ATTEMPTS:
                    status = OutboxStatus.FAILED
                else:
                    status = OutboxStatus.PENDING
                    delay = (
                        exc.after_seconds
                        if exc.after_seconds is not None
                        else backoff_seconds(row.attempts)
                    )
            except PermanentFailure as exc:
                status, error = OutboxStatus.FAILED, str(exc)
            except Exception as exc:  # a bug in a handler must not kill the loop; retried
                log.exception("outbox row %s (%s) failed", row.id, row.kind)
                error = f"{type(exc).__name__}: {exc}"
                status = (
                    OutboxStatus.FAILED if row.attempts >= MAX_ATTEMPTS else OutboxStatus.PENDING
                )
                delay = backoff_seconds(row.attempts)
        with session_scope(self.ctx.services.session_factory) as session:
            fresh = session.get(Outbox, row.id)
            if fresh is None or fresh.lease_owner != self.owner:
                return  # someone else took it over after our lease expired
            if fresh.status != OutboxStatus.RUNNING:
                return  # a handler may have set its own final state (e.g. HELD)
            fresh.status = status
            fresh.last_error = error
            if uncounted:
                fresh.attempts = max(0, fresh.attempts - 1)
            fresh.lease_owner = None
            fresh.lease_expires_at = None
            if result:
                fresh.result = {**(fresh.result or {}), **result}
            if status == OutboxStatus.DONE:
                fresh.done_at = utcnow()
            elif status == OutboxStatus.PENDING:
                fresh.next_attempt_at = utcnow() + timedelta(seconds=delay)

    def run_until_idle(self, timeout: float = 10.0) -> None:
        """Run due rows until none is due (rows delayed into the future are left for later)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run_once() == 0:
                return
        log.warning("outbox still busy after %.1fs", timeout)

    def run_forever(self, stop: threading.Event, idle_sleep: float = 0.5) -> None:
        while not stop.is_set():
            try:
                ran = self.run_once()
            except Exception:
                log.exception("outbox loop error")
                ran = 0
            if ran == 0:
                stop.wait(idle_sleep)


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
