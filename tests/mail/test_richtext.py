"""Slack rich text → HTML / plain text / mrkdwn, and the allow-list pass over sent HTML."""

from __future__ import annotations

import re
from typing import Any, Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.mail.html_safe import sanitize_html, style_ok
from bot.mail.richtext import (
    clean_rich_text,
    is_blank,
    mention_ids,
    plain_to_rich_text,
    rich_text_append,
    rich_text_to_email,
    rich_text_to_html_fragment,
    rich_text_to_mrkdwn,
    rich_text_to_text,
    safe_href,
    text_block_html,
)
from tests.mail.htmlcheck import html_hrefs, html_problems, html_tags
from tests.mail.richsamples import every_element, rich, rlist, section, t

NAMES = {"UMEMBER": "Mia Member", "CINBOX": "inbox"}


def test_every_element_becomes_clean_html() -> None:
    html, _ = rich_text_to_email(every_element(), NAMES)
    assert html_problems(html) == []
    tags = set(html_tags(html))
    assert {"strong", "em", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a", "br"} <= tags
    assert "<strong>the fix</strong>" in html and "<em>your</em>" in html
    assert html_hrefs(html) == ["https://example.com/help?a=1&b=2", "mailto:help@example.com"]
    assert "👋🎉" in html
    assert "@Mia Member" in html and "#inbox" in html
    assert "ok &lt;done&gt;" in html  # text inside <pre> is escaped
    assert "class=" not in html and "<style" not in html  # inline styles only
    # The second list at indent 1 nests inside the item above it; the offset list continues.
    assert re.search(r"seconds<ul[^>]*>.*really wait.*</ul>\s*</li>", html, re.S)
    assert html.count("<ol") == 1 and "Plug it back in" in html


def test_every_element_reads_naturally_as_text() -> None:
    _, text = rich_text_to_email(every_element(), NAMES)
    assert text == (
        "Hello @Mia Member, here is *the fix* for _your_ ~old~ widget `v2.1`. See our guide "
        "<https://example.com/help?a=1&b=2> or write to help@example.com 👋🎉\n"
        "Second line, from #inbox.\n"
        "\n"
        "1. Unplug it\n"
        "2. Wait *ten* seconds\n"
        "   - really wait\n"
        "   - no cheating\n"
        "3. Plug it back in\n"
        "\n"
        "- Tea\n"
        "- Coffee\n"
        "\n"
        "    $ widget --reset\n"
        "    ok <done>\n"
        "\n"
        "> It works again\n"
        "> said everyone\n"
        "\n"
        "Thanks,\n"
        "Sam\n"
    )


def test_mrkdwn_keeps_the_formatting_and_pings_nobody() -> None:
    value = rich(
        section(
            t("Hi "),
            {"type": "user", "user_id": "UMEMBER"},
            t(" "),
            {"type": "broadcast", "range": "channel"},
            t(" <!here> "),
            t("bold", bold=True),
            t(" "),
            {"type": "link", "url": "https://x.test/a|b", "text": "go"},
        ),
        rlist("bullet", 0, [t("one")], [t("two")]),
    )
    out = rich_text_to_mrkdwn(value, NAMES)
    assert out.startswith("Hi @Mia Member @channel &lt;!here&gt; *bold* <https://x.test/a%7Cb|go>")
    assert "\n\n• one\n• two" in out
    assert "<@" not in out and "<!" not in out


def test_style_whitespace_moves_outside_the_marks() -> None:
    value = rich(section(t("a "), t(" bold ", bold=True), t("b"), t("x\ny", italic=True)))
    assert rich_text_to_text(value) == "a  *bold* b_x_\n_y_\n"


def test_links_only_http_https_mailto() -> None:
    assert safe_href("https://a.test/x") == "https://a.test/x"
    assert safe_href("mailto:a@b.test") == "mailto:a@b.test"
    for bad in (
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html,<script>",
        "vbscript:x",
        "https:///nohost",
        "//evil.test",
        "file:///etc/passwd",
        "mailto:",
    ):
        assert safe_href(bad) is None, bad
    value = rich(section({"type": "link", "url": "javascript:alert(1)", "text": "click"}))
    html, text = rich_text_to_email(value)
    assert "javascript" not in html and "<a " not in html and "click" in html
    assert text == "click\n"


def test_text_is_escaped_never_markup() -> None:
    value = rich(
        section(t('<script>alert("x")</script> <img src="http://x/a.png"> & <a href="j">')),
        {"type": "rich_text_quote", "elements": [t("<b>q</b>")]},
    )
    html, _ = rich_text_to_email(value)
    assert html_problems(html) == []
    assert "<script" not in html and "<img" not in html and "&lt;script&gt;" in html
    assert set(html_tags(html)) <= {"html", "head", "meta", "body", "div", "blockquote"}


def test_emoji_from_unicode_table_or_name() -> None:
    value = rich(
        section(
            {"type": "emoji", "name": "wave", "unicode": "1f44b-1f3fd", "skin_tone": 4},
            {"type": "emoji", "name": "thumbsup", "skin_tone": 2},
            {"type": "emoji", "name": "partyparrot"},
            {"type": "emoji", "name": "x", "unicode": "3c"},  # "<" is no emoji
        )
    )
    text = rich_text_to_text(value)
    assert text == "👋🏽👍🏻:partyparrot:❌\n"
    assert rich_text_to_mrkdwn(value) == ":wave::thumbsup::partyparrot::x:"


def test_mentions_fall_back_to_ids_and_are_collected() -> None:
    value = rich(
        section(
            {"type": "user", "user_id": "U1"},
            {"type": "channel", "channel_id": "C1"},
            {"type": "usergroup", "usergroup_id": "S1"},
            {"type": "date", "timestamp": 0, "format": "{date}", "fallback": "1 Jan 1970"},
        )
    )
    assert mention_ids(value) == ({"U1"}, {"C1"})
    assert rich_text_to_text(value, {"U1": "Ann"}) == "@Ann#C1@S11 Jan 1970\n"


def test_message_blocks_and_bare_elements_are_accepted() -> None:
    value = rich(section(t("typed in the thread", bold=True)))
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "ignored"}}, value]
    assert rich_text_to_text(blocks) == "*typed in the thread*\n"
    assert rich_text_to_text(value["elements"]) == "*typed in the thread*\n"
    assert rich_text_to_text(None) == "" and rich_text_to_text({"type": "section"}) == ""


