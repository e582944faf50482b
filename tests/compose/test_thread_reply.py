"""The typed-in-a-thread service on SQLite and PostgreSQL: what counts as a person's message,
dedupe by event id and by channel + ts, and one outcome per draft."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.compose import thread_reply as tr
from bot.mail.richtext import (
    plain_to_rich_text,
    rich_text_append,
    rich_text_to_html_fragment,
    rich_text_to_text,
)
from bot.store.models import ConversationNote, SlackThread, ThreadDraft
from tests.compose import seed

PARENT = "1700000000.000100"


def _event(**extra: Any) -> dict[str, Any]:
    event = {
        "type": "message",
        "channel": "CINBOX",
        "user": "UMEMBER",
        "text": "Hello",
        "ts": "1700000001.000200",
        "thread_ts": PARENT,
    }
    event.update(extra)
    return event


def test_only_a_persons_message_in_a_thread_counts() -> None:
    assert tr.typed_message(_event()) is not None
    assert tr.typed_message(_event(subtype="file_share", files=[{"id": "F1"}])) is not None
    assert tr.typed_message(_event(subtype="thread_broadcast")) is not None
    for extra in (
        {"bot_id": "B1"},
        {"subtype": "bot_message"},
        {"subtype": "message_changed"},
        {"subtype": "message_deleted"},
        {"thread_ts": None},
        {"ts": PARENT},  # the parent itself
        {"text": "  "},
    ):
        assert tr.typed_message(_event(**extra)) is None, extra


def test_slack_text_becomes_email_text() -> None:
    text = "Hi <@U123|ann> &amp; team: <https://x.test/a|the doc>, <mailto:b@x.test|b@x.test> &lt;3"
    assert tr.plain_text(text) == "Hi @ann & team: the doc <https://x.test/a>, b@x.test <3"


def _conversation(session: Session) -> int:
    acc = seed.account(session)
    result = seed.ingest(session, acc, seed.email(message_id="a@acme.test"))
    session.add(SlackThread(conversation_id=result.conversation.id, channel_id="CINBOX", ts=PARENT))
    session.flush()
    return result.conversation.id


def test_a_message_is_one_draft_whatever_the_deliveries(session: Session) -> None:
    conv_id = _conversation(session)
    msg = tr.typed_message(_event())
    assert msg is not None
    draft = tr.record(session, msg, "Ev1")
    assert draft is not None and draft.conversation_id == conv_id
    assert tr.record(session, msg, "Ev1") is None  # the same event
    assert tr.record(session, msg, "Ev2") is None  # the same message, delivered again
    other = tr.typed_message(_event(ts="1700000002.000300", thread_ts="1600000000.000001"))
    assert other is not None and tr.record(session, other, "Ev3") is None  # not a conversation
    assert len(session.scalars(select(ThreadDraft)).all()) == 1
    who = tr.recipients(session, draft)
    assert who is not None and [a.email for a in who.reply] == ["jane@acme.test"]


def test_a_draft_is_sent_or_noted_once(session: Session) -> None:
    _conversation(session)
    msg = tr.typed_message(_event(text="Note this"))
    assert msg is not None
    draft = tr.record(session, msg, None)
    assert draft is not None
    first = tr.keep_as_note(session, draft.id, user_id="UMEMBER", author_name="Max")
    again = tr.keep_as_note(session, draft.id, user_id="UMEMBER", author_name="Max")
    sent = tr.send(session, draft.id, "reply", user_id="UMEMBER")
    assert (first.done, again.done, sent.done) == (True, False, False)
    assert sent.status == tr.NOTE
    assert [n.text for n in session.scalars(select(ConversationNote))] == ["Note this"]


def test_prompt_offers_reply_all_only_when_it_writes_to_more_people() -> None:
    _, blocks = cb.typed_prompt(7, "Hi", "Ann <ann@x.test>", None)
    actions = [e["action_id"] for e in blocks[1]["elements"]]
    assert actions == [ids.TYPED_SEND, ids.TYPED_EDIT, ids.TYPED_NOTE]
    assert {e["value"] for e in blocks[1]["elements"]} == {"7"}
    _, blocks = cb.typed_prompt(7, "Hi", "Ann <ann@x.test>", "Ann <ann@x.test>, bob@x.test")
    assert ids.TYPED_SEND_ALL in str(blocks) and "bob@x.test" in str(blocks)


def test_template_text_goes_below_what_was_typed() -> None:
    typed = {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [{"type": "text", "text": "Typed", "style": {"bold": True}}],
            }
        ],
    }
    added = plain_to_rich_text("Thanks!")
    both = rich_text_append(typed, added, blank_line=True)
    assert rich_text_to_text(both) == "*Typed*\n\nThanks!\n"  # the bold is kept
    assert "<strong>Typed</strong><br>\n<br>\nThanks!" in rich_text_to_html_fragment(both)
    assert rich_text_append(plain_to_rich_text(""), added, blank_line=True) == added
    assert rich_text_append(typed, plain_to_rich_text("  "), blank_line=True) == typed
    # Typed text ending in a line break gets just one more.
    ends = plain_to_rich_text("Typed\n")
    assert rich_text_to_text(rich_text_append(ends, added, blank_line=True)) == "Typed\n\nThanks!\n"
