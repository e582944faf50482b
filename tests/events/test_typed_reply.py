"""Typing in a conversation's thread: signed events and clicks → fake Slack → store → real SMTP
→ the customer's Dovecot mailbox."""

from __future__ import annotations

import json
from html import unescape
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.blocks import ids
from bot.store.db import session_scope
from bot.store.models import (
    Client,
    ConversationLink,
    ConversationNote,
    LinkMethod,
    Outbox,
    ThreadDraft,
)
from tests.compose.test_end_to_end import _inbox, _parts

pytestmark = pytest.mark.dovecot


def _type(
    mailroom: Any,
    box: dict[str, Any],
    text: str,
    *,
    user: str = "UMEMBER",
    rich: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A person posts in the conversation's thread; Slack sends the message event: `text` as
    Slack writes it (mrkdwn, escaped) and its rich_text block (`rich`: its elements; by default
    one paragraph holding the text, unescaped as Slack's rich text is)."""
    if rich is None:
        rich = [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": unescape(text)}]}
        ]
    msg = mailroom.fake.add_message("CINBOX", user, text, thread_ts=box["parent"]["ts"])
    event = {
        "type": "message",
        "channel": "CINBOX",
        "channel_type": "channel",
        "user": user,
        "text": text,
        "ts": msg["ts"],
        "thread_ts": box["parent"]["ts"],
        "blocks": [{"type": "rich_text", "block_id": "rt", "elements": rich}],
        **extra,
    }
    assert mailroom.driver.event(event).status == 200
    return event


def _prompt(mailroom: Any, count: int = 1) -> dict[str, Any]:
    mailroom.fake.wait_for("chat.postEphemeral", count=count, timeout=10)
    prompt: dict[str, Any] = mailroom.fake.ephemerals[-1]
    return prompt


def _click(mailroom: Any, prompt: dict[str, Any], action_id: str, user: str = "UMEMBER") -> None:
    value = next(
        e["value"]
        for b in prompt["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == action_id
    )
    resp = mailroom.driver.block_action(user, action_id, value, channel_id="CINBOX", message=prompt)
    assert resp.status == 200


def _replaced(mailroom: Any, ts: str, times: int = 1) -> dict[str, Any]:
    def done() -> bool:
        return any(
            e["ts"] == ts and e.get("replaced", 0) >= times for e in mailroom.fake.ephemerals
        )

    mailroom.fake.wait_until(done, timeout=10)
    found: dict[str, Any] = next(e for e in mailroom.fake.ephemerals if e["ts"] == ts)
    return found


def test_typed_reply_sent_once_with_threading_headers(mailroom: Any, box: dict[str, Any]) -> None:
    event = _type(mailroom, box, "Hi Casey &amp; team, a new widget is on its way.")
    # Slack delivers again (a retry with a new event id for the same message): one draft.
    assert mailroom.driver.event(dict(event)).status == 200
    prompt = _prompt(mailroom)
    assert prompt["user"] == "UMEMBER" and prompt["thread_ts"] == box["parent"]["ts"]
    assert f"Send as reply to Casey Customer <{box['customer_addr']}>" in str(prompt["blocks"])
    with session_scope(mailroom.services.session_factory) as s:
        (draft,) = s.scalars(select(ThreadDraft)).all()
        assert draft.rich_text[0]["type"] == "rich_text" and draft.user_id == "UMEMBER"
        message_id = draft.message_id
    # Someone else cannot act on it, even by sending the click directly.
    _click(mailroom, prompt, ids.TYPED_SEND, user="UADMIN")
    assert "Only the person who wrote" in str(_replaced(mailroom, prompt["ts"])["blocks"])
    _click(mailroom, prompt, ids.TYPED_SEND)
    _click(mailroom, prompt, ids.TYPED_SEND)  # a double click
    done = _replaced(mailroom, prompt["ts"], times=3)
    assert "already sent" in done["text"] or "Sending" in done["text"]
    with session_scope(mailroom.services.session_factory) as s:
        assert (
            s.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == "mail.send"))
            == 1
        )
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    assert mail["In-Reply-To"] == "<first@customer.test>"
    assert mail["References"].split() == ["<root@customer.test>", "<first@customer.test>"]
    text, _html = _parts(mail)
    assert "Hi Casey & team, a new widget is on its way." in text
    assert "> My widget is broken." in text
    # The sent email shows in the thread, once, in full, after the server accepted it.
    mailroom.run_outbox()
    thread = mailroom.fake.thread("CINBOX", box["parent"]["ts"])
    sent = [m for m in thread if "a new widget is on its way" in json.dumps(m.get("blocks"))]
    assert len(sent) == 1 and "Max Member" in json.dumps(sent[0]["blocks"])
    assert message_id  # the draft's Message-ID is the send's key (one send)
    assert mailroom.fake.ack_problems == []


def test_files_typed_with_the_message_go_along(mailroom: Any, box: dict[str, Any]) -> None:
    shared = mailroom.fake.add_file("invoice.pdf", b"%PDF fake", "application/pdf", user="UMEMBER")
    _type(mailroom, box, "Invoice attached.", subtype="file_share", files=[shared])
    prompt = _prompt(mailroom)
    _click(mailroom, prompt, ids.TYPED_SEND)
    _replaced(mailroom, prompt["ts"])
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    files = {p.get_filename(): p.get_payload(decode=True) for p in mail.walk() if p.get_filename()}
    assert files == {"invoice.pdf": b"%PDF fake"}


def test_internal_note_sends_nothing_and_is_found_and_shown(
    mailroom: Any, box: dict[str, Any]
) -> None:
    with session_scope(mailroom.services.session_factory) as s:
        acme = Client(name="Casey Corp")
        s.add(acme)
        s.flush()
        s.add(
            ConversationLink(
                conversation_id=box["conv"], client_id=acme.id, method=LinkMethod.MANUAL
            )
        )
    _type(mailroom, box, "Checked the warehouse: zanzibar batch is faulty.")
    prompt = _prompt(mailroom)
    _click(mailroom, prompt, ids.TYPED_NOTE)
    assert "internal note" in _replaced(mailroom, prompt["ts"])["text"]
    _click(mailroom, prompt, ids.TYPED_SEND)  # too late: it is a note now
    assert "already kept" in _replaced(mailroom, prompt["ts"], times=2)["text"]
    mailroom.run_outbox()
    assert _inbox(box) == []
    with session_scope(mailroom.services.session_factory) as s:
        (note,) = s.scalars(select(ConversationNote)).all()
        assert (note.conversation_id, note.author) == (box["conv"], "UMEMBER")
        assert note.text == "Checked the warehouse: zanzibar batch is faulty."
        assert s.scalars(select(Outbox).where(Outbox.kind == "mail.send")).all() == []
    before = len(mailroom.fake.responses)
    mailroom.driver.command(text="search zanzibar", user_id="UMEMBER")
    mailroom.fake.wait_until(lambda: len(mailroom.fake.responses) > before, timeout=10)
    found = str(mailroom.fake.responses[-1].body)
    assert "Broken widget" in found and "zanzibar batch is faulty" in found
    mailroom.driver.command(text="search zanzibar", user_id="UOUTSIDER")
    mailroom.fake.wait_until(lambda: len(mailroom.fake.responses) > before + 1, timeout=10)
    assert "batch is faulty" not in str(mailroom.fake.responses[-1].body)
    mailroom.driver.command(text="client Casey Corp", user_id="UMEMBER")
    mailroom.fake.wait_until(lambda: len(mailroom.fake.responses) > before + 2, timeout=10)
    timeline = str(mailroom.fake.responses[-1].body)
    assert "Timeline of Casey Corp" in timeline and "zanzibar batch is faulty" in timeline


@pytest.mark.parametrize(
    "extra",
    [
        {"bot_id": "B999", "subtype": "bot_message"},
        {"subtype": "message_changed"},
        {"subtype": "message_deleted"},
        {"thread_ts": None},  # not in a thread
    ],
    ids=["bot", "edit", "deletion", "top-level"],
)
def test_bots_edits_and_other_messages_prompt_nobody(
    mailroom: Any, box: dict[str, Any], extra: dict[str, Any]
) -> None:
    event = {
        "type": "message",
        "channel": "CINBOX",
        "user": "UMEMBER",
        "text": "Something",
        "ts": "1799999999.000100",
        "thread_ts": box["parent"]["ts"],
    }
    event.update(extra)
    if event["thread_ts"] is None:
        del event["thread_ts"]
    assert mailroom.driver.event(event).status == 200
    # A message in a thread that is no conversation's: nobody is asked either.
    other = dict(event, ts="1799999999.000200", thread_ts="1700000000.000001")
    other.pop("subtype", None)
    other.pop("bot_id", None)
    assert mailroom.driver.event(other).status == 200
    # Then a real typed message is prompted: the ones before were dropped, not delayed.
    _type(mailroom, box, "Real one")
    _prompt(mailroom)
    assert len(mailroom.fake.calls_to("chat.postEphemeral")) == 1
    with session_scope(mailroom.services.session_factory) as s:
        assert [d.text for d in s.scalars(select(ThreadDraft))] == ["Real one"]


def test_edit_first_opens_the_reply_with_the_text_and_sends_it_once(
    mailroom: Any, box: dict[str, Any]
) -> None:
    link = {"type": "link", "url": "https://example.com/track", "text": "track it here"}
    _type(
        mailroom,
        box,
        "*Hi Casey*, <https://example.com/track|track it here>.",
        rich=[
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "text", "text": "Hi Casey", "style": {"bold": True}},
                    {"type": "text", "text": ", "},
                    link,
                    {"type": "text", "text": "."},
                ],
            }
        ],
    )
    prompt = _prompt(mailroom)
    _click(mailroom, prompt, ids.TYPED_EDIT)
    mailroom.fake.wait_until(lambda: mailroom.fake.modal_stack("UMEMBER"), timeout=10)
    view = mailroom.fake.modal_stack("UMEMBER")[-1]
    body = next(b for b in view["blocks"] if b.get("block_id") == "body_0")
    # The rich text editor opens with what was typed, formatting and link included.
    assert body["element"]["type"] == "rich_text_input"
    (section,) = body["element"]["initial_value"]["elements"]
    assert section["elements"][0] == {"type": "text", "text": "Hi Casey", "style": {"bold": True}}
    assert link in section["elements"]
    to = next(b for b in view["blocks"] if b.get("block_id") == "to")["element"]["initial_value"]
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        view["id"],
        {
            "to": {"value": to},
            "subject_0": {"value": "Re: Broken widget"},
            "body_0": {"value": "Hi Casey, tracking: https://example.com/track"},
        },
    )
    assert resp.status == 200 and resp.body == ""
    _click(mailroom, prompt, ids.TYPED_SEND)  # the button after the modal: already sent
    assert "already sent" in _replaced(mailroom, prompt["ts"])["text"]
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    assert "tracking: https://example.com/track" in _parts(mail)[0]
    with session_scope(mailroom.services.session_factory) as s:
        (draft,) = s.scalars(select(ThreadDraft)).all()
        assert draft.status == "sent" and mail["Message-ID"] == f"<{draft.message_id}>"