def test_ordered_nesting_uses_letters_then_roman() -> None:
    value = rich(
        rlist("ordered", 0, [t("a")]),
        rlist("ordered", 1, [t("b")], [t("c")]),
        rlist("ordered", 2, [t("d")]),
        rlist("bullet", 0, [t("e")]),
    )
    assert rich_text_to_text(value) == "1. a\n   a. b\n   b. c\n      i. d\n\n- e\n"
    html = rich_text_to_html_fragment(value)
    assert "lower-alpha" in html and "lower-roman" in html


def test_clean_rich_text_keeps_only_known_parts() -> None:
    dirty = {
        "type": "rich_text",
        "block_id": "x",
        "elements": [
            {
                "type": "rich_text_section",
                "onclick": "x",
                "elements": [
                    {"type": "text", "text": "hi", "style": {"bold": True, "color": "red"}},
                    {"type": "link", "url": "javascript:1", "text": "j"},
                    {"type": "image", "image_url": "http://x/a.png"},
                    {"type": "emoji", "name": "<script>"},
                    {"type": "user", "user_id": "<!channel>"},
                ],
            },
            {"type": "image", "image_url": "http://x/a.png"},
            {"type": "rich_text_list", "style": "weird", "indent": 99, "elements": [{}]},
        ],
    }
    assert clean_rich_text(dirty) == {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "text", "text": "hi", "style": {"bold": True}},
                    {"type": "text", "text": "j"},
                ],
            },
            {
                "type": "rich_text_list",
                "style": "bullet",
                "indent": 8,
                "elements": [{"type": "rich_text_section", "elements": []}],
            },
        ],
    }


def test_blank_plain_and_append() -> None:
    assert is_blank(plain_to_rich_text("  \n")) and is_blank(None)
    assert not is_blank(rich(rlist("bullet", 0, [t("x")])))
    typed = plain_to_rich_text("Dear Jane,")
    both = rich_text_append(typed, rich(section(t("Regards", italic=True))))
    assert rich_text_to_text(both) == "Dear Jane,\n_Regards_\n"
    assert rich_text_append(plain_to_rich_text(""), typed) == typed


def test_quoted_original_is_a_blockquote() -> None:
    html = text_block_html("line <1>\n\nline 2", head="On Mon, Jane wrote:", quoted=True)
    assert html_problems(html) == []
    assert "<blockquote" in html and "line &lt;1&gt;<br>\n<br>\nline 2" in html


