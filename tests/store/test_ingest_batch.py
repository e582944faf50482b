"""ingest_batch (the sync/import hot path) gives the same store as ingesting one by one."""

from __future__ import annotations

import random

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from bot.devtools.mailgen import MailGen
from bot.store.db import SessionFactory, session_scope
from bot.store.ingest import IngestItem, IngestResult, ingest_batch, ingest_message
from bot.store.models import AuditLog, Conversation, Message, MessageRef
from tests.store.helpers import make_account, raw_mail


def _partition(session: Session, account_id: int) -> set[frozenset[str]]:
    rows = session.execute(
        select(Message.conversation_id, Message.message_id).where(Message.account_id == account_id)
    ).all()
    groups: dict[int, set[str]] = {}
    for conv, mid in rows:
        groups.setdefault(conv, set()).add(mid)
    return {frozenset(g) for g in groups.values()}


def _counters(session: Session, account_id: int) -> list[tuple[int, int]]:
    rows = session.execute(
        select(Conversation.message_count, Conversation.unread_count).where(
            Conversation.account_id == account_id, Conversation.merged_into_id.is_(None)
        )
    ).all()
    return sorted((a, b) for a, b in rows if a)


def test_batches_in_any_order_match_one_by_one(session_factory: SessionFactory) -> None:
    raws = list(MailGen(seed=7).messages(300))
    shuffled = raws[:]
    random.Random(3).shuffle(shuffled)  # replies before their parents, across batches
    with session_scope(session_factory) as s:
        one = make_account(s, "one@ours.example")
        many = make_account(s, "many@ours.example")
        for raw in shuffled:  # same arrival order: subject fallback depends on it
            ingest_message(s, one, raw)
    for i in range(0, len(shuffled), 40):
        with session_scope(session_factory) as s:
            acc = s.get(type(many), many.id)
            assert acc is not None
            results = ingest_batch(s, acc, [IngestItem(r) for r in shuffled[i : i + 40]])
            assert len(results) == len(shuffled[i : i + 40])
    with session_scope(session_factory) as s:
        assert _partition(s, one.id) == _partition(s, many.id)
        assert _counters(s, one.id) == _counters(s, many.id)
        # every reference is indexed for the late-parent lookup
        assert s.execute(select(func.count()).select_from(MessageRef)).scalar_one() > 0


def test_a_header_less_reply_and_its_own_replies_thread_as_one_by_one(
    session_factory: SessionFactory,
) -> None:
    """A reply without threading headers joins its conversation by subject; a later reply
    that references it must follow it there, in a batch as one by one (in a batch it used to
    start a conversation of its own, and the header-less one joined that instead)."""
    raws = [
        raw_mail("root@x", "Plan", date="Mon, 01 Jan 2024 10:00:00 +0000"),
        raw_mail("bare@x", "Re: Plan", date="Mon, 01 Jan 2024 11:00:00 +0000"),  # no headers
        raw_mail(
            "child@x",
            "Re: Plan",
            irt="bare@x",
            refs=["bare@x"],
            date="Mon, 01 Jan 2024 12:00:00 +0000",
        ),
        raw_mail("other@x", "Other", date="Mon, 01 Jan 2024 13:00:00 +0000"),
    ]
    with session_scope(session_factory) as s:
        one = make_account(s, "one@ours.example")
        many = make_account(s, "many@ours.example")
        for raw in raws:
            ingest_message(s, one, raw)
        results = ingest_batch(s, many, [IngestItem(r) for r in raws])
        assert [r.created for r in results] == [True] * 4
        expected = {frozenset({"root@x", "bare@x", "child@x"}), frozenset({"other@x"})}
        assert _partition(s, one.id) == expected
        assert _partition(s, many.id) == expected


