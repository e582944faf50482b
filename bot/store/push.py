"""Push channels in the store: marking an account due when a notification is believed, the
poll interval with and without push, and the once-across-replicas claim of the renewal job.

Everything goes through the database so that a notification received by one process (the
web server) makes any worker's scheduler run the account (bot/sync/push.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.store.db import SessionFactory, read_scope, session_scope
from bot.store.models import Account, AccountStatus, JobLock, Provider, PushChannel, utcnow

#: Without a live push channel, Gmail and Microsoft 365 accounts are polled at least this often.
POLL_WITHOUT_PUSH = 60
_SYNCABLE = (AccountStatus.ACTIVE, AccountStatus.ERROR)  # as bot.sync.leases.SYNCABLE


def make_due(session: Session, account_id: int, now: datetime) -> None:
    """The scheduler's next claim picks the account (any worker: the mark is a row)."""
    session.execute(
        update(PushChannel)
        .where(PushChannel.account_id == account_id)
        .values(notified_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            Account.status.in_(_SYNCABLE),
            or_(Account.next_sync_at.is_(None), Account.next_sync_at > now),
        )
        .values(next_sync_at=now)
        .execution_options(synchronize_session=False)
    )


def newer_history(session: Session, account_id: int, history_id: int, now: datetime) -> bool:
    """Record a Gmail push's historyId; False when it is not newer than one already seen (a
    duplicate or a replay), so it triggers nothing. One conditional UPDATE: two copies of the
    same push racing each other cannot both win."""
    result = session.execute(
        update(PushChannel)
        .where(
            PushChannel.account_id == account_id,
            or_(PushChannel.history_id.is_(None), PushChannel.history_id < history_id),
        )
        .values(history_id=history_id)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def notified_since(factory: SessionFactory, account_id: int, since: datetime) -> bool:
    """Did a notification arrive after ``since`` (a run's start)? Then the run may have missed
    the change it announced, and the account runs once more."""
    with read_scope(factory) as session:
        when = session.scalar(
            select(PushChannel.notified_at).where(PushChannel.account_id == account_id)
        )
    return when is not None and when > since


def poll_interval(session: Session, account: Account, now: datetime | None = None) -> int:
    """Seconds to the next scheduled run after a success. API accounts without a live push
    channel are polled at least every POLL_WITHOUT_PUSH seconds (issue 18)."""
    interval = int(account.sync_interval_seconds)
    if account.provider not in (Provider.GMAIL, Provider.GRAPH):
        return interval
    now = now or utcnow()
    live = session.scalar(
        select(PushChannel.id).where(
            PushChannel.account_id == account.id,
            PushChannel.expires_at > now,
            PushChannel.last_error.is_(None),
        )
    )
    return interval if live is not None else min(interval, POLL_WITHOUT_PUSH)


def claim_job(
    factory: SessionFactory,
    name: str,
    owner: str,
    *,
    seconds: float,
    now: datetime | None = None,
) -> bool:
    """Hold the named periodic job for ``seconds`` (renewed by the holder's next claim). Other
    replicas get False until the holder stops renewing: the job runs once, not per replica."""
    now = now or utcnow()
    until = now + timedelta(seconds=seconds)
    try:
        with session_scope(factory) as session:
            if session.get(JobLock, name) is None:
                session.add(JobLock(name=name, owner=None, expires_at=None))
    except IntegrityError:
        pass  # another replica inserted it first
    with session_scope(factory) as session:
        result = session.execute(
            update(JobLock)
            .where(
                JobLock.name == name,
                or_(
                    JobLock.owner.is_(None),
                    JobLock.owner == owner,
                    JobLock.expires_at.is_(None),
                    JobLock.expires_at < now,
                ),
            )
            .values(owner=owner, expires_at=until)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]
