"""Typing in the thread, signatures and kept drafts, in rich text: signed Slack requests → fake
Slack → store → real SMTP → the customer's Dovecot mailbox.

What arrives is multipart/alternative; its HTML passes the test-side allow-list check
(tests/mail/htmlcheck.py, independent of bot/mail/html_safe.py) and its text part reads as a
careful mail client would write it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.blocks.accounts import B_CHANNEL, B_SIGNATURE
from bot.store.db import session_scope
from bot.store.models import Account, ComposeDraft
from tests.compose.test_end_to_end import _inbox, _open, _parts
from tests.events.test_typed_reply import _click, _prompt, _replaced, _type
from tests.mail.htmlcheck import html_hrefs, html_problems, html_tags
from tests.mail.richsamples import every_element, rich, rlist, section, t

pytestmark = pytest.mark.dovecot

NOTES = "https://example.com/notes?a=1&b=2"


def _rich_entry(value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rich_text_input", "rich_text_value": value}


def test_typed_reply_with_formatting_arrives_as_html_and_text(
    mailroom: Any, box: dict[str, Any]
) -> None:
    # What Slack sends for a message typed with bold, a numbered list, a link and a mention:
    # `text` in mrkdwn and the same message as rich_text blocks.
    elements = [
        section(t("Hi Casey, "), t("the fix is out", bold=True), t(":\n")),
        rlist("ordered", 0, [t("Update to "), t("v2.1", code=True)], [t("Restart the widget")]),
        section(
            t("Details in the "),
            {"type": "link", "url": NOTES, "text": "release notes"},
            t(". Ask "),
            {"type": "user", "user_id": "UMEMBER"},
            t(" if it <still> fails."),
        ),
    ]
    _type(
        mailroom,
        box,
        "Hi Casey, *the fix is out*:\n1. Update to `v2.1`\n2. Restart the widget\n"
        f"Details in the <{NOTES.replace('&', '&amp;')}|release notes>. Ask <@UMEMBER> if it "
        "&lt;still&gt; fails.",
        rich=elements,
    )
    prompt = _prompt(mailroom)
    assert "Details in the release notes" in str(prompt["blocks"])  # the preview reads as mail
    _click(mailroom, prompt, ids.TYPED_SEND)
    _replaced(mailroom, prompt["ts"])
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    assert mail.get_content_type() == "multipart/alternative"
    assert mail["In-Reply-To"] == "<first@customer.test>"
    text, html = _parts(mail)
    assert text.startswith(
        "Hi Casey, *the fix is out*:\n\n"
        "1. Update to `v2.1`\n2. Restart the widget\n\n"
        f"Details in the release notes <{NOTES}>. Ask @Max Member if it <still> fails.\n"
    )
    assert "wrote:\n> My widget is broken." in text
    assert html_problems(html) == []
    assert "<strong>the fix is out</strong>" in html and "<ol" in html
    assert html_tags(html).count("li") == 2 and "<code" in html
    assert html_hrefs(html) == [NOTES]
    assert "@Max Member if it &lt;still&gt; fails." in html  # a name, escaped text
    assert "<blockquote" in html and "My widget is broken." in html
    # The "sent" post in the thread shows the same formatting, and pings nobody.
    sent = [
        m
        for m in mailroom.fake.thread("CINBOX", box["parent"]["ts"])
        if "Sent by" in m.get("text", "")
    ]
    assert len(sent) == 1
    (body,) = [b["text"]["text"] for b in sent[0]["blocks"] if b["type"] == "section"]
    assert "*the fix is out*" in body and "1. Update to `v2.1`" in body
    assert "Ask @Max Member if it &lt;still&gt; fails." in body and "<@" not in body
    assert mailroom.fake.ack_problems == []


def test_typed_reply_with_every_formatting_element_reads_as_the_modal_sends_it(
    mailroom: Any, box: dict[str, Any]
) -> None:
    # Issue #20: a reply typed in the thread goes out exactly as the modal's would (the same
    # message as tests/compose/test_richtext_end_to_end.py sends through the modal).
    _type(mailroom, box, "(Slack's mrkdwn of the same message)", rich=every_element()["elements"])
    prompt = _prompt(mailroom)
    _click(mailroom, prompt, ids.TYPED_SEND)
    _replaced(mailroom, prompt["ts"])
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    text, html = _parts(mail)
    assert html_problems(html) == []
    tags = set(html_tags(html))
    assert {"strong", "em", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a", "br"} <= tags
    assert html_hrefs(html) == ["https://example.com/help?a=1&b=2", "mailto:help@example.com"]
    assert "@Max Member" in html and "#inbox" in html and "👋🎉" in html
    assert text.startswith(
        "Hello @Max Member, here is *the fix* for _your_ ~old~ widget `v2.1`. See our guide "
        "<https://example.com/help?a=1&b=2> or write to help@example.com 👋🎉\n"
        "Second line, from #inbox.\n\n"
        "1. Unplug it\n2. Wait *ten* seconds\n   - really wait\n   - no cheating\n"
        "3. Plug it back in\n\n- Tea\n- Coffee\n\n"
        "    $ widget --reset\n    ok <done>\n\n"
        "> It works again\n> said everyone\n\nThanks,\nSam\n\n"
    )
    assert text.rstrip().endswith("> My widget is broken.")


def _edit_settings(mailroom: Any, box: dict[str, Any]) -> dict[str, Any]:
    acc_id = box["acc"].id
    mailroom.driver.event({"type": "app_home_opened", "user": "UADMIN", "tab": "home"})
    mailroom.fake.wait_until(lambda: mailroom.fake.home("UADMIN") is not None, timeout=10)
    home = mailroom.fake.home("UADMIN")
    before = len(mailroom.fake.calls_to("views.open"))
    mailroom.driver.block_action(
        "UADMIN",
        ids.HOME_ACCOUNT_MENU,
        view=home["id"],
        block_id=f"account_{acc_id}",
        selected_option={"text": {"type": "plain_text", "text": "Edit"}, "value": f"edit:{acc_id}"},
    )
    opened = mailroom.fake.wait_for("views.open", count=before + 1, timeout=10)
    loading = opened[-1].response["view"]
    mailroom.fake.wait_until(
        lambda: B_SIGNATURE in json.dumps(mailroom.fake.view(loading["id"]) or {}), timeout=10
    )
    edit: dict[str, Any] = mailroom.fake.view(loading["id"])
    return edit


def _block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(b for b in view["blocks"] if b.get("block_id") == block_id)
    return found


def test_rich_signature_with_a_variable_is_in_both_parts(
    mailroom: Any, box: dict[str, Any]
) -> None:
    edit = _edit_settings(mailroom, box)
    assert _block(edit, B_SIGNATURE)["element"]["type"] == "rich_text_input"
    base = {B_CHANNEL: {"v": "CINBOX"}, "acc_freq": {"v": "300"}}
    # A Jinja error is refused next to the field, in the admin's words.
    broken = rich(section(t("{{ agent.nmae }}", bold=True)))
    bad = mailroom.driver.view_submission(
        "UADMIN", edit["id"], {**base, B_SIGNATURE: {"v": _rich_entry(broken)}}
    )
    assert "agent.nmae" in bad.json()["errors"][B_SIGNATURE]
    signature = rich(
        section(
            t("{{ agent.name }}", bold=True),
            t("\nSupport team · "),
            {"type": "link", "url": "https://example.com/help", "text": "help centre"},
            t("\n"),
            {"type": "link", "url": "javascript:alert(1)", "text": "click me"},
        )
    )
    good = mailroom.driver.view_submission(
        "UADMIN", edit["id"], {**base, B_SIGNATURE: {"v": _rich_entry(signature)}}
    )
    assert good.status == 200 and good.body == ""
    mailroom.settle()  # settings and signature are written after the ack
    with session_scope(mailroom.services.session_factory) as s:
        stored = s.get_one(Account, box["acc"].id).signature_rich
    assert stored is not None and "javascript" not in json.dumps(stored)  # stored cleaned
    # The settings open again with the formatted signature in the editor.
    again = _block(_edit_settings(mailroom, box), B_SIGNATURE)["element"]["initial_value"]
    assert again["elements"][0]["elements"][0]["style"] == {"bold": True}

    # Sent from the modal: below what was typed, above the quote, in both parts.
    view = _open(mailroom, box, ids.CONV_REPLY)
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        view["id"],
        {
            cb.TO_BLOCK: {cb.VALUE: box["customer_addr"]},
            "subject_0": {cb.VALUE: "Re: Broken widget"},
            "body_0": {cb.VALUE: _rich_entry(rich(section(t("Fixed", italic=True))))},
            cb.QUOTE_BLOCK: {cb.VALUE: [cb.QUOTE_OPTION]},
        },
    )
    assert resp.status == 200 and resp.body == ""
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    text, html = _parts(mail)
    expected = (
        "_Fixed_\n\n-- \n*Max Member*\nSupport team · help centre <https://example.com/help>\n"
        "click me\n"
    )
    assert text.startswith(expected)
    assert text.index("click me") < text.index("> My widget is broken.")
    assert html_problems(html) == []
    assert "<em>Fixed</em>" in html and "-- </div>" in html
    assert "<strong>Max Member</strong>" in html
    assert html_hrefs(html) == ["https://example.com/help"] and "javascript" not in html
    assert html.index("Max Member") < html.index("<blockquote")

    # A reply typed in the thread carries the same signature, for the person who typed it.
    _type(mailroom, box, "On its way.")
    prompt = _prompt(mailroom)
    _click(mailroom, prompt, ids.TYPED_SEND)
    _replaced(mailroom, prompt["ts"])
    mailroom.run_outbox()
    typed = next(m for m in _inbox(box) if "On its way." in _parts(m)[0])
    text, html = _parts(typed)
    assert text.startswith("On its way.\n\n-- \n*Max Member*\nSupport team")
    assert "<strong>Max Member</strong>" in html and html_problems(html) == []
    assert mailroom.fake.ack_problems == []


def test_a_closed_modal_draft_keeps_its_formatting(mailroom: Any, box: dict[str, Any]) -> None:
    typed = rich(
        section(t("Half-written", bold=True), t(" answer, see "), t("steps", italic=True), t(":")),
        rlist("bullet", 0, [t("Unplug it")], [t("Wait "), t("ten", bold=True), t(" seconds")]),
    )
    view = _open(mailroom, box, ids.CONV_REPLY)
    closed = mailroom.driver.view_closed(
        "UMEMBER",
        view["id"],
        values={
            cb.TO_BLOCK: {cb.VALUE: box["customer_addr"]},
            "subject_0": {cb.VALUE: "Re: Broken widget"},
            "body_0": {cb.VALUE: _rich_entry(typed)},
        },
    )
    assert closed.status == 200

    def kept() -> list[ComposeDraft]:
        with session_scope(mailroom.services.session_factory) as s:
            return list(s.scalars(select(ComposeDraft)))

    mailroom.fake.wait_until(lambda: len(kept()) == 1, timeout=10)
    (draft,) = kept()
    assert draft.body.startswith("*Half-written* answer, see _steps_:\n\n- Unplug it\n")
    # Offered back formatted: the editor holds the bold, the italic and the list.
    again = _open(mailroom, box, ids.CONV_REPLY)
    offered = _block(again, "body_0")["element"]["initial_value"]
    assert offered == typed
    assert ids.COMPOSE_DISCARD_DRAFT in json.dumps(_block(again, cb.DRAFT_BLOCK))
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        again["id"],
        {
            cb.TO_BLOCK: {cb.VALUE: box["customer_addr"]},
            "subject_0": {cb.VALUE: "Re: Broken widget"},
            "body_0": {cb.VALUE: _rich_entry(offered)},
        },
    )
    assert resp.status == 200 and resp.body == ""
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    text, html = _parts(mail)
    assert text.startswith(
        "*Half-written* answer, see _steps_:\n\n- Unplug it\n- Wait *ten* seconds\n"
    )
    assert html_problems(html) == []
    assert "<strong>Half-written</strong>" in html and "<em>steps</em>" in html
    assert "<ul" in html and "<strong>ten</strong>" in html
    assert kept() == []  # sending spent the draft
    assert mailroom.fake.ack_problems == []