def test_arrival_order_batches_match_one_by_one(session_factory: SessionFactory) -> None:
    """Mail in the order a mailbox gives it (the sync's case), generated with the header-less
    replies and broken mail that real mailboxes have."""
    raws = list(MailGen(seed=1).messages(1500))
    with session_scope(session_factory) as s:
        one = make_account(s, "one@ours.example")
        many = make_account(s, "many@ours.example")
        for raw in raws:
            ingest_message(s, one, raw)
    for i in range(0, len(raws), 500):
        with session_scope(session_factory) as s:
            acc = s.get_one(type(many), many.id)
            ingest_batch(s, acc, [IngestItem(r) for r in raws[i : i + 500]])
    with session_scope(session_factory) as s:
        assert _partition(s, one.id) == _partition(s, many.id)
        assert _counters(s, one.id) == _counters(s, many.id)


def test_a_batch_with_duplicates_and_known_messages_stores_each_once(
    session_factory: SessionFactory,
) -> None:
    a, b = raw_mail("a@x", "Plan"), raw_mail("b@x", "Re: Plan", irt="a@x", refs=["a@x"])
    with session_scope(session_factory) as s:
        acc = make_account(s)
        ingest_message(s, acc, a)
        results = ingest_batch(s, acc, [IngestItem(b), IngestItem(a), IngestItem(b)])
        assert [r.created for r in results] == [True, False, False]
        assert results[0].message.id == results[2].message.id
        assert len({r.conversation.id for r in results}) == 1
        assert s.scalar(select(func.count()).select_from(Message)) == 2


def test_a_batch_that_connects_two_stored_conversations_merges_them(
    session_factory: SessionFactory,
) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        first = ingest_message(
            s, acc, raw_mail("p1@x", "One", date="Mon, 01 Jan 2024 09:00:00 +0000")
        )
        second = ingest_message(
            s, acc, raw_mail("p2@x", "Two", date="Mon, 01 Jan 2024 10:00:00 +0000")
        )
        bridge = raw_mail(
            "c@x", "Re: both", refs=["p1@x", "p2@x"], date="Tue, 02 Jan 2024 10:00:00 +0000"
        )
        [result] = ingest_batch(s, acc, [IngestItem(bridge)])
        assert result.conversation.id == first.conversation.id  # the oldest survives
        assert result.merged_conversation_ids == [second.conversation.id]
        assert result.conversation.message_count == 3
        assert s.scalar(select(func.count()).where(AuditLog.action == "merge")) == 1


def test_the_first_message_of_a_new_conversation_in_a_batch_announces_it(
    session_factory: SessionFactory,
) -> None:
    root = raw_mail("r@x", "Hi", date="Mon, 01 Jan 2024 09:00:00 +0000")
    reply = raw_mail("s@x", "Re: Hi", irt="r@x", date="Mon, 01 Jan 2024 10:00:00 +0000")
    with session_scope(session_factory) as s:
        acc = make_account(s)
        results = ingest_batch(s, acc, [IngestItem(root), IngestItem(reply)])
        assert [r.new_conversation for r in results] == [True, False]
        assert results[0].conversation.message_count == 2
        assert results[0].conversation.subject == "Hi"


def _ingest_recording(s: Session, n: int) -> tuple[list[IngestResult], list[str]]:
    """Ingest `n` new one-message threads as one batch; every statement sent, normalised."""
    statements: list[str] = []

    def record(_conn: object, _cursor: object, sql: str, *_rest: object) -> None:
        statements.append(" ".join(sql.split()).upper())

    account = make_account(s)
    engine = s.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        raws = [raw_mail(f"solo{i}@x", f"Topic {i}") for i in range(n)]
        return ingest_batch(s, account, [IngestItem(r) for r in raws]), statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_batch_inserts_its_new_conversations_in_one_statement(
    session_factory: SessionFactory,
) -> None:
    """Ids are reserved before the flush (bot/store/ids.py), so the ORM sends the batch's new
    conversations as one executemany, not (on SQLite) one INSERT a conversation."""
    with session_scope(session_factory) as s:
        results, sent = _ingest_recording(s, 6)
        statements = [sql for sql in sent if sql.startswith("INSERT INTO CONVERSATIONS")]
        convs = {r.conversation.id for r in results}
    assert len(convs) == 6
    assert len(statements) == 1
    with session_scope(session_factory) as s:
        stored = s.scalars(select(Conversation.id).where(Conversation.id.in_(convs))).all()
        assert sorted(stored) == sorted(convs)


