"""Subject normalisation, HTML to text and quote trimming."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.mail.html import html_to_text
from bot.mail.quotes import trim_quoted
from bot.mail.subject import has_reply_prefix, normalize_subject


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Plan",
        "RE: Plan",
        "Re[2]: Plan",
        "Re(3): Plan",
        "Fwd: Plan",
        "Fw: Plan",
        "FW: Plan",
        "AW: Plan",
        "WG: Plan",
        "SV: Plan",
        "VS: Plan",
        "VL: Plan",
        "Antw: Plan",
        "Doorst: Plan",
        "Odp: Plan",
        "PD: Plan",
        "Rif: Plan",
        "R: Plan",
        "I: Plan",
        "RV: Plan",
        "TR: Plan",
        "Ответ: Plan",
        "回复\uff1aPlan",
        "回覆: Plan",
        "转发: Plan",
        "轉寄: Plan",
        "答复: Plan",
        "返信: Plan",
        "転送: Plan",
        "Vá: Plan",
        "Ynt: Plan",
        "Re: Re: AW:  [team] Fwd: Plan",
        "[team] Re: Plan",
        "Plan (fwd)",
        "[Fwd: Plan]",
        "re :Plan",
    ],
)
def test_reply_prefixes_are_stripped(subject: str) -> None:
    assert normalize_subject(subject) == "plan"
    assert has_reply_prefix(subject)


@pytest.mark.parametrize("subject", ["Plan", "[team] Plan", "Regarding plan", "Iplan: x", "Reply"])
def test_plain_subjects_have_no_prefix(subject: str) -> None:
    assert not has_reply_prefix(subject)


def test_blob_only_subject_is_kept_and_whitespace_collapses() -> None:
    assert normalize_subject("Re: [mxr]") == "[mxr]"
    assert normalize_subject("  Quarterly\t\tPLAN ") == "quarterly plan"
    assert normalize_subject("Respuesta: Plan", ["respuesta"]) == "plan"


def test_html_to_text_structure() -> None:
    html = (
        "<html><head><title>T</title><style>.a{}</style></head><body>"
        "<h1>Title</h1><p>One&amp;two&nbsp;three</p><p>Line<br>break</p>"
        "<ol><li>first</li><li>second</li></ol>"
        '<a href="https://e.example/x">link</a> <a href="https://e.example/y">https://e.example/y</a>'
        "<script>evil()</script></body></html>"
    )
    assert html_to_text(html) == (
        "Title\n\nOne&two three\n\nLine\nbreak\n\n• first\n• second\n\n"
        "link (https://e.example/x) https://e.example/y"
    )


def test_html_to_text_survives_broken_and_huge_input() -> None:
    assert html_to_text("<div><p>unclosed <b>bold <i>x</div></span></table>") == "unclosed bold x"
    assert html_to_text("<p>" * 50_000 + "end") == "end"
    huge = "<p>" + "word " * 600_000
    assert html_to_text(huge).endswith("[…]")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000))
def test_html_to_text_never_raises(html: str) -> None:
    html_to_text(html)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thanks!\n\nOn Mon, 1 Jan 2024 at 10:00, Bob <b@x.com> wrote:\n> hi\n", "Thanks!"),
        ("Thanks!\n\nOn Mon, 1 Jan 2024 at 10:00, Bob\n<b@x.com> wrote:\n> hi\n", "Thanks!"),
        ("Danke\n\nAm 01.01.2024 um 10:00 schrieb Bob <b@x.com>:\n> hi\n", "Danke"),
        ("Merci\n\nLe lun. 1 janv. 2024, Bob <b@x.com> a écrit :\n> hi\n", "Merci"),
        ("Sure\n-- \nBob\nACME", "Sure"),
        ("Yes\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\n\nold", "Yes"),
        ("Ok\n\nFrom: Bob <b@x.com>\nSent: Monday\nTo: me\nSubject: x\n\nold", "Ok"),
        ("a\n> quoted inline\nb\n\nSent from my iPhone", "a\nb"),
        ("> only a quote", "only a quote"),
    ],
)
def test_trim_quoted(text: str, expected: str) -> None:
    assert trim_quoted(text) == expected


# -- the fast HTML reader gives what html.parser gives ----------------------------------------

_HTML_PIECES = [
    "<p>",
    "</p>",
    "<P CLASS='x'>",
    "<br>",
    "<br/>",
    "<BR />",
    "<div id=main>",
    "</div>",
    '<a href="https://e.example/x?a=1&amp;b=2">',
    "<a href='mailto:bob@x.example'>",
    "<a href=https://e.example/y>",
    "<a name=top>",
    "</a>",
    "</A >",
    '<img alt="logo &amp; co" src="cid:1">',
    "<img src=x.png/>",
    "<img alt=''>",
    "<ul>",
    "<li>",
    "</ul>",
    "<pre>",
    "</pre>",
    "<td>",
    "<table>",
    "</table>",
    "<head>",
    "</head>",
    "<title>",
    "</title>",
    "<script>var a = '<p>';</script>",
    "<style>p { color: red }</style>",
    "<STYLE type=text/css>a{}</Style >",
    "<script/>",
    "<o:p>",
    "</o:p>",
    "<!-- a comment -->",
    "<!---->",
    "<!-- -- -->",
    "<!DOCTYPE html>",
    "<!doctype html public>",
    "<![CDATA[x]]>",
    "<?xml version='1.0'?>",
    "&amp;",
    "&nbsp;",
    "&#39;",
    "&lt;b&gt;",
    "&amp",
    "&unknown;",
    " ",
    "\n",
    "\t",
    "word",
    "Caf\u00e9 \u2603",
    "a < b",
    "1<2",
    "<",
    ">",
    "<p\x0bclass=x>",
    '<a href="x>',
    "<b",
    "</",
]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_HTML_PIECES) | st.text(max_size=8), max_size=40))
def test_fast_html_reader_matches_html_parser(pieces: list[str]) -> None:
    html = "".join(pieces)
    assert html_to_text(html) == html_to_text(html, fast=False)


def test_fast_html_reader_takes_plain_mail_html_and_matches_on_real_html() -> None:
    from bot.devtools.mailgen import MailGen
    from bot.mail.html import _feed_fast, _TextExtractor
    from bot.mail.parse import parse_message

    htmls = [p.html for p in map(parse_message, MailGen(seed=3).messages(300)) if p.html]
    fixtures = Path(__file__).parent / "fixtures"
    htmls += [
        h for p in sorted(fixtures.glob("*.eml")) if (h := parse_message(p.read_bytes()).html)
    ]
    corpora = Path(__file__).resolve().parents[3] / "shared" / "corpora"
    if corpora.is_dir():
        for path in sorted(corpora.rglob("*")):
            if path.is_file() and not path.name.endswith((".md", ".gz")):
                html = parse_message(path.read_bytes()).html
                if html:
                    htmls.append(html)
    assert len(htmls) > 20
    fast = sum(_feed_fast(_TextExtractor(), h) for h in htmls)
    assert fast >= len(htmls) // 2  # ordinary mail HTML takes the fast path
    for html in htmls:
        assert html_to_text(html) == html_to_text(html, fast=False)


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(list(" \t\r\f\v\u00a0\nab"))))
def test_squeeze_is_the_whitespace_substitution(text: str) -> None:
    """The shortcut for text that needs no change gives what the substitution gives."""
    from bot.mail.html import _INLINE_WS, _squeeze

    assert _squeeze(text) == _INLINE_WS.sub(" ", text)
