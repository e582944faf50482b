"""HTML to readable plain text: a linear reader for mail HTML, html.parser for small oddities.

Every path is linear in the input (security-review #3): the reader below takes ordinary mail
HTML; a document it cannot take goes to the stdlib html.parser only while small
(`HTML_PARSER_MAX_CHARS`: html.parser is quadratic on unterminated tags), and past that to the
same reader in a lenient mode that reads any "<" it does not understand as best it can.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
# html.parser rescans an unterminated tag from its start on every step (quadratic: 48 kB of
# '<a b="' took 5 s): above this size a document the fast reader refuses is read leniently.
HTML_PARSER_MAX_CHARS = 8_000
# A link's text is compared with its target (to skip "url (url)") only while it is about as
# long as the target: the comparison joins the link's text, and nested links made every
# </a> join everything after its <a> (quadratic: 2 MB took 30 s).
_LINK_TEXT_SLACK = 256
# How often the readers look at the parse budget (every this many tags).
_CHECK_EVERY = 512


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.chars = 0  # the length of the output so far
        self.skip_depth = 0
        self.pre_depth = 0
        # (href, output pieces at <a>, output length at <a>): the link text is what was added
        # since; its length says whether it can be the target without joining it.
        self.links: list[tuple[str | None, int, int]] = []

    def _put(self, text: str) -> None:
        if text:
            self.out.append(text)
            self.chars += len(text)

    def _nl(self, count: int = 1) -> None:
        self._put("\n" * count)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip_depth += 1
            return
        if self.skip_depth:
            return
        if tag == "br":
            self._nl()
        elif tag == "li":
            self._put("\n• ")
        elif tag in ("td", "th"):
            self._put(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._put(alt)
        elif tag == "a":
            self.links.append((dict(attrs).get("href"), len(self.out), self.chars))
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
            href, start, chars = self.links.pop()
            if href and href.startswith(("http://", "https://", "mailto:")):
                target = href[7:] if href.startswith("mailto:") else href
                if target and not self._link_text_is(start, chars, target):
                    self._put(f" ({target})")
        elif tag in _BLOCK:
            if tag == "pre" and self.pre_depth:
                self.pre_depth -= 1
            self._nl(2 if tag in ("p", "blockquote", "table", "ul", "ol") else 1)

    def _link_text_is(self, start: int, chars: int, target: str) -> bool:
        """Whether the text since <a> is the target itself (maybe without a final "/")."""
        if self.chars - chars > len(target) + _LINK_TEXT_SLACK:
            return False  # far longer than the target: not worth joining to find out
        text = "".join(self.out[start:]).strip()
        return target == text or target.rstrip("/") == text.rstrip("/")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre_depth:
            self._put(data)
        else:
            self._put(_squeeze(data.replace("\n", " ")))


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


_NAME = re.compile(r"[a-zA-Z][-.a-zA-Z0-9:_]*")
_CONSTRUCT = re.compile(r"<[a-zA-Z/!?]")
_TAG_OPEN = re.compile(r"</?[a-zA-Z]")


def _feed_fast(
    parser: _TextExtractor,
    html: str,
    *,
    lenient: bool = False,
    check: Callable[[], None] | None = None,
) -> bool:
    """Drive `parser` with the events html.parser would give for `html`, when every "<" in it
    opens a construct of the simple subset above; False (with `parser` half fed, to be
    discarded) at the first that does not. html.parser walks a document with a dozen regex
    calls per tag and was most of the time spent on an HTML message at sync.

    `lenient`: never False; a "<" outside the subset is read as a tag up to the next ">", a
    comment up to "-->", or a plain "<"; an unterminated tag or comment ends the document.
    Each step reads forward from where the last one stopped (the next ">" is found once for
    all the "<" before it), so the whole walk is linear. `check` is called every few hundred
    tags (the parse budget: it raises when time is up)."""
    pos, n = 0, len(html)
    next_gt = -1  # the first ">" at or after some point, found once
    steps = 0
    while pos < n:
        if lenient:
            # A "<" that cannot start a tag, comment or declaration is text: skip to one that can.
            found = _CONSTRUCT.search(html, pos)
            j = found.start() if found is not None else -1
        else:
            j = html.find("<", pos)
        if j < 0:
            parser.handle_data(unescape(html[pos:]))
            return True
        if j > pos:
            parser.handle_data(unescape(html[pos:j]))
        steps += 1
        if check is not None and steps % _CHECK_EVERY == 0:
            check()
        m = _TOKEN.match(html, j)
        if m is None:
            if not lenient:
                return False
            if next_gt < j:
                next_gt = html.find(">", j)
                if next_gt < 0:
                    next_gt = n  # no ">" anywhere after this: n stands for "none"
            pos = _lenient_step(parser, html, j, next_gt)
            continue
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
                return lenient  # lenient: the rest is the script's, nothing to show
            if end.start() > pos:
                parser.handle_data(html[pos : end.start()])
            parser.handle_endtag(tag)
            pos = end.end()
    return True


# Attributes as html.parser reads them in a tag the subset refused (`a="x"b="y"` included).
_LOOSE_ATTR = re.compile(r"""([^\s/>"'=][^\s/>"'=]*)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?""")


def _loose_attrs(tag: str, start: int) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for m in _LOOSE_ATTR.finditer(tag, start, len(tag) - 1):
        name, value = m.group(1, 2)
        if value is not None and value[:1] in ("'", '"'):
            value = value[1:-1]
        out.append((name.lower(), unescape(value) if value else value))
    return out


def _lenient_step(parser: _TextExtractor, html: str, j: int, gt: int) -> int:
    """Read the construct at `html[j] == "<"` that the subset does not cover; `gt` is the first
    ">" after `j` (len(html) if none). Returns where to go on."""
    n = len(html)
    after = html[j + 1 : j + 2]
    if _TAG_OPEN.match(html, j):
        if gt >= n:
            return n  # an unterminated tag: dropped, with whatever follows it
        tag = html[j : gt + 1]
        end = after == "/"
        m = _NAME.match(tag, 2 if end else 1)
        name = m.group().lower() if m else ""
        if end:
            parser.handle_endtag(name)
        else:
            attrs = _loose_attrs(tag, 1 + len(name)) if name in ("a", "img") else []
            if tag.endswith("/>"):
                parser.handle_startendtag(name, attrs)
            else:
                parser.handle_starttag(name, attrs)
                close = _CDATA.get(name)
                if close is not None:
                    found = close.search(html, gt + 1)
                    if found is None:
                        return n
                    parser.handle_data(html[gt + 1 : found.start()])
                    parser.handle_endtag(name)
                    return found.end()
        return gt + 1
    if html.startswith("<!--", j):
        close_at = html.find("-->", j + 4)
        return n if close_at < 0 else close_at + 3
    if after in ("!", "?"):
        return n if gt >= n else gt + 1
    parser.handle_data("<")
    return j + 1


def _extract(html: str, *, fast: bool = True, check: Callable[[], None] | None = None) -> list[str]:
    parser = _TextExtractor()
    if fast and _feed_fast(parser, html, check=check):
        return parser.out
    parser = _TextExtractor()
    if fast and len(html) > HTML_PARSER_MAX_CHARS:
        _feed_fast(parser, html, lenient=True, check=check)
        return parser.out
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient, but never let a bad document escape
        pass
    return parser.out


def html_to_text(html: str, *, fast: bool = True, check: Callable[[], None] | None = None) -> str:
    """Readable text: paragraphs and breaks kept, lists as "• ", links as "text (url)".
    `fast=False` always uses html.parser (the tests compare the two). `check` is called now
    and then; it may raise to stop a conversion that is over its time budget."""
    truncated = len(html) > MAX_HTML_CHARS
    if truncated:
        html = html[:MAX_HTML_CHARS]
    text = "".join(_extract(html, fast=fast, check=check))
    # Most lines are the empty ones between blocks: no regex for those.
    lines = [_squeeze(line).strip() if line else "" for line in text.split("\n")]
    text = _MANY_NL.sub("\n\n", "\n".join(lines)).strip()
    if truncated:
        text += "\n[…]"
    return text
