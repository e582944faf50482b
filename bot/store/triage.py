"""Team triage in the store: a conversation's owner, status, snooze and "is replying" mark.

Every change is a conditional UPDATE (so a repeated click, a Slack retry or two people at once
change it once) plus an `audit_log` row "triage.<what>" with {"from", "to"}; the caller queues
the Slack effects. Knows nothing of Slack.

Status: "open" (ours to answer), "waiting" (we answered; waiting on them) or "done". An archived
conversation counts as done whatever the column says (the Archive button and the mailbox's own
Archive folder set `archived`), and a conversation that was unarchived is open again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, func, literal_column, or_, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from bot.store import audit
from bot.store.models import (
    AuditLog,
    Conversation,
    Direction,
    Message,
    TriagePreference,
    utcnow,
)

OPEN = "open"
WAITING = "waiting"
DONE = "done"
STATUSES = (OPEN, WAITING, DONE)

# The views that answer "what's left" (store semantics; `mine` needs the person).
MINE = "mine"
UNASSIGNED = "unassigned"
WAITING_VIEW = "waiting"
SNOOZED = "snoozed"
UNANSWERED = "unanswered"
VIEWS = (MINE, UNASSIGNED, WAITING_VIEW, SNOOZED, UNANSWERED)

SYSTEM = "system"


def effective_status(conversation: Conversation) -> str:
    if conversation.archived:
        return DONE
    if conversation.status == DONE:
        return OPEN  # unarchived since it was done: back in the inbox
    return conversation.status if conversation.status in STATUSES else OPEN


# -- views ---------------------------------------------------------------------------------


def _status(value: str) -> ColumnElement[str]:
    """A status as a constant in the SQL, not a parameter: the views' partial index
    (ix_conversations_open, migration 0017) is used only when the query holds its terms."""
    assert value in STATUSES
    return literal_column(f"'{value}'", String)


def _not_done() -> ColumnElement[bool]:
    return and_(Conversation.archived.is_(False), Conversation.status != _status(DONE))


class Unindexed(FunctionElement[Any]):
    """A column the planner must not choose an index for (SQLite: `+column`; PostgreSQL
    plans by its statistics and needs no hint). The views below read the partial index
    ix_conversations_open (0017), which holds every column they test: an index on one of
    those columns would cost a table lookup per row (SQLite picks by row estimates that
    cannot see how common NULL or one person is)."""

    inherit_cache = True
    name = "unindexed"


@compiles(Unindexed)
def _unindexed(element: Unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(Unindexed, "sqlite")
def _unindexed_sqlite(element: Unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


class SqliteOnly(FunctionElement[bool]):
    """A condition written out for SQLite only (`true` elsewhere): for terms implied by the
    rest, which SQLite needs verbatim to use a partial index."""

    inherit_cache = True
    name = "sqlite_only"
    # No Boolean type: SQLite would compare a boolean expression with 1 ("(…) = 1"), and
    # the partial index's term would no longer match.


@compiles(SqliteOnly)
def _sqlite_only(element: SqliteOnly, compiler: Any, **kw: Any) -> str:
    return "true"


@compiles(SqliteOnly, "sqlite")
def _sqlite_only_sqlite(element: SqliteOnly, compiler: Any, **kw: Any) -> str:
    return "(" + str(compiler.process(element.clauses, **kw)) + ")"


def _awake() -> ColumnElement[bool]:
    # Not by ix_conversations_snoozed_until: nearly every conversation is awake (NULL), which
    # SQLite's statistics cannot tell from one distinct time per row, so it would pick that
    # index over the views' partial index (28 ms for a count at 100,000 messages).
    return Unindexed(Conversation.snoozed_until).is_(None)


def view_conditions(name: str, user_id: str | None) -> list[ColumnElement[bool]]:
    """Conditions on `Conversation` for one of VIEWS. A snoozed conversation leaves every list
    but "snoozed"; done ones leave them all. `mine` without a person matches nothing."""
    if name == MINE:
        who = Unindexed(Conversation.assignee) == user_id if user_id else Conversation.id.is_(None)
        return [who, _not_done(), _awake()]
    if name == UNASSIGNED:
        return [Unindexed(Conversation.assignee).is_(None), _not_done(), _awake()]
    if name == WAITING_VIEW:
        # Waiting is never done. SQLite needs the not-done terms written out to use the
        # partial index; PostgreSQL proves them from status = 'waiting' itself, and a
        # redundant term there would cut its row estimate threefold (it then drove the
        # search from every waiting conversation: 24 ms instead of 7 at 100,000 messages).
        return [
            Conversation.status == _status(WAITING),
            Conversation.archived.is_(False),
            SqliteOnly(Conversation.status != _status(DONE)),
            _awake(),
        ]
    if name == SNOOZED:
        return [Unindexed(Conversation.snoozed_until).is_not(None), _not_done()]
    if name == UNANSWERED:
        return [Conversation.waiting_since.is_not(None), _not_done(), _awake()]
    raise ValueError(f"unknown triage view {name!r}")


# -- auditing ------------------------------------------------------------------------------


def _audit(
    session: Session,
    conversation: Conversation,
    actor: str,
    what: str,
    before: Any,
    after: Any,
    **extra: Any,
) -> AuditLog:
    def plain(v: Any) -> Any:
        return v.isoformat() if isinstance(v, datetime) else v

    row = audit.record(
        session,
        actor,
        f"triage.{what}",
        account_id=conversation.account_id,
        conversation_id=conversation.id,
        details={"from": plain(before), "to": plain(after), **extra},
    )
    session.flush()
    return row


@dataclass(frozen=True)
class Change:
    """One applied change: what, from, to, and the audit row id (keys the Slack effects)."""

    what: str
    before: Any
    after: Any
    audit_id: int


def _conditional(
    session: Session, conversation_id: int, column: Any, before: Any, values: dict[str, Any]
) -> bool:
    guard = column.is_(None) if before is None else column == before
    result = session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, guard)
        .values(values)
        .execution_options(synchronize_session=False)
    )
    changed = result.rowcount == 1  # type: ignore[attr-defined]
    if changed:
        session.expire_all()
    return changed


# -- owner ---------------------------------------------------------------------------------


def set_assignee(
    session: Session, conversation: Conversation, actor: str, assignee: str | None
) -> Change | None:
    """Assign (or unassign with None). None when it already was so, or someone changed it
    between the read and this write (their change stands)."""
    before = conversation.assignee
    if before == assignee:
        return None
    cid = conversation.id
    if not _conditional(session, cid, Conversation.assignee, before, {"assignee": assignee}):
        return None
    conversation = session.get_one(Conversation, cid)
    row = _audit(session, conversation, actor, "assign", before, assignee)
    return Change("assign", before, assignee, row.id)


# -- status --------------------------------------------------------------------------------


def set_status(
    session: Session, conversation: Conversation, actor: str, status: str, **extra: Any
) -> Change | None:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    before = conversation.status
    if before == status:
        return None
    cid = conversation.id
    if not _conditional(session, cid, Conversation.status, before, {"status": status}):
        return None
    conversation = session.get_one(Conversation, cid)
    row = _audit(session, conversation, actor, "status", before, status, **extra)
    return Change("status", before, status, row.id)


# -- snooze --------------------------------------------------------------------------------


def snooze(
    session: Session, conversation: Conversation, actor: str, until: datetime
) -> Change | None:
    before = conversation.snoozed_until
    if before == until:
        return None
    cid = conversation.id
    values = {"snoozed_until": until, "snoozed_by": actor}
    if not _conditional(session, cid, Conversation.snoozed_until, before, values):
        return None
    conversation = session.get_one(Conversation, cid)
    row = _audit(session, conversation, actor, "snooze", before, until)
    return Change("snooze", before, until, row.id)


def wake(session: Session, conversation: Conversation, actor: str, reason: str) -> Change | None:
    """End a snooze (reason: "time", "mail" or "manual"). None when it was not snoozed or
    another worker woke it first: each snooze wakes once."""
    before = conversation.snoozed_until
    if before is None:
        return None
    cid = conversation.id
    values = {"snoozed_until": None, "snoozed_by": None}
    if not _conditional(session, cid, Conversation.snoozed_until, before, values):
        return None
    conversation = session.get_one(Conversation, cid)
    row = _audit(session, conversation, actor, "wake", before, None, reason=reason)
    return Change("wake", before, None, row.id)


def anything_due(session: Session, now: datetime) -> bool:
    """A cheap read: is any snooze or "is replying" mark due? (Two indexed lookups; the worker
    asks this before taking a write transaction.)"""
    for column in (Conversation.snoozed_until, Conversation.replying_until):
        due = session.scalar(
            select(Conversation.id).where(column.is_not(None), column <= now).limit(1)
        )
        if due is not None:
            return True
    return False


def claim_due_snoozes(
    session: Session, *, now: datetime | None = None, limit: int = 50
) -> list[int]:
    """Ids of conversations whose snooze is due, locked for this transaction.

    `FOR UPDATE SKIP LOCKED` on PostgreSQL: two workers never take the same row, and neither
    waits for the other; SQLite has one writer anyway. The caller wakes each with `wake()`,
    whose conditional UPDATE is the second guard."""
    now = now or utcnow()
    stmt = (
        select(Conversation.id)
        .where(Conversation.snoozed_until.is_not(None), Conversation.snoozed_until <= now)
        .order_by(Conversation.snoozed_until, Conversation.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


# -- "is replying" -------------------------------------------------------------------------


def mark_replying(session: Session, conversation_id: int, user_id: str, until: datetime) -> bool:
    """True when the mark changed (a new person, or the first mark): the parent re-renders."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        return False
    fresh = conversation.replying_user != user_id
    conversation.replying_user = user_id
    conversation.replying_until = until
    session.flush()
    return fresh


