"""Draft building and submitting against the store (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.blocks import compose as cb
from bot.compose.drafts import build_body, start_from_conversation
from bot.compose.form import ComposeMeta, Submission
from bot.compose.submit import release_held, send_key, submit
from bot.mail.types import Address
from bot.store.db import SessionFactory, session_scope
from bot.store.models import Outbox, OutboxStatus
from tests.compose import seed


def _thread(factory: SessionFactory) -> tuple[int, int, int]:
    """(account id, conversation id, id of the customer's second email)."""
    refs = " ".join(f"<r{i}@acme.test>" for i in range(30))
    with session_scope(factory) as s:
        acc = seed.account(s)
        seed.account(s, "sales@mailroom.test", "CSALES")
        first = seed.ingest(s, acc, seed.email(message_id="r0@acme.test"))
        second = seed.ingest(
            s,
            acc,
            seed.email(
                message_id="m2@acme.test",
                sender="Jane Doe <jane@acme.test>",
                to="support@mailroom.test, Bob <bob@acme.test>",
                cc="sales@mailroom.test, carol@acme.test",
                subject="Re: Order 42",
                body="Any news?\n> old quote",
                in_reply_to="r29@acme.test",
                references=refs,
            ),
        )
        assert second.conversation.id == first.conversation.id
        return acc.id, first.conversation.id, second.message.id


def test_reply_and_reply_all_recipients(session_factory: SessionFactory) -> None:
    _, conv_id, msg_id = _thread(session_factory)
    with session_scope(session_factory) as s:
        reply = start_from_conversation(s, "reply", conv_id)
        assert reply.source is not None and reply.source.id == msg_id
        assert reply.to == [Address("Jane Doe", "jane@acme.test")] and reply.cc == []
        assert reply.subject == "Re: Order 42"
        everyone = start_from_conversation(s, "reply_all", conv_id)
        # Our own mailboxes (support@ and sales@) are never copied.
        assert [a.email for a in everyone.to] == ["jane@acme.test"]
        assert [a.email for a in everyone.cc] == ["bob@acme.test", "carol@acme.test"]
        fwd = start_from_conversation(s, "forward", conv_id)
        assert fwd.to == [] and fwd.subject.lower().startswith("fwd: ")


def test_reply_body_quotes_and_references_are_capped(session_factory: SessionFactory) -> None:
    _, _, msg_id = _thread(session_factory)
    with session_scope(session_factory) as s:
        built = build_body(s, "reply", msg_id, "Shipped today.", quote=True)
        assert built.in_reply_to == "m2@acme.test"
        assert built.references[0] == "r0@acme.test"  # the root is kept
        assert built.references[-1] == "m2@acme.test"
        assert len(built.references) <= 20
        assert built.text.startswith("Shipped today.\n")
        assert "> Any news?" in built.text and ">> old quote" in built.text
        bare = build_body(s, "reply", msg_id, "Shipped.", quote=False)
        assert ">" not in bare.text
        fwd = build_body(s, "forward", msg_id, "FYI", quote=False)
        assert fwd.in_reply_to is None and "Forwarded message" in fwd.text
        assert "Any news?" in fwd.text


def _submission(body: str = "Thanks!") -> Submission:
    return Submission(
        to=[Address("Jane", "jane@acme.test")],
        cc=[],
        bcc=[],
        subject="Re: Order 42",
        body=body,
        quote=True,
        from_account=None,
    )


def test_double_submit_enqueues_once(session_factory: SessionFactory) -> None:
    acc_id, conv_id, msg_id = _thread(session_factory)
    with session_scope(session_factory) as s:
        start = start_from_conversation(s, "reply", conv_id)
        meta = ComposeMeta(
            "reply", "abc.1@mailroom.test", acc_id, conv_id, msg_id, start.newest_seen
        )
    ids = []
    for _ in range(3):
        with session_scope(session_factory) as s:
            result = submit(s, meta, _submission(), user_id="UMEMBER", account=start.account)
            ids.append(result.outbox_id)
            assert result.held == [] and result.problem is None
    with session_scope(session_factory) as s:
        rows = s.scalars(select(Outbox).where(Outbox.kind == "mail.send")).all()
        assert len(rows) == 1 and ids == [rows[0].id] * 3
        row = rows[0]
        assert row.key == send_key("abc.1@mailroom.test")
        assert row.status == OutboxStatus.PENDING
        assert row.payload["in_reply_to"] == "m2@acme.test"
        assert row.payload["to"] == [{"name": "Jane", "email": "jane@acme.test"}]


def test_new_mail_after_open_holds_the_send(session_factory: SessionFactory) -> None:
    acc_id, conv_id, msg_id = _thread(session_factory)
    with session_scope(session_factory) as s:
        start = start_from_conversation(s, "reply", conv_id)
        meta = ComposeMeta(
            "reply", "abc.2@mailroom.test", acc_id, conv_id, msg_id, start.newest_seen
        )
        seed.ingest(
            s,
            start.account,
            seed.email(
                message_id="m3@acme.test",
                subject="Re: Order 42",
                body="Never mind, it arrived!",
                in_reply_to="m2@acme.test",
            ),
        )
    with session_scope(session_factory) as s:
        result = submit(s, meta, _submission(), user_id="UMEMBER", account=start.account)
        assert [a.snippet for a in result.held] == ["Never mind, it arrived!"]
        assert result.outbox_id is not None
        outbox_id = result.outbox_id
    with session_scope(session_factory) as s:
        assert s.get(Outbox, outbox_id).status == OutboxStatus.HELD  # type: ignore[union-attr]
        # A second submit of the same held draft shows the hold again, sends nothing.
        again = submit(s, meta, _submission(), user_id="UMEMBER", account=start.account)
        assert again.outbox_id == outbox_id and again.held
    with session_scope(session_factory) as s:
        row = release_held(s, outbox_id, "UMEMBER")
        assert row is not None and row.payload["send_anyway"] is True
        assert row.status == OutboxStatus.PENDING
        assert release_held(s, outbox_id, "UMEMBER") is None
        count = s.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == "mail.send"))
        assert count == 1
    assert cb.held_view(result.held, outbox_id)["blocks"]


def test_html_part_quotes_and_forwards_as_html(session_factory: SessionFactory) -> None:
    from tests.mail.htmlcheck import html_problems

    _, _, msg_id = _thread(session_factory)
    typed = "<div><strong>Shipped</strong> today.</div>"
    with session_scope(session_factory) as s:
        reply = build_body(s, "reply", msg_id, "*Shipped* today.", quote=True, typed_html=typed)
        assert reply.html is not None and html_problems(reply.html) == []
        head, _, quoted = reply.html.partition("<blockquote")
        assert typed in head and "wrote:" in head
        assert "Any news?<br>\n&gt; old quote</blockquote>" in quoted
        bare = build_body(s, "reply", msg_id, "x", quote=False, typed_html=typed)
        assert bare.html is not None and "<blockquote" not in bare.html
        fwd = build_body(s, "forward", msg_id, "FYI", quote=False, typed_html="<div>FYI</div>")
        assert fwd.html is not None and "Forwarded message" in fwd.html
        assert fwd.html.index("FYI") < fwd.html.index("Any news?")
        new = build_body(s, "new", None, "Hello", quote=False, typed_html="<div>Hello</div>")
        assert new.html is not None and new.html.startswith("<!DOCTYPE html>")
        plain = build_body(s, "reply", msg_id, "x", quote=True)
        assert plain.html is None  # no HTML given: a text-only email, as before
