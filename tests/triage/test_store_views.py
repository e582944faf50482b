"""Triage in the store, on SQLite and PostgreSQL: the views return exactly the right
conversations (lists, counts and search `is:`), and snoozes wake once with two workers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.inbox.triage import wake_due
from bot.store import triage as st
from bot.store.conversations import count_conversations, filter_counts, list_conversations
from bot.store.db import SessionFactory, session_scope
from bot.store.ingest import ingest_message
from bot.store.models import (
    Account,
    AuditLog,
    Conversation,
    Direction,
    Outbox,
    SlackThread,
)
from bot.store.search import search
from tests.store.helpers import make_account, raw_mail

T0 = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)


def _conversation(session: Session, account: Account, n: int, *, replied: bool = False) -> int:
    date = T0 + timedelta(hours=n)
    raw = raw_mail(
        f"c{n}@acme.example", f"Case {n}", date=date.strftime("%a, %d %b %Y %H:%M:%S +0000")
    )
    result = ingest_message(session, account, raw)
    conv = result.conversation
    st.on_mail(session, conv, direction=Direction.INBOUND, when=date, news=True)
    if replied:
        later = date + timedelta(minutes=30)
        reply = raw_mail(
            f"r{n}@ours.example",
            f"Re: Case {n}",
            sender=f"Team <{account.email}>",
            to="bob@acme.example",
            irt=f"c{n}@acme.example",
            date=later.strftime("%a, %d %b %Y %H:%M:%S +0000"),
        )
        out = ingest_message(session, account, reply, direction=Direction.OUTBOUND)
        assert out.conversation.id == conv.id
        st.on_mail(session, conv, direction=Direction.OUTBOUND, when=later, news=True)
    session.flush()
    return conv.id


def _world(session: Session) -> tuple[Account, dict[str, int]]:
    acc = make_account(session)
    other = make_account(session, "other@ours.example")
    c: dict[str, int] = {}
    c["mine_open"] = _conversation(session, acc, 1)
    c["unassigned_open"] = _conversation(session, acc, 2)
    c["unassigned_waiting"] = _conversation(session, acc, 3, replied=True)
    c["theirs_snoozed"] = _conversation(session, acc, 4)
    c["mine_done"] = _conversation(session, acc, 5)
    c["unassigned_snoozed"] = _conversation(session, acc, 6)
    c["theirs_waiting"] = _conversation(session, acc, 7, replied=True)
    c["elsewhere"] = _conversation(session, other, 8)

    def conv(name: str) -> Conversation:
        return session.get_one(Conversation, c[name])

    st.set_assignee(session, conv("mine_open"), "U1", "U1")
    st.set_assignee(session, conv("theirs_snoozed"), "U1", "U2")
    st.snooze(session, conv("theirs_snoozed"), "U2", T0 + timedelta(days=400))
    st.set_assignee(session, conv("mine_done"), "U1", "U1")
    st.set_status(session, conv("mine_done"), "U1", st.DONE)
    conv("mine_done").archived = True
    st.snooze(session, conv("unassigned_snoozed"), "U1", T0 + timedelta(days=400))
    st.set_assignee(session, conv("theirs_waiting"), "U1", "U2")
    session.flush()
    return acc, c


EXPECTED = {
    "mine": {"mine_open"},
    "unassigned": {"unassigned_open", "unassigned_waiting"},
    "waiting": {"unassigned_waiting", "theirs_waiting"},
    "snoozed": {"theirs_snoozed", "unassigned_snoozed"},
    "unanswered": {"mine_open", "unassigned_open"},
}


def test_each_view_returns_exactly_its_conversations(session: Session) -> None:
    acc, c = _world(session)
    names = {v: k for k, v in c.items()}
    for view, expected in EXPECTED.items():
        got = list_conversations(session, filter=view, account_ids=[acc.id], user_id="U1")
        assert {names[x.id] for x in got} == expected, view
        assert count_conversations(session, filter=view, account_ids=[acc.id], user_id="U1") == len(
            expected
        )
    counts = filter_counts(session, account_ids=[acc.id], user_id="U1")
    assert {k: counts[k] for k in EXPECTED} == {k: len(v) for k, v in EXPECTED.items()}
    # Another person's "mine"; nobody's "mine" is empty.
    theirs = list_conversations(session, filter="mine", account_ids=[acc.id], user_id="U2")
    assert {names[x.id] for x in theirs} == {"theirs_waiting"}
    assert list_conversations(session, filter="mine", account_ids=[acc.id]) == []


def test_search_is_filters_match_the_views(session: Session) -> None:
    acc, c = _world(session)
    names = {v: k for k, v in c.items()}
    for view, expected in EXPECTED.items():
        page = search(session, f"is:{view}", visible_account_ids=[acc.id], user_id="U1", limit=100)
        assert page.errors == []
        assert {names[h.conversation_id] for h in page.hits} == expected, view
    # With text too, and negated.
    page = search(session, "case is:unanswered", visible_account_ids=[acc.id], user_id="U1")
    assert {names[h.conversation_id] for h in page.hits} == EXPECTED["unanswered"]
    page = search(session, "-is:snoozed is:unassigned", visible_account_ids=[acc.id], user_id="U1")
    assert {names[h.conversation_id] for h in page.hits} == EXPECTED["unassigned"]


def test_a_late_old_email_does_not_undo_a_reply(session: Session) -> None:
    acc = make_account(session)
    cid = _conversation(session, acc, 1, replied=True)
    conv = session.get_one(Conversation, cid)
    assert conv.waiting_since is None and conv.status == st.WAITING
    # An email dated before our reply shows up late: the reply still answered it.
    st.on_mail(session, conv, direction=Direction.INBOUND, when=T0, news=True)
    assert conv.waiting_since is None and conv.status == st.WAITING


def test_home_lists_oldest_waiting_first(session: Session) -> None:
    acc = make_account(session)
    newer = _conversation(session, acc, 5)
    older = _conversation(session, acc, 1)
    answered = _conversation(session, acc, 0, replied=True)
    mine, unassigned = st.home_conversations(session, [acc.id], "U1")
    assert mine == []
    assert [x.id for x in unassigned] == [older, newer, answered]


def _snoozed_world(factory: SessionFactory, n: int, due: datetime) -> list[int]:
    with session_scope(factory) as session:
        acc = make_account(session)
        acc.channel_id = "CINBOX"
        ids = []
        for i in range(n):
            cid = _conversation(session, acc, i)
            conv = session.get_one(Conversation, cid)
            session.add(SlackThread(conversation_id=cid, channel_id="CINBOX", ts=f"1.{i:06d}"))
            st.snooze(session, conv, "U1", due)
            ids.append(cid)
        return ids


def test_two_workers_wake_each_snooze_once(session_factory: SessionFactory) -> None:
    due = datetime.now(UTC) - timedelta(minutes=1)
    ids = _snoozed_world(session_factory, 24, due)
    services: Any = SimpleNamespace(session_factory=session_factory)
    woken: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            start.wait(10)
            while True:
                got = wake_due(services, limit=3)
                if not got:
                    return
                woken[name] += got
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in woken]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(woken["a"] + woken["b"]) == sorted(ids)
    assert not set(woken["a"]) & set(woken["b"])
    with session_factory() as s:
        wakes = s.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "triage.wake")
        )
        told = s.scalar(
            select(func.count())
            .select_from(Outbox)
            .where(Outbox.kind == "slack.post_in_thread", Outbox.key.like("slack.note:%"))
        )
        left = s.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(Conversation.snoozed_until.is_not(None))
        )
    assert wakes == len(ids) and told == len(ids) and left == 0