def clear_replying(session: Session, conversation_id: int, user_id: str) -> bool:
    """Clear the mark if it is this person's (another's newer mark stays)."""
    result = session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.replying_user == user_id)
        .values(replying_user=None, replying_until=None)
        .execution_options(synchronize_session=False)
    )
    changed = result.rowcount == 1  # type: ignore[attr-defined]
    if changed:
        session.expire_all()
    return changed


def expire_replying(session: Session, *, now: datetime | None = None, limit: int = 50) -> list[int]:
    """Clear marks whose time ran out (a modal closed without telling us); their ids."""
    now = now or utcnow()
    stmt = (
        select(Conversation.id, Conversation.replying_user)
        .where(Conversation.replying_until.is_not(None), Conversation.replying_until <= now)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    out = []
    for cid, user in session.execute(stmt).all():
        if user and clear_replying(session, cid, user):
            out.append(cid)
        elif not user:
            session.execute(
                update(Conversation).where(Conversation.id == cid).values(replying_until=None)
            )
    return out


# -- new mail ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MailEffects:
    """What an ingested email changed: Slack is told about reopen and wake-up."""

    reopened: Change | None = None
    woke: Change | None = None
    waiting: Change | None = None


def _latest(session: Session, conversation_id: int, direction: Direction) -> datetime | None:
    value: datetime | None = session.scalar(
        select(func.max(func.coalesce(Message.date, Message.received_at))).where(
            Message.conversation_id == conversation_id,
            Message.direction == direction,
            Message.deleted.is_(False),
        )
    )
    if value is not None and value.tzinfo is None:
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value


def on_mail(
    session: Session,
    conversation: Conversation,
    *,
    direction: Direction,
    when: datetime | None,
    news: bool,
) -> MailEffects:
    """Keep status and "waiting since" in step with a newly stored email.

    Inbound: the customer waits from their oldest email after our last reply; when it is news
    (not imported history), a waiting or done conversation opens again and a snooze ends.
    Outbound (a reply sent from Slack, or from the mail client): nobody waits on us any more
    and the conversation is Waiting, unless a newer inbound email is already there.
    """
    when = when or utcnow()
    if direction == Direction.INBOUND:
        last_out = _latest(session, conversation.id, Direction.OUTBOUND)
        if last_out is not None and last_out >= when:
            return MailEffects()  # an old email that arrived late: our reply came after it
        if conversation.waiting_since is None or conversation.waiting_since > when:
            conversation.waiting_since = when
            session.flush()
        if not news:
            return MailEffects()
        reopened = None
        if conversation.status != OPEN:
            reopened = set_status(session, conversation, SYSTEM, OPEN, reason="new email")
        woke = wake(session, conversation, SYSTEM, "mail")
        return MailEffects(reopened=reopened, woke=woke)
    last_in = _latest(session, conversation.id, Direction.INBOUND)
    if last_in is not None and last_in > when:
        return MailEffects()  # they wrote again after this reply: still theirs to answer
    conversation.waiting_since = None
    session.flush()
    waiting = None
    if conversation.status == OPEN and not conversation.archived:
        waiting = set_status(session, conversation, SYSTEM, WAITING, reason="reply sent")
    return MailEffects(waiting=waiting)


# -- history and preferences ---------------------------------------------------------------


def history(session: Session, conversation_id: int, limit: int = 30) -> list[AuditLog]:
    """Triage changes of a conversation, newest first."""
    return list(
        session.scalars(
            select(AuditLog)
            .where(
                AuditLog.conversation_id == conversation_id,
                or_(AuditLog.action.like("triage.%"), AuditLog.action.like("conversation.%")),
            )
            .order_by(AuditLog.at.desc(), AuditLog.id.desc())
            .limit(limit)
        )
    )


def wants_assignment_dms(session: Session, user_id: str) -> bool:
    pref = session.get(TriagePreference, user_id)
    return True if pref is None else pref.assignment_dms


def set_assignment_dms(session: Session, user_id: str, enabled: bool) -> None:
    pref = session.get(TriagePreference, user_id)
    if pref is None:
        session.add(TriagePreference(user_id=user_id, assignment_dms=enabled))
    else:
        pref.assignment_dms = enabled
    session.flush()


def home_conversations(
    session: Session, account_ids: Sequence[int], user_id: str, limit: int = 10
) -> tuple[list[Conversation], list[Conversation]]:
    """(the person's open conversations, the unassigned ones), oldest waiting customer first."""
    if not account_ids:
        return [], []
    order = (
        Conversation.waiting_since.is_(None),
        Conversation.waiting_since,
        Conversation.last_message_at,
        Conversation.id,
    )

    def rows(name: str) -> list[Conversation]:
        return list(
            session.scalars(
                select(Conversation)
                .where(
                    Conversation.account_id.in_(list(account_ids)),
                    Conversation.merged_into_id.is_(None),
                    Conversation.deleted.is_(False),
                    *view_conditions(name, user_id),
                )
                .order_by(*order)
                .limit(limit)
            )
        )

    return rows(MINE), rows(UNASSIGNED)
