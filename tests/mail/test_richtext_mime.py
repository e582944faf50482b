"""build_mime with an HTML part: multipart/alternative, sanitized, headers still checked."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from bot.mail.compose import Draft, HeaderError, OutgoingAttachment, build_mime
from bot.mail.richtext import rich_text_to_email
from bot.mail.types import Address
from tests.mail.htmlcheck import html_problems
from tests.mail.richsamples import every_element


def _draft(**kw: object) -> Draft:
    html, text = rich_text_to_email(every_element(), {"UMEMBER": "Max"})
    base: dict[str, object] = {
        "from_": Address("Support", "support@mailroom.test"),
        "to": [Address("Jane", "jane@acme.test")],
        "cc": [],
        "bcc": [],
        "subject": "Steps",
        "body": text,
        "message_id": "abc@mailroom.test",
        "html_body": html,
    }
    base.update(kw)
    return Draft(**base)  # type: ignore[arg-type]


def test_text_and_html_alternatives_in_that_order() -> None:
    msg = message_from_bytes(build_mime(_draft()), policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    text, html = parts[0].get_content(), parts[1].get_content()
    assert "1. Unplug it" in text and "*the fix*" in text
    assert html_problems(html) == [] and "<strong>the fix</strong>" in html


def test_attachments_wrap_the_alternative_in_mixed() -> None:
    att = OutgoingAttachment("a.txt", "text/plain", b"hello")
    msg = message_from_bytes(build_mime(_draft(attachments=[att])), policy=policy.default)
    assert msg.get_content_type() == "multipart/mixed"
    first, second = list(msg.iter_parts())
    assert first.get_content_type() == "multipart/alternative"
    assert second.get_filename() == "a.txt"


def test_the_html_part_is_sanitized_on_the_way_out() -> None:
    dirty = '<p style="background:url(x)">hi</p><script>x()</script><img src="http://t/p.gif">'
    msg = message_from_bytes(build_mime(_draft(html_body=dirty)), policy=policy.default)
    html = list(msg.iter_parts())[1].get_content()
    assert html.strip() == "<p>hi</p>"


def test_header_checks_still_apply() -> None:
    with pytest.raises(HeaderError):
        build_mime(_draft(subject="Hi\r\nBcc: x@evil.test"))


def test_no_html_means_a_single_text_part() -> None:
    msg = message_from_bytes(build_mime(_draft(html_body=None)), policy=policy.default)
    assert msg.get_content_type() == "text/plain"
