"""The conversation builders: escaped, within Slack's limits, accepted by the fake's checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bot.blocks import ids
from bot.blocks.confirm import confirm_delete_modal, confirm_unlink_modal, parse_metadata
from bot.blocks.conversation import (
    Activity,
    ConversationCard,
    EmailCard,
    Person,
    chunks,
    fit,
    minimal_parent_message,
    parent_message,
    parse_open_value,
    parse_overflow_value,
    state_note,
    thread_email_message,
)
from bot.blocks.email_modal import AttachmentLine, EmailView, email_modal
from bot.blocks.link_client import (
    ClientChoice,
    client_options,
    link_client_modal,
    selected_client_id,
)
from tests.slackfake import validate_message, validate_options_response, validate_view
from tests.slackfake.validate import view_size

EVIL = "Hi <!channel> see <https://evil.example|bank> & <@U123>"
WHEN = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def card(**kw: Any) -> ConversationCard:
    base: dict[str, Any] = {
        "conversation_id": 7,
        "account_email": "support@example.com",
        "subject": "Invoice 42",
        "sender": Person("Ann Client", "ann@client.example"),
        "to": [Person("", "support@example.com")],
        "date": WHEN,
        "snippet": "Could you resend the invoice?",
    }
    base.update(kw)
    return ConversationCard(**base)


def all_text(payload: Any) -> str:
    return json.dumps(payload)


def mrkdwn_texts(payload: Any) -> list[str]:
    """Every mrkdwn text and the notification text: what Slack parses for links and mentions."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                out.append(node["text"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(payload.get("blocks"))
    if "text" in payload and isinstance(payload["text"], str):
        out.append(payload["text"])
    return out


def assert_no_injection(payload: Any) -> None:
    for text in mrkdwn_texts(payload):
        assert "<!channel>" not in text
        assert "<https://evil" not in text
        assert "<@U123>" not in text


def action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    found = []
    for b in blocks:
        for el in b.get("elements", []) if b["type"] == "actions" else []:
            found.append(el["action_id"])
        if isinstance(b.get("accessory"), dict):
            found.append(b["accessory"]["action_id"])
        if b["type"] == "input":
            found.append(b["element"]["action_id"])
    return found


def test_parent_message_is_valid_and_offers_the_actions() -> None:
    msg = parent_message(card())
    assert validate_message(msg) == (None, [])
    assert msg["unfurl_links"] is False and msg["unfurl_media"] is False
    ids_ = action_ids(msg["blocks"])
    # Archive ("Done") is a top-level button; Reply all moved to the overflow.
    assert ids_ == [
        ids.CONV_OPEN,
        ids.CONV_REPLY,
        ids.CONV_ARCHIVE,
        ids.CONV_FORWARD,
        ids.CONV_MORE,
    ]
    overflow = msg["blocks"][-1]["elements"][-1]
    values = [o["value"] for o in overflow["options"]]
    assert values == ["conv_reply_all:7", "conv_delete:7", "conv_link:7"]
    text = all_text(msg)
    assert "Invoice 42" in text and "support@example.com" in text and "Unread" in text


def test_parent_shows_state_and_switches_menu_entries() -> None:
    msg = parent_message(card(archived=True, unread=False, client_name="Acme Ltd"))
    assert ids.CONV_UNARCHIVE in action_ids(msg["blocks"])
    overflow = msg["blocks"][-1]["elements"][-1]
    values = [o["value"] for o in overflow["options"]]
    assert values == [
        "conv_reply_all:7",
        "conv_mark_unread:7",
        "conv_delete:7",
        "conv_link:7",
        "conv_unlink:7",
    ]
    text = all_text(msg)
    assert "Archived" in text and "Acme Ltd" in text and "Read" in text
    assert validate_message(msg) == (None, [])


