"""Which worker syncs which account, right now.

A lease is ``(lease_owner, lease_expires_at)`` on the account row. Claiming is exclusive:

* PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` picks due rows no other worker is
  claiming, then the same transaction writes the lease.
* SQLite (no row locks): a conditional ``UPDATE … WHERE lease is free`` per candidate;
  the database's single writer makes it atomic, and ``rowcount`` says who won.

A worker that dies leaves a lease that simply expires; a live worker renews its lease
between batches and on a timer (``keep_renewed``, for a batch that takes longer than the
lease), and stops the run if it lost it. Every run has its own owner token (``run_owner``), so
a run that lost its lease can neither renew nor release the lease of a newer run.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update

from bot.store.db import SessionFactory, is_postgres, session_scope
from bot.store.models import Account, AccountStatus, utcnow

log = logging.getLogger(__name__)

LEASE_SECONDS = 300.0
# Accounts the scheduler runs. Needs re-authorisation and Paused wait for a person.
SYNCABLE = (AccountStatus.ACTIVE, AccountStatus.ERROR)


class LeaseLost(Exception):
    """Another worker holds this account now (our lease expired): stop this run."""


def _free(now: datetime) -> ColumnElement[bool]:
    return or_(Account.lease_expires_at.is_(None), Account.lease_expires_at < now)


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(
        Account.status.in_(SYNCABLE),
        or_(Account.next_sync_at.is_(None), Account.next_sync_at <= now),
        _free(now),
    )


def run_owner(base: str) -> str:
    """A lease owner token for one run: ``base`` (the worker) plus a random part."""
    return f"{base}#{uuid.uuid4().hex[:12]}"


def claim_due(
    factory: SessionFactory,
    owner: str,
    *,
    limit: int,
    lease_seconds: float = LEASE_SECONDS,
    now: datetime | None = None,
    exclude: Collection[int] = (),
) -> list[int]:
    """Lease up to ``limit`` due accounts to ``owner``; returns their ids. ``exclude``: accounts
    the caller is running already (their lease may have lapsed during a long batch)."""
    if limit <= 0:
        return []
    now = now or utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    with session_scope(factory) as session:
        query = select(Account.id).where(_due(now))
        if exclude:
            query = query.where(Account.id.not_in(list(exclude)))
        query = query.order_by(Account.next_sync_at.asc().nulls_first(), Account.id).limit(limit)
        if is_postgres(session):
            query = query.with_for_update(skip_locked=True)
        claimed: list[int] = []
        for account_id in list(session.scalars(query)):
            result = session.execute(
                update(Account)
                .where(Account.id == account_id, _due(now))
                .values(lease_owner=owner, lease_expires_at=expires)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(account_id)
        return claimed


def claim(
    factory: SessionFactory,
    account_id: int,
    owner: str,
    *,
    lease_seconds: float = LEASE_SECONDS,
    now: datetime | None = None,
) -> bool:
    """Lease one account now, due or not (manual and IDLE-triggered runs)."""
    now = now or utcnow()
    with session_scope(factory) as session:
        result = session.execute(
            update(Account)
            .where(Account.id == account_id, _free(now))
            .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def renew(
    factory: SessionFactory,
    account_id: int,
    owner: str,
    *,
    lease_seconds: float = LEASE_SECONDS,
    now: datetime | None = None,
) -> None:
    """Extend our lease; raises LeaseLost if it is no longer ours."""
    now = now or utcnow()
    with session_scope(factory) as session:
        result = session.execute(
            update(Account)
            .where(
                Account.id == account_id,
                Account.lease_owner == owner,
                Account.lease_expires_at >= now,
            )
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(f"lease on account {account_id} expired or was taken over")


def release(factory: SessionFactory, account_id: int, owner: str) -> None:
    with session_scope(factory) as session:
        session.execute(
            update(Account)
            .where(Account.id == account_id, Account.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


@contextmanager
def keep_renewed(
    factory: SessionFactory,
    account_id: int,
    owner: str,
    *,
    lease_seconds: float = LEASE_SECONDS,
    every: float | None = None,
) -> Iterator[threading.Event]:
    """Renew ``owner``'s lease on a timer while the block runs, so one batch that takes
    longer than the lease (a big fetch, a slow parse) does not let another run start. The
    event yielded is set once the lease was lost; the run's own renew then raises LeaseLost."""
    lost = threading.Event()
    stop = threading.Event()
    interval = every if every is not None else lease_seconds / 3

    def loop() -> None:
        while not stop.wait(interval):
            try:
                renew(factory, account_id, owner, lease_seconds=lease_seconds)
            except LeaseLost:
                lost.set()
                return
            except Exception:  # a busy database: try again next time, the lease has slack
                log.warning("renewing the lease on account %s failed", account_id, exc_info=True)

    thread = threading.Thread(target=loop, name=f"lease-{account_id}", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        stop.set()
        thread.join(timeout=10)
