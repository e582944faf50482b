"""Rich text values as Slack's rich_text_input submits them, for tests."""

from __future__ import annotations

from typing import Any


def t(text: str, **style: bool) -> dict[str, Any]:
    el: dict[str, Any] = {"type": "text", "text": text}
    if style:
        el["style"] = style
    return el


def section(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rich_text_section", "elements": list(elements)}


def rlist(style: str, indent: int, *items: list[dict[str, Any]], offset: int = 0) -> dict[str, Any]:
    el: dict[str, Any] = {
        "type": "rich_text_list",
        "style": style,
        "indent": indent,
        "elements": [section(*i) for i in items],
    }
    if offset:
        el["offset"] = offset
    return el


def rich(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rich_text", "elements": list(elements)}


def every_element(user_id: str = "UMEMBER", channel_id: str = "CINBOX") -> dict[str, Any]:
    """Bold, italic, strike, code, preformatted, links, bulleted and numbered lists with
    nesting, a quote, line breaks, emoji and user/channel mentions."""
    return rich(
        section(
            t("Hello "),
            {"type": "user", "user_id": user_id},
            t(", here is "),
            t("the fix", bold=True),
            t(" for "),
            t("your", italic=True),
            t(" "),
            t("old", strike=True),
            t(" widget "),
            t("v2.1", code=True),
            t(". See "),
            {"type": "link", "url": "https://example.com/help?a=1&b=2", "text": "our guide"},
            t(" or write to "),
            {"type": "link", "url": "mailto:help@example.com", "text": "help@example.com"},
            t(" "),
            {"type": "emoji", "name": "wave", "unicode": "1f44b"},
            {"type": "emoji", "name": "tada"},
            t("\nSecond line, from "),
            {"type": "channel", "channel_id": channel_id},
            t(".\n"),
        ),
        rlist("ordered", 0, [t("Unplug it")], [t("Wait "), t("ten", bold=True), t(" seconds")]),
        rlist("bullet", 1, [t("really wait")], [t("no cheating")]),
        rlist("ordered", 0, [t("Plug it back in")], offset=2),
        rlist("bullet", 0, [t("Tea")], [t("Coffee")]),
        {"type": "rich_text_preformatted", "elements": [t("$ widget --reset\nok <done>")]},
        {"type": "rich_text_quote", "elements": [t("It works again"), t("\nsaid everyone")]},
        section(t("Thanks,\nSam")),
    )