def test_untrusted_text_is_escaped_everywhere() -> None:
    evil = Person(EVIL, "x@evil.example")
    msg = parent_message(card(subject=EVIL, sender=evil, snippet=EVIL, client_name=EVIL))
    assert_no_injection(msg)
    assert "&lt;!channel&gt;" in all_text(msg)
    email = thread_email_message(EmailCard(7, 9, evil, [evil], body=EVIL, attachment_names=[EVIL]))
    assert_no_injection(email)
    view = email_modal(
        EmailView(
            7, 9, EVIL, evil, [evil], body=EVIL, attachments=[AttachmentLine(EVIL, "text/plain", 3)]
        )
    )
    assert_no_injection(view)
    assert validate_view(view) == []


def test_long_bodies_fit_sections_and_offer_open() -> None:
    body = "line with & and <tag>\n" * 5000  # ~110k chars, entities everywhere
    email = thread_email_message(EmailCard(7, 9, Person("A", "a@x"), body=body))
    assert validate_message(email) == (None, [])
    sections = [b for b in email["blocks"] if b["type"] == "section"]
    assert len(sections) == 10 and all(len(b["text"]["text"]) <= 3000 for b in sections)
    assert "Open full email" in all_text(email["blocks"][-2])
    assert email["blocks"][-1]["elements"][0]["text"]["text"] == "Open full email"
    assert parse_open_value(email["blocks"][-1]["elements"][0]["value"]) == (7, 9)

    view = email_modal(EmailView(7, 9, "s", Person("A", "a@x"), body=body))
    assert validate_view(view) == []
    assert len(view["blocks"]) <= 100
    assert view_size(view) < 250_000
    assert "too long to show in full" in all_text(view)


def test_modal_shows_a_whole_medium_body_across_sections() -> None:
    body = "\n".join(f"paragraph {i}: " + "x" * 80 for i in range(300))  # ~27k chars
    view = email_modal(EmailView(7, 9, "s", Person("A", "a@x"), body=body))
    assert validate_view(view) == []
    shown = "".join(b["text"]["text"] for b in view["blocks"][2:] if b["type"] == "section")
    assert "paragraph 0:" in shown and "paragraph 299:" in shown
    assert "too long" not in all_text(view)


def test_fit_and_chunks_never_split_an_entity() -> None:
    for n in range(1, 40):
        cut = fit("&" * 100, n)
        assert len(cut) <= n
        assert "&am…" not in cut and not cut.rstrip("…").endswith(("&", "&a", "&am"))
    pieces = chunks("a&b" * 3000, 3000)
    assert all(len(p) <= 3000 for p in pieces)
    assert "".join(pieces) == "a&amp;b" * 3000


def test_overflow_and_open_values_round_trip() -> None:
    assert parse_overflow_value("conv_archive:12") == (ids.CONV_ARCHIVE, 12)
    assert parse_overflow_value("rm -rf:12") is None
    assert parse_overflow_value("conv_archive:x") is None
    assert parse_open_value("12") == (12, None)
    assert parse_open_value("12:5") == (12, 5)
    assert parse_open_value("x") is None


def test_state_note_and_confirmations_are_valid() -> None:
    note = state_note("archive", "Max Member")
    assert note["text"] == "Max Member archived this conversation"
    assert validate_message(note) == (None, [])
    linked = state_note("link", "U1", "<!here> Co")
    assert_no_injection({"blocks": linked["blocks"]})
    for view in (
        confirm_delete_modal(3, EVIL, "C1"),
        confirm_unlink_modal(3, EVIL, EVIL, "C1"),
    ):
        assert validate_view(view) == []
        assert parse_metadata(view["private_metadata"]) == (3, "C1")
        assert_no_injection(view)
    assert parse_metadata("garbage") is None
    assert parse_metadata('{"conversation_id": "3"}') is None