def test_a_batch_of_new_mail_never_reads_its_message_ids_back(
    session_factory: SessionFactory,
) -> None:
    """Message ids are reserved too: after the one INSERT of the batch's messages nothing asks
    the database which ids they got, and each result names the row of its own mail."""
    with session_scope(session_factory) as s:
        results, statements = _ingest_recording(s, 8)
        inserts = [i for i, sql in enumerate(statements) if sql.startswith("INSERT INTO MESSAGES ")]
        assert len(inserts) == 1
        after = statements[inserts[0] + 1 :]
        assert not [
            sql for sql in after if sql.startswith("SELECT") and " FROM MESSAGES " in f"{sql} "
        ]
        got = {r.message_pk: r.facts.message_id for r in results}
        stored = dict(
            s.execute(select(Message.id, Message.message_id).where(Message.id.in_(got))).all()
        )
        assert stored == got and len(got) == 8


def test_new_conversations_are_stored_whole_and_attached_without_lazy_loads(
    session_factory: SessionFactory,
) -> None:
    """A batch's new conversations go in by one INSERT (COPY on PostgreSQL from 20 rows) and
    are attached to the session as persistent rows: every column stored with the defaults the
    ORM would give (status open, not archived, created now), and reading them, their Slack
    thread or link after the batch costs no query."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import inspect

    raws = [
        raw_mail(f"solo{i}@x", f"Topic {i}", date=f"Mon, 01 Jan 2024 10:{i:02d}:00 +0000")
        for i in range(25)
    ]
    raws.append(raw_mail("re0@x", "Re: Topic 0", irt="solo0@x"))
    before = datetime.now(UTC) - timedelta(seconds=5)
    with session_scope(session_factory) as s:
        account = make_account(s)
        aid = account.id
        results = ingest_batch(s, account, [IngestItem(r) for r in raws])
        convs = {r.conversation.id: r.conversation for r in results}
        assert len(convs) == 25
        statements: list[str] = []

        def record(*args: object) -> None:
            statements.append(str(args[2]))

        event.listen(s.get_bind(), "before_cursor_execute", record)
        for conv in convs.values():
            state = inspect(conv)
            assert state.persistent and not state.expired_attributes and not s.is_modified(conv)
            assert _new_state(conv)
            assert conv.slack_thread is None and conv.link is None
            assert conv.created_at is not None
        event.remove(s.get_bind(), "before_cursor_execute", record)
        assert statements == []
    with session_scope(session_factory) as s:
        stored = s.scalars(
            select(Conversation).where(Conversation.account_id == aid).order_by(Conversation.id)
        ).all()
        assert len(stored) == 25
        for conv in stored:
            assert _new_state(conv)
            assert conv.assignee is None and conv.snoozed_until is None
            assert conv.created_at is not None and conv.created_at >= before
            assert conv.first_message_at is not None and conv.first_message_at.tzinfo is not None
        by_subject = {c.subject: c for c in stored}
        assert (by_subject["Topic 0"].message_count, by_subject["Topic 0"].unread_count) == (2, 2)
        assert by_subject["Topic 0"].subject_key == "topic 0"
        assert by_subject["Topic 7"].first_message_at == datetime(2024, 1, 1, 10, 7, tzinfo=UTC)


def _new_state(conv: Conversation) -> bool:
    """A conversation as a batch creates it: open, not archived, deleted or merged."""
    return (conv.status, conv.archived, conv.deleted, conv.merged_into_id) == (
        "open",
        False,
        False,
        None,
    )
