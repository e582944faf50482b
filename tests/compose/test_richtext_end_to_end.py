"""Rich text through the modal: signed Slack requests → fake Slack → real SMTP → Dovecot.

The received email is multipart/alternative; its HTML passes an allow-list check made with the
stdlib html.parser (tests/mail/htmlcheck.py) and its text part reads naturally.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.blocks import templates as tb
from bot.mail.richtext import rich_text_to_text
from bot.store.db import session_scope
from bot.store.templates import list_templates
from tests.compose.test_end_to_end import _inbox, _open, _parts, _thread_texts, box  # noqa: F401
from tests.mail.htmlcheck import html_hrefs, html_problems, html_tags
from tests.mail.richsamples import every_element, rich, rlist, section, t

pytestmark = pytest.mark.dovecot


def _rich_entry(value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rich_text_input", "rich_text_value": value}


def test_every_formatting_element_arrives_as_html_and_text(
    mailroom: Any,
    box: dict[str, Any],  # noqa: F811
) -> None:
    view = _open(mailroom, box, ids.CONV_REPLY)
    body_block = next(b for b in view["blocks"] if b.get("block_id") == "body_0")
    assert body_block["element"]["type"] == "rich_text_input"
    values = {
        cb.TO_BLOCK: {cb.VALUE: box["customer_addr"]},
        "subject_0": {cb.VALUE: "Re: Broken widget"},
        "body_0": {cb.VALUE: _rich_entry(every_element())},
        cb.QUOTE_BLOCK: {cb.VALUE: [cb.QUOTE_OPTION]},
    }
    resp = mailroom.driver.view_submission("UMEMBER", view["id"], values)
    assert resp.status == 200 and resp.body == ""
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    assert mail.get_content_type() == "multipart/alternative"
    text, html = _parts(mail)

    assert html_problems(html) == []
    tags = set(html_tags(html))
    assert {"strong", "em", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a", "br"} <= tags
    assert html_hrefs(html) == ["https://example.com/help?a=1&b=2", "mailto:help@example.com"]
    assert "@Max Member" in html and "#inbox" in html and "👋🎉" in html
    # The quoted original: a blockquote after what was typed, under its attribution line.
    assert re.search(r"wrote:</div>\s*<blockquote[^>]*>My widget is broken\.</blockquote>", html)

    assert text.startswith(
        "Hello @Max Member, here is *the fix* for _your_ ~old~ widget `v2.1`. See our guide "
        "<https://example.com/help?a=1&b=2> or write to help@example.com 👋🎉\n"
        "Second line, from #inbox.\n\n"
        "1. Unplug it\n2. Wait *ten* seconds\n   - really wait\n   - no cheating\n"
        "3. Plug it back in\n\n- Tea\n- Coffee\n\n"
        "    $ widget --reset\n    ok <done>\n\n"
        "> It works again\n> said everyone\n\nThanks,\nSam\n\n"
    )
    assert re.search(r"wrote:\n> My widget is broken\.\n$", text)

    # The "sent" post in the thread shows the same formatting as mrkdwn.
    sent = [
        m
        for m in mailroom.fake.thread("CINBOX", box["parent"]["ts"])
        if "Sent by" in m.get("text", "")
    ]
    assert len(sent) == 1
    shown = str(sent[0]["blocks"])
    assert "*the fix*" in shown and "<https://example.com/help?a=1&amp;b=2|our guide>" in shown
    assert "1. Unplug it" in shown and "◦ really wait" in shown and "```" in shown
    # Named, never mentioned (issue 14: quiet by default); nothing in it pings anyone.
    assert "Sent by Max Member" in sent[0]["text"], sent[0]["text"]
    assert not re.search(r"<@|<!(channel|here|everyone)", shown), shown
    assert mailroom.fake.ack_problems == []


def test_a_reply_of_ten_thousand_characters_is_sent_whole(
    mailroom: Any,
    box: dict[str, Any],  # noqa: F811
) -> None:
    lines = [f"Line {i:04d}: " + "lorem ipsum dolor sit amet " * 3 for i in range(123)]
    long_text = "\n".join(lines)[:10_000]
    assert len(long_text) == 10_000
    view = _open(mailroom, box, ids.CONV_REPLY)
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        view["id"],
        {
            cb.TO_BLOCK: {cb.VALUE: box["customer_addr"]},
            "subject_0": {cb.VALUE: "Re: Broken widget"},
            "body_0": {cb.VALUE: long_text},  # the driver sends it as rich_text_value
        },
    )
    assert resp.status == 200 and resp.body == ""
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    text, html = _parts(mail)
    assert text.startswith(long_text.rstrip())
    assert html_problems(html) == []
    assert html.count("Line ") == long_text.count("Line ") == 108
    assert long_text[-40:] in html
    assert mailroom.fake.ack_problems == []


def _save_template(mailroom: Any, name: str, subject: str, body: dict[str, Any]) -> Any:
    mailroom.driver.block_action("UADMIN", ids.HOME_TEMPLATE_NEW, channel_id="CINBOX")
    mailroom.fake.wait_until(lambda: mailroom.fake.modal_stack("UADMIN"), timeout=10)
    modal = mailroom.fake.modal_stack("UADMIN")[-1]
    body_input = next(b for b in modal["blocks"] if b.get("block_id") == tb.BODY_BLOCK)
    assert body_input["element"]["type"] == "rich_text_input"
    resp = mailroom.driver.view_submission(
        "UADMIN",
        modal["id"],
        {
            tb.NAME_BLOCK: {tb.VALUE: name},
            tb.SUBJECT_BLOCK: {tb.VALUE: subject},
            tb.BODY_BLOCK: {tb.VALUE: _rich_entry(body)},
        },
    )
    assert resp.status == 200 and resp.body == "", resp.body
    mailroom.settle()  # the template is written after the ack
    with session_scope(mailroom.services.session_factory) as s:
        return next(tpl for tpl in list_templates(s) if tpl.name == name)


def _pick_and_send(mailroom: Any, where: dict[str, Any], template_id: int, typed: str) -> Any:
    """Open a reply, type something, insert the template, send what the modal then shows."""
    view = _open(mailroom, where, ids.CONV_REPLY, user="UADMIN")
    typed_state = {"body_0": {cb.VALUE: typed}}
    mailroom.driver.block_action(
        "UADMIN", ids.COMPOSE_TEMPLATE_PICK, str(template_id), view=view["id"], state=typed_state
    )
    mailroom.fake.wait_for("views.update", timeout=10)
    filled = mailroom.fake.view(view["id"])
    body = next(b for b in filled["blocks"] if b.get("block_id") == "body_1")
    initial = body["element"]["initial_value"]
    resp = mailroom.driver.view_submission(
        "UADMIN",
        view["id"],
        {
            cb.TO_BLOCK: {cb.VALUE: where["customer_addr"]},
            "subject_1": {cb.VALUE: "Re: Broken widget"},
            "body_1": {cb.VALUE: _rich_entry(initial)},
        },
    )
    assert resp.status == 200 and resp.body == "", resp.body
    mailroom.run_outbox()
    (mail,) = _inbox(where)
    return initial, mail


def test_template_with_formatting_and_variables_renders_into_both_parts(
    mailroom: Any,
    box: dict[str, Any],  # noqa: F811
) -> None:
    body = rich(
        section(t("Hi "), t("{{ contact.first_name }}", bold=True), t(",\n")),
        rlist("ordered", 0, [t("Open "), t("Settings", italic=True)], [t("Press Reset")]),
        section(
            t("See "),
            {"type": "link", "url": "https://help.test/reset", "text": "the reset guide"},
            t(" for {{ thread.subject }}.\n— {{ agent.name }}"),
        ),
    )
    tpl = _save_template(mailroom, "Reset steps", "", body)
    initial, mail = _pick_and_send(mailroom, box, tpl.id, "Sorry for the trouble.")
    # Insertion kept what was typed and added the template after it.
    assert rich_text_to_text(initial).startswith("Sorry for the trouble.\n\nHi *Casey*,\n")
    text, html = _parts(mail)
    assert html_problems(html) == []
    assert "<strong>Casey</strong>" in html and "<em>Settings</em>" in html
    assert "<ol" in html and html_hrefs(html) == ["https://help.test/reset"]
    assert text.startswith(
        "Sorry for the trouble.\n\nHi *Casey*,\n\n1. Open _Settings_\n2. Press Reset\n\n"
        "See the reset guide <https://help.test/reset> for Broken widget.\n— Ada Admin\n"
    )


def test_a_hostile_template_sends_none_of_its_tricks(
    mailroom: Any,
    box: dict[str, Any],  # noqa: F811
) -> None:
    body = rich(
        section(t('<script>alert("x")</script>Hello {{ contact.first_name }}')),
        section(t('<style>p { background: url("https://evil.test/track.png") }</style>')),
        section(t('<p style="background-image:url(https://evil.test/t.png)">styled</p>')),
        section({"type": "link", "url": "javascript:alert(1)", "text": "click me"}),
        section({"type": "link", "url": "JAVASCRIPT:alert(2)"}),
        section(t('<img src="https://evil.test/pixel.gif">{{ "<img src=x onerror=alert(1)>" }}')),
        section(t('<a href="javascript:alert(3)">raw link</a>', bold=True)),
        {"type": "image", "image_url": "https://evil.test/img.png", "alt_text": "x"},
        section({"type": "emoji", "name": "x", "unicode": "3c-73-63"}),  # "<sc" as "emoji"
    )
    tpl = _save_template(mailroom, "Tricks", "", body)
    with session_scope(mailroom.services.session_factory) as s:
        from bot.store.models import Template

        stored = s.get_one(Template, tpl.id).body_rich
    assert stored is not None
    # Stored cleaned: no image element, and a javascript: link is kept only as its text.
    assert {e["type"] for e in stored["elements"]} == {"rich_text_section"}
    links = [e for sec in stored["elements"] for e in sec["elements"] if e["type"] == "link"]
    assert links == []
    _, mail = _pick_and_send(mailroom, box, tpl.id, "")
    text, html = _parts(mail)
    assert html_problems(html) == []
    assert set(html_tags(html)) <= {"html", "head", "meta", "body", "div", "strong"}
    # No script, style, image or link element, no href at all, no style attribute with url()
    # (html_problems): what the author typed is there only as escaped, visible text.
    lowered = html.lower()
    for trick in ("<script", "<style", "<img", "<a ", "<p "):
        assert trick not in lowered, trick
    assert html_hrefs(html) == []
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # What the author wrote still shows, as text.
    assert "&lt;script&gt;" in html and "Hello Casey" in html and "click me" in html
    assert "<script>" in text and "click me" in text
    for part in mail.walk():
        assert part.get_content_maintype() in ("multipart", "text")  # no image parts
