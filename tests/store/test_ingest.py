"""ingest_message: dedupe, incremental threading (any arrival order), merges, counters."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bot.store.db import SessionFactory, session_scope
from bot.store.ingest import ingest_message
from bot.store.models import (
    Attachment,
    AuditLog,
    Conversation,
    Direction,
    FolderState,
    Message,
    MessageLocation,
    MessageRaw,
)
from tests.store.helpers import make_account, raw_mail


def _count(s, model) -> int:  # type: ignore[no-untyped-def]
    return s.scalar(select(func.count()).select_from(model))


def test_same_raw_twice_is_one_message(session_factory: SessionFactory) -> None:
    raw = raw_mail("a@x", "Hi")
    with session_scope(session_factory) as s:
        acc = make_account(s)
        first = ingest_message(s, acc, raw)
        again = ingest_message(s, acc, raw)
        assert first.created and first.new_conversation
        assert not again.created and again.message.id == first.message.id
    with session_scope(session_factory) as s:
        assert _count(s, Message) == 1
        assert _count(s, Conversation) == 1
        assert s.scalar(select(MessageRaw.raw)) == raw
        assert s.scalar(select(Conversation.message_count)) == 1


def test_same_message_id_from_two_folders_adds_a_location(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        inbox = FolderState(account_id=acc.id, name="INBOX")
        archive = FolderState(account_id=acc.id, name="Archive")
        s.add_all([inbox, archive])
        s.flush()
        one = ingest_message(s, acc, raw_mail("a@x"), location=(inbox, 7, 1), flags=["\\Seen"])
        # The copy in another folder may differ in bytes (added headers): same Message-ID.
        two = ingest_message(
            s, acc, raw_mail("a@x", extra="X-Folder: archive"), location=(archive, 9, 4)
        )
        assert not two.created and two.message.id == one.message.id
    with session_scope(session_factory) as s:
        assert _count(s, Message) == 1
        locs = s.execute(select(MessageLocation.uidvalidity, MessageLocation.uid)).all()
        assert sorted(locs) == [(7, 1), (9, 4)]


def test_a_taken_folder_slot_is_left_to_its_message(session_factory: SessionFactory) -> None:
    """A (folder, UIDVALIDITY, UID) slot already held (a stale row the rescan will fix, or the
    same slot twice in one batch) keeps its message; the new mail is stored all the same."""
    from bot.store.ingest import IngestItem, ingest_batch

    with session_scope(session_factory) as s:
        acc = make_account(s)
        inbox = FolderState(account_id=acc.id, name="INBOX")
        s.add(inbox)
        s.flush()
        old = ingest_message(s, acc, raw_mail("old@x"), location=(inbox, 7, 1))
        new = ingest_batch(
            s,
            acc,
            [
                IngestItem(raw_mail("new@x"), location=(inbox, 7, 1), flags=["\\Seen"]),
                IngestItem(raw_mail("b@x"), location=(inbox, 7, 2)),
                IngestItem(raw_mail("c@x"), location=(inbox, 7, 2)),
                IngestItem(raw_mail("d@x"), location=(inbox, 7, 3), flags=["\\Seen"]),
            ],
        )
        assert all(r.created for r in new)
        ids = [old.message_pk] + [r.message_pk for r in new]
    with session_scope(session_factory) as s:
        assert _count(s, Message) == 5
        slots = s.execute(
            select(MessageLocation.uid, MessageLocation.message_id, MessageLocation.flags)
        ).all()
        assert sorted(slots) == [(1, ids[0], []), (2, ids[2], []), (3, ids[4], ["\\Seen"])]


def test_same_message_id_in_two_accounts_is_two_records(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        a = make_account(s, "a@ours.example")
        b = make_account(s, "b@ours.example")
        ra = ingest_message(s, a, raw_mail("shared@x"))
        rb = ingest_message(s, b, raw_mail("shared@x"))
        assert ra.created and rb.created
        assert ra.conversation.id != rb.conversation.id
    with session_scope(session_factory) as s:
        assert _count(s, Message) == 2


def test_provider_id_dedupes_even_with_another_message_id(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        one = ingest_message(s, acc, raw_mail("a@x"), provider_id="gm-1")
        two = ingest_message(s, acc, raw_mail("b@x"), provider_id="gm-1")
        assert not two.created and two.message.id == one.message.id


def test_duplicate_insert_race_resolves_to_the_stored_row(session_factory: SessionFactory) -> None:
    """On SQLite every write transaction starts with BEGIN IMMEDIATE, so two writers are
    serialised and this interleaving cannot happen; PostgreSQL runs it.

    A second writer inserted the same Message-ID between our check and our insert: the
    unique constraint wins, the SAVEPOINT rolls back only our attempt, and the stored row is
    returned. Simulated with two sessions and the first committing in between."""
    if session_factory.kw["bind"].dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): the race cannot occur")
    with session_scope(session_factory) as s:
        acc_id = make_account(s).id
    raw = raw_mail("race@x")
    import bot.store.ingest as ingest_mod

    real_find = ingest_mod._existing_messages
    calls = {"n": 0}

    def find_then_lose_race(session, account_id, batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            with session_scope(session_factory) as other:
                acc2 = other.get_one(ingest_mod.Account, account_id)
                ingest_message(other, acc2, raw)
            return {}, {}  # our check ran "before" the other writer committed
        return real_find(session, account_id, batch)

    ingest_mod._existing_messages = find_then_lose_race
    try:
        with session_scope(session_factory) as s:
            acc = s.get_one(ingest_mod.Account, acc_id)
            s.add(AuditLog(actor="test", action="before"))  # our own pending work survives
            result = ingest_message(s, acc, raw)
            assert not result.created
    finally:
        ingest_mod._existing_messages = real_find
    with session_scope(session_factory) as s:
        assert _count(s, Message) == 1
        assert s.scalar(select(func.count()).where(AuditLog.action == "before")) == 1


def test_child_before_parent_and_grandchild_first(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        gc = ingest_message(
            s, acc, raw_mail("c@x", "Re: Plan", irt="b@x", refs=["a@x", "b@x"],
                              date="Mon, 01 Jan 2024 12:00:00 +0000"),
        )  # fmt: skip
        child = ingest_message(
            s, acc, raw_mail("b@x", "Re: Plan", irt="a@x", refs=["a@x"],
                              date="Mon, 01 Jan 2024 11:00:00 +0000"),
        )  # fmt: skip
        root = ingest_message(
            s, acc, raw_mail("a@x", "Plan", date="Mon, 01 Jan 2024 10:00:00 +0000")
        )
        assert child.conversation.id == gc.conversation.id == root.conversation.id
        conv = root.conversation
        assert conv.message_count == 3 and conv.unread_count == 3
        assert conv.subject == "Plan"  # the root message names the conversation
        assert conv.first_message_at is not None and conv.last_message_at is not None
        assert conv.first_message_at.hour == 10 and conv.last_message_at.hour == 12


def test_parent_joining_two_conversations_merges_into_oldest(
    session_factory: SessionFactory,
) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        # Two replies that only name their parent: two conversations until the parent comes.
        early = ingest_message(
            s, acc, raw_mail("r1@x", "Re: Q", irt="p@x", date="Mon, 01 Jan 2024 09:00:00 +0000")
        )
        late = ingest_message(
            s, acc, raw_mail("r2@x", "Re: Q", irt="p@x2", date="Tue, 02 Jan 2024 09:00:00 +0000")
        )
        assert early.conversation.id != late.conversation.id
        # A message whose References name both ids joins (and merges) them.
        bridge = ingest_message(
            s,
            acc,
            raw_mail("m@x", "Re: Q", refs=["p@x", "p@x2"], date="Wed, 03 Jan 2024 09:00:00 +0000"),
        )
        assert bridge.conversation.id == early.conversation.id
        assert bridge.merged_conversation_ids == [late.conversation.id]
        early_id, late_id = early.conversation.id, late.conversation.id
    with session_scope(session_factory) as s:
        target = s.get_one(Conversation, early_id)
        merged = s.get_one(Conversation, late_id)
        assert target.message_count == 3 and target.unread_count == 3
        assert merged.merged_into_id == early_id and merged.message_count == 0
        assert {m.conversation_id for m in s.scalars(select(Message))} == {early_id}
        log = s.scalars(select(AuditLog).where(AuditLog.action == "merge")).one()
        assert log.conversation_id == early_id and log.details["merged_ids"] == [late_id]


def test_siblings_sharing_a_missing_parent_are_one_conversation(
    session_factory: SessionFactory,
) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        a = ingest_message(s, acc, raw_mail("s1@x", "Re: gone", refs=["ghost@x"]))
        b = ingest_message(s, acc, raw_mail("s2@x", "Re: gone", refs=["ghost@x"]))
        assert a.conversation.id == b.conversation.id


def test_provider_thread_id_is_a_union_hint(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        a = ingest_message(s, acc, raw_mail("a@x", "One"), provider_thread_id="T1")
        b = ingest_message(s, acc, raw_mail("b@x", "Other words"), provider_thread_id="T1")
        c = ingest_message(s, acc, raw_mail("c@x", "One"), provider_thread_id="T2")
        assert a.conversation.id == b.conversation.id != c.conversation.id


def test_subject_fallback_with_prefix_and_window(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        root = ingest_message(
            s, acc, raw_mail("o@x", "Pricing", date="Mon, 01 Jan 2024 10:00:00 +0000")
        )
        reply = ingest_message(
            s, acc, raw_mail("r@x", "AW: Pricing", date="Wed, 03 Jan 2024 10:00:00 +0000")
        )
        assert reply.conversation.id == root.conversation.id
        # Out of the 7-day window: a new conversation.
        old = ingest_message(
            s, acc, raw_mail("r2@x", "Re: Pricing", date="Mon, 15 Jan 2024 10:00:00 +0000")
        )
        assert old.new_conversation


def test_no_subject_fallback_without_prefix(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        a = ingest_message(s, acc, raw_mail("a@x", "Invoice"))
        b = ingest_message(
            s, acc, raw_mail("b@x", "Invoice", date="Tue, 02 Jan 2024 10:00:00 +0000")
        )
        assert a.conversation.id != b.conversation.id


def test_subject_never_joins_header_threads(session_factory: SessionFactory) -> None:
    """Two header-based threads with the same subject stay apart, and a reply that has a
    header link never goes by subject."""
    with session_scope(session_factory) as s:
        acc = make_account(s)
        t1 = ingest_message(s, acc, raw_mail("a1@x", "Report"))
        r1 = ingest_message(s, acc, raw_mail("a2@x", "Re: Report", irt="a1@x"))
        t2 = ingest_message(
            s, acc, raw_mail("b1@x", "Report", date="Mon, 01 Jan 2024 11:00:00 +0000")
        )
        r2 = ingest_message(
            s,
            acc,
            raw_mail("b2@x", "Re: Report", irt="b1@x", date="Mon, 01 Jan 2024 12:00:00 +0000"),
        )
        assert r1.conversation.id == t1.conversation.id
        assert r2.conversation.id == t2.conversation.id != t1.conversation.id
        assert not r2.merged_conversation_ids


def test_attachments_defects_and_direction(session_factory: SessionFactory) -> None:
    body = (
        "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
        'Content-Type: text/csv; name="a.csv"\r\nContent-Disposition: attachment; filename="a.csv"\r\n'
        "\r\nx,1\r\n--b--\r\n"
    )
    raw = raw_mail(
        "att@x",
        "Files",
        extra='MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"',
        body=body,
    )
    with session_scope(session_factory) as s:
        acc = make_account(s)
        r = ingest_message(s, acc, raw)
        assert r.message.has_attachments
        out = ingest_message(
            s,
            acc,
            raw_mail("out@x", "Hi", sender="Team <TEAM@ours.example>", to="c@client.example"),
        )
        assert out.message.direction == Direction.OUTBOUND and out.message.is_read
        broken = ingest_message(s, acc, b"\x00\xff garbage without headers")
        assert broken.created and broken.message.parse_defects
    with session_scope(session_factory) as s:
        names = s.scalars(select(Attachment.filename)).all()
        assert names == ["a.csv"]
