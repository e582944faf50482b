"""HTML to readable plain text with the stdlib parser (robust on broken and huge input)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "center",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "ul",
    ]
)
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "svg", "object"})
_INLINE_WS = re.compile(r"[ \t\r\f\v\u00a0]+")
_MANY_NL = re.compile(r"\n{3,}")
# Past this size the tail is dropped (with a marker): a readable view never needs 5 MB of text,
# and html.parser is linear but not free.
MAX_HTML_CHARS = 2_000_000


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        # (href, number of output pieces at <a>): the link text is what was added since.
        # Pieces, not characters: joining the whole output at every link was quadratic.
        self.links: list[tuple[str | None, int]] = []

    def _nl(self, count: int = 1) -> None:
        self.out.append("\n" * count)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip_depth += 1
            return
        if self.skip_depth:
            return
        if tag == "br":
            self._nl()
        elif tag == "li":
            self.out.append("\n• ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.out.append(alt)
        elif tag == "a":
            self.links.append((dict(attrs).get("href"), len(self.out)))
        elif tag in _BLOCK:
            self._nl(2 if tag in ("p", "blockquote", "table", "ul", "ol") else 1)
            if tag == "pre":
                self.pre_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in _SKIP and self.skip_depth:
            self.skip_depth -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            if self.skip_depth:
                self.skip_depth -= 1
            return
        if self.skip_depth:
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            text = "".join(self.out[start:]).strip()
            if href and href.startswith(("http://", "https://", "mailto:")):
                target = href[7:] if href.startswith("mailto:") else href
                if target and target != text and target.rstrip("/") != text.rstrip("/"):
                    self.out.append(f" ({target})")
        elif tag in _BLOCK:
            if tag == "pre" and self.pre_depth:
                self.pre_depth -= 1
            self._nl(2 if tag in ("p", "blockquote", "table", "ul", "ol") else 1)

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre_depth:
            self.out.append(data)
        else:
            self.out.append(_INLINE_WS.sub(" ", data.replace("\n", " ")))


def html_to_text(html: str) -> str:
    """Readable text: paragraphs and breaks kept, lists as "• ", links as "text (url)"."""
    truncated = len(html) > MAX_HTML_CHARS
    if truncated:
        html = html[:MAX_HTML_CHARS]
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient, but never let a bad document escape
        pass
    text = "".join(parser.out)
    lines = [_INLINE_WS.sub(" ", line).strip() for line in text.split("\n")]
    text = _MANY_NL.sub("\n\n", "\n".join(lines)).strip()
    if truncated:
        text += "\n[…]"
    return text
