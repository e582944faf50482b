"""A test-side allow-list check for HTML Mailroom sends (stdlib html.parser, independent of
bot/mail/html_safe.py so a bug there cannot hide itself)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

TAGS = {
    "html", "head", "meta", "body", "div", "p", "span", "br", "strong", "b", "em", "i", "s",
    "del", "code", "pre", "blockquote", "ul", "ol", "li", "a",
}  # fmt: skip
ATTRS = {"style", "href", "start", "charset"}
SCHEMES = ("http://", "https://", "mailto:")
BAD_STYLE = re.compile(r"url\s*\(|expression|javascript|@import|\\|behavior", re.I)


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.tags: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in TAGS:
            self.problems.append(f"tag <{tag}>")
        for name, value in attrs:
            if name not in ATTRS:
                self.problems.append(f"attribute {name} on <{tag}>")
            if name == "href":
                self.hrefs.append(value or "")
                if not (value or "").lower().startswith(SCHEMES):
                    self.problems.append(f"link target {value!r}")
            if name == "style" and BAD_STYLE.search(value or ""):
                self.problems.append(f"style {value!r}")
            if name == "start" and not (value or "").isdigit():
                self.problems.append(f"start {value!r}")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_comment(self, data: str) -> None:
        self.problems.append("comment")

    def handle_pi(self, data: str) -> None:
        self.problems.append("processing instruction")


def html_problems(html: str) -> list[str]:
    """Everything in `html` outside the allow-list (empty: it passes)."""
    checker = _Checker()
    checker.feed(html)
    checker.close()
    return checker.problems


def html_tags(html: str) -> list[str]:
    checker = _Checker()
    checker.feed(html)
    checker.close()
    return checker.tags


def html_hrefs(html: str) -> list[str]:
    checker = _Checker()
    checker.feed(html)
    checker.close()
    return checker.hrefs
