"""The outbox: durable rows for every effect that leaves the process (queries only, no commits)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from bot.store.db import is_postgres
from bot.store.models import Outbox, OutboxLane, OutboxStatus, utcnow

SEND_KIND = "mail.send"


def lane_for(
    kind: str,
    *,
    account_id: int | None,
    channel_id: str | None,
    payload: dict[str, Any] | None = None,
) -> str | None:
    """The lane a row runs in (rows of one lane run one at a time, oldest first).

    Sends get a lane per account of their own, so a reply never waits behind posts or
    write-back; other mailbox effects share the account's write-back lane; Slack effects run
    in their channel's lane (where Slack's per-channel rate applies). None: no lane, the row
    runs whenever it is due."""
    if kind == SEND_KIND and account_id is not None:
        return f"send:{account_id}"
    if kind.startswith("mail.") and account_id is not None:
        return f"mailbox:{account_id}"
    if channel_id:
        return f"slack:{channel_id}"
    user = (payload or {}).get("user_id")
    if kind.startswith("slack.") and user:
        return f"slack:dm:{user}"
    return None


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
    lane: str | None = None,
) -> Outbox:
    """Add an effect, once. Enqueueing a key that exists returns the existing row unchanged.

    `lane` defaults to `lane_for(...)`."""
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
        lane=lane or lane_for(kind, account_id=account_id, channel_id=channel_id, payload=payload),
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


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(Outbox.status == OutboxStatus.PENDING, Outbox.next_attempt_at <= now),
        and_(Outbox.status == OutboxStatus.RUNNING, Outbox.lease_expires_at < now),
    )


def _lane_free(now: datetime) -> ColumnElement[bool]:
    """The row's lane has no other row running under a live lease and is not paced."""
    other = aliased(Outbox)
    busy = (
        select(other.id)
        .where(
            other.lane == Outbox.lane,
            other.id != Outbox.id,
            other.status == OutboxStatus.RUNNING,
            other.lease_expires_at >= now,
        )
        .exists()
    )
    paced = (
        select(OutboxLane.name)
        .where(OutboxLane.name == Outbox.lane, OutboxLane.not_before > now)
        .exists()
    )
    return or_(Outbox.lane.is_(None), and_(~busy, ~paced))


# Namespace of the outbox's advisory locks (pg_try_advisory_xact_lock's first key).
_LANE_LOCKS = 0x0B0C


def _lock_lane(session: Session, lane: str) -> bool:
    """PostgreSQL: hold the lane for this transaction, or say another worker is claiming in it
    right now (two workers must not claim two rows of one lane at once: neither would see the
    other's uncommitted RUNNING row). A transaction-scoped advisory lock never waits and needs
    no row; two lanes whose hashes collide only take turns."""
    got = session.scalar(select(func.pg_try_advisory_xact_lock(_LANE_LOCKS, func.hashtext(lane))))
    return bool(got)