def test_mail_arriving_after_typing_holds_the_send(mailroom: Any, box: dict[str, Any]) -> None:
    from bot.store.ingest import ingest_message
    from bot.store.models import Account
    from tests.compose import seed

    _type(mailroom, box, "Sending a replacement.")
    prompt = _prompt(mailroom)
    with session_scope(mailroom.services.session_factory) as s:
        ingest_message(
            s,
            s.get_one(Account, box["acc"].id),
            seed.email(
                message_id="second@customer.test",
                sender=f"Casey <{box['customer_addr']}>",
                subject="Re: Broken widget",
                body="Never mind, it works now.",
                in_reply_to="first@customer.test",
            ),
        )
    _click(mailroom, prompt, ids.TYPED_SEND)
    held = _replaced(mailroom, prompt["ts"])
    assert "Never mind, it works now." in str(held["blocks"])
    assert ids.SEND_ANYWAY in str(held["blocks"])
    mailroom.run_outbox()
    assert _inbox(box) == []


def test_typed_reply_carries_the_mailbox_signature(mailroom: Any, box: dict[str, Any]) -> None:
    from bot.store.models import Account

    with session_scope(mailroom.services.session_factory) as s:
        s.get_one(
            Account, box["acc"].id
        ).signature = "Best, {{ agent.first_name }} (for {{ contact.first_name }})"
    _type(mailroom, box, "Fixed on our side.")
    prompt = _prompt(mailroom)
    _click(mailroom, prompt, ids.TYPED_SEND)
    _replaced(mailroom, prompt["ts"])
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    text, html = _parts(mail)
    assert "Fixed on our side.\n\n-- \nBest, Max (for Casey)\n" in text
    assert "-- </div>" in html and "Best, Max (for Casey)" in html