def test_sanitizer_removes_everything_off_the_list() -> None:
    dirty = (
        '<p onclick="x" style="color:red;background:url(http://x/t.png);'
        'background-image:url(x)">hi<script>alert(1)</script>'
        '<img src="http://x/a.png"><a href="javascript:alert(1)">j</a>'
        '<a href="https://ok.test/" target="_blank">ok</a>'
        "<style>body{background:url(http://x)}</style><!-- c --><iframe src=x>in</iframe>"
        '<span style="font-family:x;color:expression(alert(1))">s</span>'
        '<div style="color:\\75rl(x)">e</div></p>'
    )
    clean = sanitize_html(dirty)
    assert html_problems(clean) == []
    assert clean == (
        '<p style="color:red">hi<a>j</a><a href="https://ok.test/">ok</a>'
        '<span style="font-family:x">s</span><div>e</div></p>'
    )
    assert style_ok("color:red;;margin : 0 ;x:y") == "color:red;margin:0"
    assert style_ok("background-image:url(a)") is None


def test_sanitizer_closes_and_ignores_stray_tags() -> None:
    assert sanitize_html("<div><b>x</div></i></b>") == "<div><b>x</b></div>"
    assert sanitize_html("<script>never <b>ends") == ""
    assert sanitize_html("a &amp; b &lt;c&gt;") == "a &amp; b &lt;c&gt;"


# -- properties ------------------------------------------------------------------------------

_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
_text = st.text(st.characters(codec="utf-8", exclude_categories=_SURROGATES), max_size=30)
_style = st.fixed_dictionaries(
    {},
    optional={k: st.just(True) for k in ("bold", "italic", "strike", "code")},
)
_inline = st.one_of(
    st.builds(lambda s, y: {"type": "text", "text": s, "style": y}, _text, _style),
    st.builds(
        lambda u, s: {"type": "link", "url": u, "text": s},
        st.one_of(
            st.sampled_from(["https://a.test/x?y=1&z=\"2'", "mailto:a@b.test", "http://b.test"]),
            _text,
        ),
        _text,
    ),
    st.builds(lambda n: {"type": "emoji", "name": n}, st.sampled_from(["wave", "smile", "zz"])),
    st.builds(lambda u: {"type": "user", "user_id": u}, st.sampled_from(["U1", "U2"])),
)
_section = st.builds(
    lambda els: {"type": "rich_text_section", "elements": els}, st.lists(_inline, max_size=5)
)
_top = st.one_of(
    _section,
    st.builds(
        lambda els: {"type": "rich_text_preformatted", "elements": els},
        st.lists(_inline, max_size=3),
    ),
    st.builds(
        lambda els: {"type": "rich_text_quote", "elements": els}, st.lists(_inline, max_size=3)
    ),
    st.builds(
        lambda style, indent, items, offset: {
            "type": "rich_text_list",
            "style": style,
            "indent": indent,
            "offset": offset,
            "elements": items,
        },
        st.sampled_from(["bullet", "ordered"]),
        st.integers(0, 3),
        st.lists(_section, min_size=1, max_size=3),
        st.integers(0, 3),
    ),
)
_values = st.builds(lambda els: {"type": "rich_text", "elements": els}, st.lists(_top, max_size=6))


@settings(max_examples=150, deadline=None)
@given(_values)
def test_generated_html_always_passes_the_allow_list(value: dict[str, Any]) -> None:
    html, text = rich_text_to_email(value, {"U1": "<b>Ann</b>"})
    assert html_problems(html) == []
    # The generator's output is already what the sanitizer keeps: nothing to remove.
    assert sanitize_html(html) == html
    for href in html_hrefs(html):
        assert safe_href(href) == href
    assert "<b>" not in html  # a name is text, never markup
    assert isinstance(text, str) and isinstance(rich_text_to_mrkdwn(value), str)


@settings(max_examples=100, deadline=None)
@given(_values)
def test_every_word_reaches_the_text_part(value: dict[str, Any]) -> None:
    text = rich_text_to_text(value)
    cleaned = clean_rich_text(value)
    assert rich_text_to_text(cleaned) == text  # cleaning loses nothing that is shown
    for word in re.findall(r"[A-Za-z0-9]{3,}", " ".join(_texts(value))):
        assert word in text


def _texts(value: dict[str, Any]) -> list[str]:
    out: list[str] = []

    def walk(els: Any) -> None:
        for el in els or []:
            if el.get("type") == "text":
                out.append(el["text"])
            elif el.get("type") == "link":
                out.append(el["text"] or "")
            walk(el.get("elements") if el.get("type", "").startswith("rich_text") else None)

    walk(value["elements"])
    return out


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_sanitizer_output_always_passes_the_allow_list(source: str) -> None:
    noisy = source.replace("A", "<script>").replace("B", '<a href="javascript:x">')
    noisy = noisy.replace("C", '<img src="http://x/y">').replace("D", '<p style="x:url(y)">')
    assert html_problems(sanitize_html(noisy)) == []
