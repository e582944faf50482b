"""Which worker syncs which account, right now.

A lease is ``(lease_owner, lease_expires_at)`` on the account row. Claiming is exclusive:

* PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` picks due rows no other worker is
  claiming, then the same transaction writes the lease.
* SQLite (no row locks): a conditional ``UPDATE … WHERE lease is free`` per candidate;
  the database's single writer makes it atomic, and ``rowcount`` says who won.

A worker that dies leaves a lease that simply expires; a live worker renews its lease
between batches, and stops the run if it lost it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update

from bot.store.db import SessionFactory, is_postgres, session_scope
from bot.store.models import Account, AccountStatus, utcnow

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


def claim_due(
    factory: SessionFactory,
    owner: str,
    *,
    limit: int,
    lease_seconds: float = LEASE_SECONDS,
    now: datetime | None = None,
) -> list[int]:
    """Lease up to ``limit`` due accounts to ``owner``; returns their ids."""
    if limit <= 0:
        return []
    now = now or utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    with session_scope(factory) as session:
        query = (
            select(Account.id)
            .where(_due(now))
            .order_by(Account.next_sync_at.asc().nulls_first(), Account.id)
            .limit(limit)
        )
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
