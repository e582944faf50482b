"""The mailbox signature in rich text (pure parts): where it goes, and what an admin may save."""

from __future__ import annotations

from bot.compose.signature import check, with_signature
from bot.mail.richtext import (
    plain_to_rich_text,
    rich_text_to_html_fragment,
    rich_text_to_text,
)
from tests.mail.htmlcheck import html_problems
from tests.mail.richsamples import rich, rlist, section, t

SIG = rich(section(t("Ann", bold=True), t("\nSupport")))


def test_signature_goes_below_the_text_after_the_separator() -> None:
    body = rich(section(t("Fixed", italic=True)))
    signed = with_signature(body, SIG)
    assert rich_text_to_text(signed) == "_Fixed_\n\n-- \n*Ann*\nSupport\n"
    html = rich_text_to_html_fragment(signed)
    assert "<em>Fixed</em>" in html and "<br>\n-- </div>" in html and "<strong>Ann</strong>" in html
    assert html_problems(html) == []


def test_after_a_list_or_alone_there_is_no_extra_blank_line() -> None:
    listed = rich(rlist("bullet", 0, [t("one")], [t("two")]))
    assert rich_text_to_text(with_signature(listed, SIG)) == "- one\n- two\n\n-- \n*Ann*\nSupport\n"
    # A forward without a note: the signature alone, starting with its separator.
    assert rich_text_to_text(with_signature(plain_to_rich_text(""), SIG)) == "-- \n*Ann*\nSupport\n"
    assert with_signature(listed, None) == listed
    assert with_signature(listed, plain_to_rich_text(" ")) == listed


def test_what_an_admin_may_save() -> None:
    assert check(plain_to_rich_text("")) is None  # clears the signature
    assert check(rich(section(t("{{ agent.name }}", bold=True)))) is None
    problem = check(rich(section(t("{{ agent.nmae }}"))))
    assert problem is not None and "agent.nmae" in problem and not problem.startswith("Body")
    split = check(rich(section(t("{{ agent."), t("name }}", bold=True))))
    assert split is not None and "single style" in split
    assert check(plain_to_rich_text("x" * 3001)) == "Keep the signature under 3,000 characters."
