"""The outbox: durable rows for every effect that leaves the process (queries only, no commits)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from bot.store.db import is_postgres
from bot.store.models import Outbox, OutboxStatus, utcnow


def enqueue(
    session: Session,
    *,
    kind: str,
    key: str,
    payload: dict[str, Any],
    account_id: int | None = None,
    conversation_id: int | None = None,
    channel_id: str | None = None,
    created_by: str | None = None,
    delay_seconds: float = 0,
    status: OutboxStatus = OutboxStatus.PENDING,
) -> Outbox:
    """Add an effect, once. Enqueueing a key that exists returns the existing row unchanged."""
    existing = session.scalar(select(Outbox).where(Outbox.key == key))
    if existing is not None:
        return existing
    row = Outbox(
        key=key,
        kind=kind,
        payload=payload,
        account_id=account_id,
        conversation_id=conversation_id,
        channel_id=channel_id,
        created_by=created_by,
        status=status,
        next_attempt_at=utcnow() + timedelta(seconds=delay_seconds),
    )
    # A SAVEPOINT makes a concurrent insert of the same key a no-op instead of a failed
    # transaction for the caller.
    from sqlalchemy.exc import IntegrityError

    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        found = session.scalar(select(Outbox).where(Outbox.key == key))
        if found is None:
            raise
        return found
    return row


def claim_due(
    session: Session, *, owner: str, lease_seconds: float, limit: int, now: datetime | None = None
) -> list[Outbox]:
    """Lease due rows to `owner`: pending ones whose time has come, and running ones whose
    worker died (lease expired). On PostgreSQL, SKIP LOCKED lets several workers claim at once."""
    now = now or utcnow()
    due = or_(
        and_(Outbox.status == OutboxStatus.PENDING, Outbox.next_attempt_at <= now),
        and_(Outbox.status == OutboxStatus.RUNNING, Outbox.lease_expires_at < now),
    )
    query = select(Outbox).where(due).order_by(Outbox.next_attempt_at, Outbox.id).limit(limit)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    rows = list(session.scalars(query))
    claimed = []
    for row in rows:
        # The conditional UPDATE is what makes a claim exclusive on SQLite (no row locks).
        result = session.execute(
            update(Outbox)
            .where(Outbox.id == row.id, Outbox.status == row.status, due)
            .values(
                status=OutboxStatus.RUNNING,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=Outbox.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            session.refresh(row)
            claimed.append(row)
    return claimed


def pending_count(session: Session) -> int:
    from sqlalchemy import func

    return int(
        session.scalar(
            select(func.count())
            .select_from(Outbox)
            .where(Outbox.status.in_([OutboxStatus.PENDING, OutboxStatus.RUNNING]))
        )
        or 0
    )
