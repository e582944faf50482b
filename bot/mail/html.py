"""HTML to readable plain text with the stdlib parser (robust on broken and huge input)."""

from __future__ import annotations

import re
from html import unescape
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


def _squeeze(text: str) -> str:
    """Each run of inline whitespace as one space. Most text needs nothing: a lone space is
    one already, and six substring tests are far cheaper than a substitution per word gap
    (a tenth of converting an HTML body)."""
    if (
        "  " in text
        or "\t" in text
        or "\r" in text
        or "\f" in text
        or "\v" in text
        or "\u00a0" in text
    ):
        return _INLINE_WS.sub(" ", text)
    return text


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
            self.out.append(_squeeze(data.replace("\n", " ")))


# The fast reader's subset of HTML: plain start tags (attribute values quoted or simple), end
# tags, comments without "--" inside, and doctypes. Whitespace inside tags is HTML's own
# five characters: anything else goes to html.parser.
_WS = r"[ \t\n\r\f]"
_TOKEN = re.compile(
    rf"</(?P<end>[a-zA-Z][-.a-zA-Z0-9:_]*){_WS}*>"
    rf"|<(?P<start>[a-zA-Z][-.a-zA-Z0-9:_]*)"
    rf"(?:{_WS}+[a-zA-Z_:][-.a-zA-Z0-9_:]*"
    rf"""(?:{_WS}*={_WS}*(?:"[^"<]*"|'[^'<]*'|[^ \t\n\r\f"'=<>`/]+))?)*"""
    rf"{_WS}*(?P<slash>/?)>"
    r"|<!--(?!-?>)(?:(?!--)[^<])*-->"
    r"|<![dD][oO][cC][tT][yY][pP][eE][^<>]*>"
)
_CDATA = {name: re.compile(rf"</\s*{name}\s*>", re.IGNORECASE) for name in ("script", "style")}


_ATTR = re.compile(
    rf"""{_WS}+([a-zA-Z_:][-.a-zA-Z0-9_:]*)"""
    rf"""(?:{_WS}*={_WS}*("[^"<]*"|'[^'<]*'|[^ \t\n\r\f"'=<>`/]+))?"""
)


def _attrs(tag: str) -> list[tuple[str, str | None]]:
    """The attributes of a start tag `_TOKEN` matched, as html.parser reports them: names
    lowered, quotes dropped, character references resolved, None for a bare name."""
    out: list[tuple[str, str | None]] = []
    for m in _ATTR.finditer(tag):
        name, value = m.group(1, 2)
        if value is not None and value[:1] in ("'", '"'):
            value = value[1:-1]
        out.append((name.lower(), unescape(value) if value else value))
    return out


def _feed_fast(parser: _TextExtractor, html: str) -> bool:
    """Drive `parser` with the events html.parser would give for `html`, when every "<" in it
    opens a construct of the simple subset above; False (with `parser` half fed, to be
    discarded) at the first that does not. html.parser walks a document with a dozen regex
    calls per tag and was most of the time spent on an HTML message at sync."""
    pos, n = 0, len(html)
    while pos < n:
        j = html.find("<", pos)
        if j < 0:
            parser.handle_data(unescape(html[pos:]))
            return True
        if j > pos:
            parser.handle_data(unescape(html[pos:j]))
        m = _TOKEN.match(html, j)
        if m is None:
            return False
        pos = m.end()
        if m["end"] is not None:
            parser.handle_endtag(m["end"].lower())
            continue
        name = m["start"]
        if name is None:
            continue  # a comment or a doctype: no event the extractor uses
        tag = name.lower()
        attrs = _attrs(m.group()) if tag in ("a", "img") else []
        if m["slash"]:
            parser.handle_startendtag(tag, attrs)
            continue
        parser.handle_starttag(tag, attrs)
        close = _CDATA.get(tag)
        if close is not None:  # script, style: raw text up to the end tag
            end = close.search(html, pos)
            if end is None:
                return False
            if end.start() > pos:
                parser.handle_data(html[pos : end.start()])
            parser.handle_endtag(tag)
            pos = end.end()
    return True


def _extract(html: str, *, fast: bool = True) -> list[str]:
    parser = _TextExtractor()
    if fast and _feed_fast(parser, html):
        return parser.out
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient, but never let a bad document escape
        pass
    return parser.out


def html_to_text(html: str, *, fast: bool = True) -> str:
    """Readable text: paragraphs and breaks kept, lists as "• ", links as "text (url)".
    `fast=False` always uses html.parser (the tests compare the two)."""
    truncated = len(html) > MAX_HTML_CHARS
    if truncated:
        html = html[:MAX_HTML_CHARS]
    text = "".join(_extract(html, fast=fast))
    # Most lines are the empty ones between blocks: no regex for those.
    lines = [_squeeze(line).strip() if line else "" for line in text.split("\n")]
    text = _MANY_NL.sub("\n\n", "\n".join(lines)).strip()
    if truncated:
        text += "\n[…]"
    return text