def test_link_modal_and_options() -> None:
    view = link_client_modal(3, "Hello", ClientChoice(5, "Acme", "Acme Ltd"), "C1")
    assert validate_view(view) == []
    select = view["blocks"][1]["element"]
    assert select["type"] == "external_select" and select["action_id"] == ids.LINK_CLIENT_SELECT
    assert select["initial_option"]["value"] == "5"
    many = [ClientChoice(i, "N" * 200, "C" * 200) for i in range(150)]
    opts = client_options(many)
    assert len(opts["options"]) == 100
    assert validate_options_response(opts) == []
    view["state"] = {
        "values": {
            "link_client_block": {
                ids.LINK_CLIENT_SELECT: {
                    "type": "external_select",
                    "selected_option": {"value": "5"},
                }
            }
        }
    }
    assert selected_client_id(view) == 5
    assert selected_client_id({"state": {"values": {}}}) is None


def test_parent_head_is_capped_after_escaping() -> None:
    """Finding #7: a From name and address full of "&" grow 5x when escaped."""
    amp = Person("&" * 2000, "&" * 1000 + "@x.example")
    msg = parent_message(card(sender=amp, to=[amp] * 20, cc=[amp] * 20, subject="&" * 3000))
    assert validate_message(msg) == (None, [])
    assert len(msg["blocks"][0]["text"]["text"]) <= 3000


def test_state_line_names_people_without_mentions() -> None:
    msg = parent_message(
        card(
            archived=True,
            unread=False,
            client_name="Acme",
            read_by=Activity("read", "UMAX", "Max <Member>"),
            state_by=Activity("archive", "UANN", "Ann Lee"),
            linked_by=Activity("link", "UBOB", "Bob"),
        )
    )
    text = all_text(msg)
    assert "Read by Max &lt;Member&gt;" in text and "Archived by Ann Lee" in text
    assert "(linked by Bob)" in text and "<@" not in text
    back = parent_message(card(state_by=Activity("returned")))
    assert "Back in the inbox" in all_text(back)


def test_trashed_conversation_offers_no_reply() -> None:
    msg = parent_message(card(deleted=True))
    found = action_ids(msg["blocks"])
    assert ids.CONV_REPLY not in found and ids.CONV_FORWARD not in found
    assert ids.CONV_ARCHIVE not in found and ids.CONV_OPEN in found
    overflow = msg["blocks"][-1]["elements"][-1]
    assert [o["value"] for o in overflow["options"]] == ["conv_link:7"]
    assert validate_message(msg) == (None, [])


def test_each_thread_email_has_its_own_buttons_and_sender_by_name() -> None:
    sent = thread_email_message(
        EmailCard(
            7,
            9,
            Person("Support", "support@example.com"),
            [Person("Ann", "ann@client.example")],
            body="We fixed it.",
            outbound=True,
            sent_by="UMAX",
            sent_by_name="Max Member",
        )
    )
    assert validate_message(sent) == (None, [])
    buttons = sent["blocks"][-1]["elements"]
    assert [b["action_id"] for b in buttons] == [
        ids.CONV_OPEN,
        ids.CONV_REPLY,
        ids.CONV_REPLY_ALL,
        ids.CONV_FORWARD,
    ]
    assert {b["value"] for b in buttons} == {"7:9"}
    text = all_text(sent)
    assert "Sent by Max Member" in text and "<@" not in text and "We fixed it." in text


def test_minimal_parent_is_valid() -> None:
    msg = minimal_parent_message(7, "&" * 5000)
    assert validate_message(msg) == (None, [])
    assert action_ids(msg["blocks"]) == [ids.CONV_OPEN]


def test_modal_steps_to_previous_and_next() -> None:
    view = email_modal(
        EmailView(
            7, 9, "s", Person("A", "a@x"), body="b", position=2, total=3, previous_id=4, next_id=11
        )
    )
    assert validate_view(view) == []
    steps = next(b for b in view["blocks"] if b.get("block_id") == "email_steps")["elements"]
    assert [(b["action_id"], b["value"]) for b in steps] == [
        (ids.EMAIL_PREV, "7:4"),
        (ids.EMAIL_NEXT, "7:11"),
    ]
    first = email_modal(EmailView(7, 4, "s", Person("A", "a@x"), total=3, next_id=9))
    steps = next(b for b in first["blocks"] if b.get("block_id") == "email_steps")["elements"]
    assert [b["value"] for b in steps] == ["7:9"]