def claim_due(
    session: Session,
    *,
    owner: str,
    lease_seconds: float,
    limit: int,
    now: datetime | None = None,
) -> list[Outbox]:
    """Lease due rows to `owner`: at most one per lane, the lane's oldest due row, in lanes
    that are neither busy (a row running under a live lease) nor paced. Due rows are pending
    ones whose time has come and running ones whose worker died (lease expired).

    PostgreSQL: the candidates are read with SKIP LOCKED and each lane's row is locked before
    its claim, so several workers claim side by side. SQLite (no row locks, one writer): the
    conditional UPDATE repeats every condition, and its rowcount says who won."""
    if limit <= 0:
        return []
    now = now or utcnow()
    postgres = is_postgres(session)
    cond = and_(_due(now), _lane_free(now))
    # Each free lane's oldest due row (and every due row without a lane): however long one
    # channel's queue, the other lanes' heads are among the first `limit` candidates.
    ranked = (
        select(
            Outbox.id,
            Outbox.lane,
            func.row_number()
            .over(partition_by=Outbox.lane, order_by=(Outbox.next_attempt_at, Outbox.id))
            .label("rn"),
        )
        .where(_due(now))
        .subquery()
    )
    heads = select(ranked.c.id).where(or_(ranked.c.rn == 1, ranked.c.lane.is_(None)))
    # The lane checks run on the heads only (one per lane), not on every queued row.
    query = (
        select(Outbox)
        .where(Outbox.id.in_(heads), _lane_free(now))
        .order_by(Outbox.next_attempt_at, Outbox.id)
        .limit(limit)
    )
    if postgres:
        query = query.with_for_update(skip_locked=True, of=Outbox)
    rows = list(session.scalars(query))
    claimed: list[Outbox] = []
    lanes: set[str] = set()
    for row in rows:
        if len(claimed) >= limit:
            break
        if row.lane is not None:
            if row.lane in lanes:
                continue
            lanes.add(row.lane)
            if postgres and not _lock_lane(session, row.lane):
                continue
        # The conditional UPDATE is what makes a claim exclusive on SQLite (no row locks), and
        # on PostgreSQL it re-reads the lane after the lane lock (another worker may have
        # committed a claim in it just before).
        result = session.execute(
            update(Outbox)
            .where(Outbox.id == row.id, Outbox.status == row.status, cond)
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


def renew_leases(
    session: Session, ids: Collection[int], owner: str, lease_seconds: float
) -> set[int]:
    """Extend `owner`'s live leases on rows `ids`; returns the ids still held."""
    if not ids:
        return set()
    now = utcnow()
    held = _held(ids, owner, now)
    session.execute(
        update(Outbox)
        .where(held)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return set(session.scalars(select(Outbox.id).where(Outbox.id.in_(list(ids)), held)))


def _held(ids: Collection[int], owner: str, now: datetime) -> ColumnElement[bool]:
    return and_(
        Outbox.id.in_(list(ids)),
        Outbox.lease_owner == owner,
        Outbox.status == OutboxStatus.RUNNING,
        Outbox.lease_expires_at >= now,
    )


def pace_lane(session: Session, lane: str, until: datetime) -> None:
    """No row of `lane` starts before `until` (never moves an existing pause earlier)."""
    insert = pg_insert if is_postgres(session) else sqlite_insert
    session.execute(insert(OutboxLane).values(name=lane).on_conflict_do_nothing())
    session.execute(
        update(OutboxLane)
        .where(
            OutboxLane.name == lane,
            or_(OutboxLane.not_before.is_(None), OutboxLane.not_before < until),
        )
        .values(not_before=until)
        .execution_options(synchronize_session=False)
    )


def dependency_failed(session: Session, *, kind: str, conversation_id: int) -> Outbox | None:
    """The FAILED (or cancelled) row of `kind` for the conversation that a waiting row depends
    on, if that is how it ended: a waiting row must then stop waiting (fail, or act without
    it) instead of polling for ever. None while it is pending, running, done or absent."""
    return session.scalar(
        select(Outbox)
        .where(
            Outbox.kind == kind,
            Outbox.conversation_id == conversation_id,
            Outbox.status.in_([OutboxStatus.FAILED, OutboxStatus.CANCELLED]),
        )
        .order_by(Outbox.id.desc())
        .limit(1)
    )


def due_count(
    session: Session, now: datetime | None = None, *, lane_wait: float | None = None
) -> int:
    """Rows that are due now. With `lane_wait`, only those whose lane is not paced for longer
    than that (a row waiting out a 429's long Retry-After is not about to run)."""
    now = now or utcnow()
    cond = _due(now)
    if lane_wait is not None:
        paced = (
            select(OutboxLane.name)
            .where(
                OutboxLane.name == Outbox.lane,
                OutboxLane.not_before > now + timedelta(seconds=lane_wait),
            )
            .exists()
        )
        cond = and_(cond, ~paced)
    return int(session.scalar(select(func.count()).select_from(Outbox).where(cond)) or 0)


def next_wake(session: Session, now: datetime | None = None) -> datetime | None:
    """The earliest future time a row may become claimable: a retry's due time, or the end
    of a lane's pacing. None when nothing is scheduled."""
    now = now or utcnow()
    due = session.scalar(
        select(func.min(Outbox.next_attempt_at)).where(
            Outbox.status == OutboxStatus.PENDING, Outbox.next_attempt_at > now
        )
    )
    paced = session.scalar(
        select(func.min(OutboxLane.not_before)).where(OutboxLane.not_before > now)
    )
    times = [t for t in (due, paced) if t is not None]
    return min(times) if times else None


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
