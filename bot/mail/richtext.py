"""Slack rich text → email (HTML and plain text) and Slack mrkdwn (pure).

Slack's rich text (what `rich_text_input` submits and what a typed message carries in its
`rich_text` blocks) is parsed into a small tree (paragraphs, lists with nesting, preformatted
blocks, quotes; inline runs with bold/italic/strike/code/link), and the tree is written out
three ways:

- HTML for the `text/html` part: a few plain tags with inline styles only (mail clients drop
  `<style>` sheets and classes: Gmail strips classes, Outlook renders with Word), escaped text,
  links only to http/https/mailto;
- plain text for the `text/plain` part: `*bold*`, `_italic_`, `~strike~`, `- ` bullets,
  `1. ` numbers, `> ` quotes, indented code, "text <url>" links;
- mrkdwn for the Slack thread post of sent mail.

Text is always escaped on the way out: nothing typed (or rendered from a template variable)
becomes markup. Mentions become names (`names` maps user/channel ids to display names, resolved
by the caller, since this module does no I/O); emoji become Unicode.

A template body is stored as rich text too. `template_source` / `from_rendered` let the Jinja2
sandbox render the whole body at once (so `{% if %}` may span styled runs and paragraphs) while
every rendered character still lands in a text node: node boundaries are private-use markers
that the caller strips from variable values.
"""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MARK_CLOSE",
    "MARK_OPEN",
    "clean_rich_text",
    "from_rendered",
    "html_document",
    "is_blank",
    "mention_ids",
    "parse",
    "plain_to_rich_text",
    "rich_text_append",
    "rich_text_to_email",
    "rich_text_to_html_fragment",
    "rich_text_to_mrkdwn",
    "rich_text_to_text",
    "safe_href",
    "template_source",
    "text_block_html",
]

# -- the tree ------------------------------------------------------------------------------


@dataclass
class Span:
    """An inline run of text with one style."""

    text: str
    bold: bool = False
    italic: bool = False
    strike: bool = False
    code: bool = False
    href: str | None = None  # already checked by safe_href
    emoji: str | None = None  # the shortcode, for mrkdwn

    def style(self) -> tuple[bool, bool, bool, bool, str | None, str | None]:
        return (self.bold, self.italic, self.strike, self.code, self.href, self.emoji)


@dataclass
class Para:
    spans: list[Span]


@dataclass
class Pre:
    spans: list[Span]


@dataclass
class Quote:
    spans: list[Span]


@dataclass
class Item:
    spans: list[Span]
    children: list[ListNode] = field(default_factory=list)


@dataclass
class ListNode:
    ordered: bool
    depth: int
    start: int = 1
    items: list[Item] = field(default_factory=list)


Block = Para | Pre | Quote | ListNode

# -- input ---------------------------------------------------------------------------------

_SAFE_SCHEMES = ("http", "https", "mailto")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_EMOJI_NAME = re.compile(r"^[a-z0-9_+\-']{1,100}$")

# Common Slack shortcodes. Slack's emoji elements carry `unicode` for every standard emoji, so
# this is only the fallback for elements without it (older clients, hand-made blocks).
EMOJI: dict[str, str] = {
    "+1": "👍",
    "thumbsup": "👍",
    "-1": "👎",
    "thumbsdown": "👎",
    "smile": "😄",
    "smiley": "😃",
    "grinning": "😀",
    "grin": "😁",
    "joy": "😂",
    "laughing": "😆",
    "sweat_smile": "😅",
    "wink": "😉",
    "blush": "😊",
    "slightly_smiling_face": "🙂",
    "upside_down_face": "🙃",
    "heart_eyes": "😍",
    "kissing_heart": "😘",
    "thinking_face": "🤔",
    "neutral_face": "😐",
    "expressionless": "😑",
    "unamused": "😒",
    "roll_eyes": "🙄",
    "grimacing": "😬",
    "relieved": "😌",
    "pensive": "😔",
    "confused": "😕",
    "worried": "😟",
    "slightly_frowning_face": "🙁",
    "disappointed": "😞",
    "cry": "😢",
    "sob": "😭",
    "angry": "😠",
    "rage": "😡",
    "scream": "😱",
    "flushed": "😳",
    "sunglasses": "😎",
    "nerd_face": "🤓",
    "sleeping": "😴",
    "mask": "😷",
    "innocent": "😇",
    "smirk": "😏",
    "hugging_face": "🤗",
    "shushing_face": "🤫",
    "face_with_monocle": "🧐",
    "clap": "👏",
    "wave": "👋",
    "ok_hand": "👌",
    "pray": "🙏",
    "muscle": "💪",
    "raised_hands": "🙌",
    "point_right": "👉",
    "point_left": "👈",
    "point_up": "☝️",
    "point_down": "👇",
    "v": "✌️",
    "crossed_fingers": "🤞",
    "handshake": "🤝",
    "eyes": "👀",
    "heart": "❤️",
    "broken_heart": "💔",
    "sparkling_heart": "💖",
    "blue_heart": "💙",
    "green_heart": "💚",
    "star": "⭐",
    "star2": "🌟",
    "sparkles": "✨",
    "fire": "🔥",
    "tada": "🎉",
    "confetti_ball": "🎊",
    "gift": "🎁",
    "balloon": "🎈",
    "trophy": "🏆",
    "medal": "🏅",
    "rocket": "🚀",
    "zap": "⚡",
    "boom": "💥",
    "100": "💯",
    "white_check_mark": "✅",
    "heavy_check_mark": "✔️",
    "ballot_box_with_check": "☑️",
    "x": "❌",
    "negative_squared_cross_mark": "❎",
    "warning": "⚠️",
    "no_entry": "⛔",
    "no_entry_sign": "🚫",
    "exclamation": "❗",
    "question": "❓",
    "grey_question": "❔",
    "bangbang": "‼️",
    "information_source": "\u2139\ufe0f",
    "bulb": "💡",
    "memo": "📝",
    "pencil": "📝",
    "pencil2": "✏️",
    "email": "📧",
    "envelope": "✉️",
    "e-mail": "📧",
    "incoming_envelope": "📨",
    "mailbox": "📫",
    "inbox_tray": "📥",
    "outbox_tray": "📤",
    "package": "📦",
    "calendar": "📆",
    "date": "📅",
    "clock1": "🕐",
    "alarm_clock": "⏰",
    "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳",
    "stopwatch": "⏱️",
    "phone": "☎️",
    "telephone_receiver": "📞",
    "iphone": "📱",
    "computer": "💻",
    "desktop_computer": "🖥️",
    "keyboard": "⌨️",
    "printer": "🖨️",
    "lock": "🔒",
    "unlock": "🔓",
    "key": "🔑",
    "link": "🔗",
    "paperclip": "📎",
    "pushpin": "📌",
    "round_pushpin": "📍",
    "mag": "🔍",
    "bell": "🔔",
    "no_bell": "🔕",
    "moneybag": "💰",
    "dollar": "💵",
    "euro": "💶",
    "pound": "💷",
    "credit_card": "💳",
    "chart_with_upwards_trend": "📈",
    "chart_with_downwards_trend": "📉",
    "bar_chart": "📊",
    "clipboard": "📋",
    "file_folder": "📁",
    "open_file_folder": "📂",
    "page_facing_up": "📄",
    "books": "📚",
    "book": "📖",
    "wrench": "🔧",
    "hammer": "🔨",
    "gear": "⚙️",
    "tools": "🛠️",
    "bug": "🐛",
    "coffee": "☕",
    "tea": "🍵",
    "beer": "🍺",
    "beers": "🍻",
    "cake": "🍰",
    "pizza": "🍕",
    "sunny": "☀️",
    "cloud": "☁️",
    "umbrella": "☔",
    "snowflake": "❄️",
    "rainbow": "🌈",
    "earth_africa": "🌍",
    "earth_americas": "🌎",
    "globe_with_meridians": "🌐",
    "house": "🏠",
    "office": "🏢",
    "car": "🚗",
    "airplane": "✈️",
    "truck": "🚚",
    "ship": "🚢",
    "arrow_right": "➡️",
    "arrow_left": "⬅️",
    "arrow_up": "⬆️",
    "arrow_down": "⬇️",
    "arrows_counterclockwise": "🔄",
    "repeat": "🔁",
    "heavy_plus_sign": "\u2795",
    "heavy_minus_sign": "\u2796",
    "red_circle": "🔴",
    "large_blue_circle": "🔵",
    "white_circle": "⚪",
    "black_circle": "⚫",
    "large_green_circle": "🟢",
    "large_yellow_circle": "🟡",
    "large_orange_circle": "🟠",
    "speech_balloon": "💬",
    "thought_balloon": "💭",
    "raising_hand": "🙋",
    "shrug": "🤷",
    "facepalm": "🤦",
    "see_no_evil": "🙈",
    "dog": "🐶",
    "cat": "🐱",
    "unicorn_face": "🦄",
    "rose": "🌹",
    "sunflower": "🌻",
    "seedling": "🌱",
    "four_leaf_clover": "🍀",
    "christmas_tree": "🎄",
    "santa": "🎅",
}

_SKIN_TONES = {2: "\U0001f3fb", 3: "\U0001f3fc", 4: "\U0001f3fd", 5: "\U0001f3fe", 6: "\U0001f3ff"}


def safe_href(url: Any) -> str | None:
    """The link target if it is http(s) with a host, or mailto with an address; else None."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not url or len(url) > 2048 or _CONTROL.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _SAFE_SCHEMES:
        return None
    if scheme in ("http", "https") and not parts.netloc:
        return None
    if scheme == "mailto" and "@" not in parts.path:
        return None
    return url


def _emoji_text(el: Mapping[str, Any]) -> str:
    code = el.get("unicode")
    if isinstance(code, str) and code:
        try:
            chars = "".join(chr(int(part, 16)) for part in code.split("-") if part)
            if chars and all(ord(c) > 0x7F for c in chars):  # never ASCII (no markup)
                return chars
        except (ValueError, OverflowError):
            pass
    name = str(el.get("name") or "")
    base = EMOJI.get(name)
    if base is None:
        return f":{name}:" if _EMOJI_NAME.match(name) else ""
    tone = _SKIN_TONES.get(_int(el.get("skin_tone")))
    return base + (tone or "")


def _date_text(el: Mapping[str, Any]) -> str:
    fallback = el.get("fallback")
    if isinstance(fallback, str) and fallback:
        return fallback
    try:
        return datetime.fromtimestamp(int(str(el.get("timestamp"))), UTC).strftime(
            "%-d %B %Y %H:%M UTC"
        )
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _style_of(el: Mapping[str, Any]) -> dict[str, bool]:
    style = el.get("style")
    if not isinstance(style, Mapping):
        return {}
    return {k: True for k in ("bold", "italic", "strike", "code") if style.get(k) is True}


def _span(text: str, style: Mapping[str, bool], **extra: str | None) -> Span:
    return Span(
        text,
        bold=style.get("bold", False),
        italic=style.get("italic", False),
        strike=style.get("strike", False),
        code=style.get("code", False),
        href=extra.get("href"),
        emoji=extra.get("emoji"),
    )


def _spans(elements: Any, names: Mapping[str, str]) -> list[Span]:
    out: list[Span] = []
    for el in elements if isinstance(elements, list) else []:
        if not isinstance(el, Mapping):
            continue
        kind = el.get("type")
        style = _style_of(el)
        if kind == "text":
            text = str(el.get("text") or "")
            if text:
                out.append(_span(text, style))
        elif kind == "link":
            url = str(el.get("url") or "")
            text = str(el.get("text") or "") or url
            href = safe_href(url)
            if text:
                out.append(_span(text, style, href=href))
        elif kind == "emoji":
            text = _emoji_text(el)
            name = str(el.get("name") or "")
            if text:
                out.append(_span(text, style, emoji=name if _EMOJI_NAME.match(name) else None))
        elif kind == "user":
            uid = str(el.get("user_id") or "")
            out.append(_span("@" + (names.get(uid) or uid or "someone"), style))
        elif kind == "usergroup":
            gid = str(el.get("usergroup_id") or "")
            out.append(_span("@" + (names.get(gid) or gid or "group"), style))
        elif kind == "channel":
            cid = str(el.get("channel_id") or "")
            out.append(_span("#" + (names.get(cid) or cid or "channel"), style))
        elif kind == "broadcast":
            out.append(_span("@" + str(el.get("range") or "here"), style))
        elif kind == "date":
            text = _date_text(el)
            if text:
                out.append(_span(text, style))
        elif kind == "color":
            text = str(el.get("value") or "")
            if text:
                out.append(_span(text, style))
        elif isinstance(el.get("text"), str) and el.get("text"):
            out.append(_span(str(el["text"]), style))
    return _merge(out)


def _merge(spans: list[Span]) -> list[Span]:
    """Adjacent runs of one style become one (cleaner HTML, no `*a**b*` in text)."""
    out: list[Span] = []
    for s in spans:
        if out and out[-1].style() == s.style() and s.emoji is None:
            out[-1] = Span(out[-1].text + s.text, *s.style()[:4], href=s.href)
        else:
            out.append(s)
    return out


def top_elements(blocks: Any) -> list[Mapping[str, Any]]:
    """The rich_text elements of: a rich_text value, a list of message blocks (only the
    rich_text ones count), or a bare list of rich_text elements."""
    if isinstance(blocks, Mapping):
        if blocks.get("type") == "rich_text":
            els = blocks.get("elements")
            return [e for e in els if isinstance(e, Mapping)] if isinstance(els, list) else []
        return [blocks] if str(blocks.get("type", "")).startswith("rich_text_") else []
    out: list[Mapping[str, Any]] = []
    for item in blocks if isinstance(blocks, list) else []:
        if isinstance(item, Mapping):
            if item.get("type") == "rich_text":
                out.extend(top_elements(item))
            elif str(item.get("type", "")).startswith("rich_text_"):
                out.append(item)
    return out


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def parse(blocks: Any, names: Mapping[str, str] | None = None) -> list[Block]:
    """The tree of a rich text value (see top_elements for the accepted shapes)."""
    names = names or {}
    doc: list[Block] = []
    stack: list[ListNode] = []
    for el in top_elements(blocks):
        kind = el.get("type")
        if kind != "rich_text_list":
            stack = []
        if kind == "rich_text_section":
            doc.append(Para(_spans(el.get("elements"), names)))
        elif kind == "rich_text_preformatted":
            doc.append(Pre(_spans(el.get("elements"), names)))
        elif kind == "rich_text_quote":
            doc.append(Quote(_spans(el.get("elements"), names)))
        elif kind == "rich_text_list":
            depth = max(0, min(_int(el.get("indent")), 8))
            ordered = el.get("style") == "ordered"
            items = [
                Item(_spans(sec.get("elements"), names))
                for sec in el.get("elements") or []
                if isinstance(sec, Mapping)
            ]
            while stack and stack[-1].depth > depth:
                stack.pop()
            if stack and stack[-1].depth == depth and stack[-1].ordered == ordered:
                stack[-1].items.extend(items)
                continue
            if stack and stack[-1].depth == depth:
                stack.pop()
            node = ListNode(ordered, depth, start=_int(el.get("offset")) + 1, items=items)
            if stack and stack[-1].items:
                stack[-1].items[-1].children.append(node)
            else:
                stack = []
                doc.append(node)
            stack.append(node)
    return doc


def mention_ids(blocks: Any) -> tuple[set[str], set[str]]:
    """(user ids, channel ids) mentioned, for the caller to resolve into names."""
    users: set[str] = set()
    channels: set[str] = set()

    def walk(elements: Any) -> None:
        for el in elements if isinstance(elements, list) else []:
            if not isinstance(el, Mapping):
                continue
            if el.get("type") == "user" and el.get("user_id"):
                users.add(str(el["user_id"]))
            elif el.get("type") == "channel" and el.get("channel_id"):
                channels.add(str(el["channel_id"]))
            walk(el.get("elements"))

    walk(top_elements(blocks))
    return users, channels


# -- HTML ----------------------------------------------------------------------------------

FONT = "font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.5;color:#1d1c1d"
MONO = "font-family:Menlo,Consolas,'Courier New',monospace;font-size:13px"
S_BLOCK = "margin:0 0 12px 0"
S_CODE = f"{MONO};background-color:#f4f4f4;border:1px solid #e1e1e1;border-radius:3px;padding:0 3px"
S_PRE = (
    f"{MONO};background-color:#f6f6f6;border:1px solid #e1e1e1;border-radius:4px;"
    "padding:8px;margin:0 0 12px 0;white-space:pre-wrap;word-wrap:break-word"
)
S_QUOTE = "margin:0 0 12px 0;padding:0 0 0 12px;border-left:3px solid #cccccc;color:#555555"
S_LINK = "color:#1264a3;text-decoration:underline"
S_LI = "margin:0 0 4px 0"
_BULLETS = ("disc", "circle", "square")
_NUMBERS = ("decimal", "lower-alpha", "lower-roman")


def _esc(text: str) -> str:
    return html.escape(text, quote=False).replace("\xa0", "&nbsp;")


def _attr(text: str) -> str:
    return html.escape(text, quote=False).replace('"', "&quot;")


def _esc_lines(text: str) -> str:
    """Escaped text with line breaks and runs of spaces kept (HTML would collapse them)."""
    out = _esc(text)
    out = re.sub(r"(?<= ) ", "&nbsp;", out)
    out = re.sub(r"(?<=\n) ", "&nbsp;", out)
    return out.replace("\n", "<br>\n")


def _span_html(s: Span, *, in_pre: bool = False) -> str:
    inner = _esc(s.text) if in_pre else _esc_lines(s.text)
    if in_pre:
        return f'<a href="{_attr(s.href)}" style="{S_LINK}">{inner}</a>' if s.href else inner
    if s.code:
        inner = f'<code style="{S_CODE}">{inner}</code>'
    if s.strike:
        inner = f'<s style="text-decoration:line-through">{inner}</s>'
    if s.italic:
        inner = f"<em>{inner}</em>"
    if s.bold:
        inner = f"<strong>{inner}</strong>"
    if s.href:
        inner = f'<a href="{_attr(s.href)}" style="{S_LINK}">{inner}</a>'
    return inner


def _inline_html(spans: list[Span]) -> str:
    spans = _strip_trailing_newline(spans)
    return "".join(_span_html(s) for s in spans)


def _strip_trailing_newline(spans: list[Span]) -> list[Span]:
    """Slack ends a paragraph that precedes a list with "\\n"; a block break is already one."""
    if spans and spans[-1].text.endswith("\n"):
        last = spans[-1]
        trimmed = Span(last.text[:-1], *last.style()[:4], href=last.href, emoji=last.emoji)
        return [*spans[:-1], trimmed] if trimmed.text else spans[:-1]
    return spans


def _list_html(node: ListNode) -> str:
    tag = "ol" if node.ordered else "ul"
    kinds = _NUMBERS if node.ordered else _BULLETS
    style = f"margin:0 0 {12 if node.depth == 0 else 0}px 0;padding:0 0 0 24px;"
    style += f"list-style-type:{kinds[node.depth % 3]}"
    start = f' start="{node.start}"' if node.ordered and node.start != 1 else ""
    items = []
    for item in node.items:
        inner = _inline_html(item.spans) + "".join(_list_html(c) for c in item.children)
        items.append(f'<li style="{S_LI}">{inner}</li>')
    return f'<{tag}{start} style="{style}">' + "\n".join(items) + f"</{tag}>\n"


def _blocks_html(doc: list[Block]) -> str:
    parts: list[str] = []
    for block in doc:
        if isinstance(block, Para):
            inner = _inline_html(block.spans)
            parts.append(f'<div style="margin:0">{inner or "<br>"}</div>\n')
        elif isinstance(block, Pre):
            inner = "".join(_span_html(s, in_pre=True) for s in block.spans)
            parts.append(f'<pre style="{S_PRE}">{inner}</pre>\n')
        elif isinstance(block, Quote):
            parts.append(
                f'<blockquote style="{S_QUOTE}">{_inline_html(block.spans)}</blockquote>\n'
            )
        else:
            parts.append(_list_html(block))
    return "".join(parts)


def rich_text_to_html_fragment(blocks: Any, names: Mapping[str, str] | None = None) -> str:
    """The HTML of a rich text value, without the document around it."""
    return _blocks_html(parse(blocks, names))


def text_block_html(text: str, *, head: str = "", quoted: bool = False) -> str:
    """Plain text (a quoted original, a forwarded message) as HTML: escaped, lines kept.
    `head` ("On …, X wrote:") goes above it; `quoted` puts the text in a blockquote."""
    out = f'<div style="margin:12px 0 4px 0">{_esc_lines(head)}</div>\n' if head else ""
    body = _esc_lines(text.replace("\r\n", "\n").rstrip("\n"))
    if quoted:
        return out + f'<blockquote style="{S_QUOTE}">{body}</blockquote>\n'
    return out + f'<div style="margin:12px 0 0 0">{body}</div>\n'


def html_document(fragment: str) -> str:
    """A complete HTML part: charset declared, one styled wrapper, no head styles."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f'<body><div style="{FONT}">\n{fragment}</div></body></html>\n'
    )


# -- plain text ----------------------------------------------------------------------------


def _wrap_marks(text: str, before: str, after: str) -> str:
    """`*bold*` with the whitespace Slack put inside the run moved outside the marks."""
    core = text.strip()
    if not core:
        return text
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()) :]
    lines = core.split("\n")
    # A mark must not span lines: readers (and Slack) pair them per line.
    marked = "\n".join(f"{before}{ln}{after}" if ln.strip() else ln for ln in lines)
    return lead + marked + trail


def _span_text(s: Span, *, mrkdwn: bool) -> str:
    text = s.text
    if mrkdwn:
        if s.emoji and s.emoji not in ("", None):
            return f":{s.emoji}:"
        text = _esc_mrkdwn(text)
    if s.code:
        text = _wrap_marks(text, "`", "`")
    if s.strike:
        text = _wrap_marks(text, "~", "~")
    if s.italic:
        text = _wrap_marks(text, "_", "_")
    if s.bold:
        text = _wrap_marks(text, "*", "*")
    if s.href:
        if mrkdwn:
            target = _esc_mrkdwn(s.href).replace("|", "%7C")
            return f"<{target}|{text.replace('|', '¦')}>" if text.strip() else f"<{target}>"
        shown = s.href[len("mailto:") :] if s.href.lower().startswith("mailto:") else s.href
        if s.text.strip() in (s.href, shown):
            return text.replace(s.text.strip(), shown)
        return f"{text} <{shown}>"
    return text


def _inline_text(spans: list[Span], *, mrkdwn: bool) -> str:
    return "".join(_span_text(s, mrkdwn=mrkdwn) for s in _strip_trailing_newline(spans))


def _marker(node: ListNode, n: int, mrkdwn: bool) -> str:
    if not node.ordered:
        return ("•", "◦", "▪")[node.depth % 3] + " " if mrkdwn else "- "
    kind = node.depth % 3
    if kind == 1:
        return _alpha(n) + ". "
    if kind == 2:
        return _roman(n) + ". "
    return f"{n}. "


def _alpha(n: int) -> str:
    out = ""
    while n > 0:
        n, r = divmod(n - 1, 26)
        out = chr(ord("a") + r) + out
    return out or "a"


def _roman(n: int) -> str:
    if not 0 < n < 4000:
        return str(n)
    out = ""
    for value, sym in (
        (1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
        (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"),
    ):  # fmt: skip
        while n >= value:
            out += sym
            n -= value
    return out


def _list_text(node: ListNode, indent: int, mrkdwn: bool) -> list[str]:
    lines: list[str] = []
    pad = "    " if mrkdwn else "   "
    for i, item in enumerate(node.items):
        mark = _marker(node, node.start + i, mrkdwn)
        body = _inline_text(item.spans, mrkdwn=mrkdwn).split("\n")
        lines.append(pad * indent + mark + body[0])
        cont = pad * indent + " " * len(mark)
        lines.extend((cont + ln) if ln else "" for ln in body[1:])
        for child in item.children:
            lines.extend(_list_text(child, indent + 1 + (child.depth - node.depth - 1), mrkdwn))
    return lines


def _blocks_text(doc: list[Block], *, mrkdwn: bool) -> str:
    chunks: list[tuple[str, bool]] = []  # (text, is a paragraph)
    for block in doc:
        if isinstance(block, Para):
            chunks.append((_inline_text(block.spans, mrkdwn=mrkdwn), True))
        elif isinstance(block, Pre):
            raw = "".join(s.text for s in block.spans).strip("\n")
            if mrkdwn:
                chunks.append(("```\n" + _esc_mrkdwn(raw) + "\n```", False))
            else:
                chunks.append(
                    ("\n".join("    " + ln if ln else "" for ln in raw.split("\n")), False)
                )
        elif isinstance(block, Quote):
            body = _inline_text(block.spans, mrkdwn=mrkdwn)
            chunks.append(("\n".join(("> " + ln) if ln else ">" for ln in body.split("\n")), False))
        else:
            chunks.append(("\n".join(_list_text(block, 0, mrkdwn)), False))
    out = ""
    for i, (text, para) in enumerate(chunks):
        if i:
            # Paragraphs follow one another line by line, as typed; a list, quote or code
            # block stands apart with a blank line (the HTML gives it a margin).
            out += "\n" if para and chunks[i - 1][1] else "\n\n"
        out += text
    return out.rstrip("\n") + ("\n" if out.strip() else "")


def rich_text_to_text(blocks: Any, names: Mapping[str, str] | None = None) -> str:
    """The plain-text part for a rich text value."""
    return _blocks_text(parse(blocks, names), mrkdwn=False)


def rich_text_to_email(blocks: Any, names: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(HTML document, plain text) of a rich text value or a message's blocks.

    For a reply typed in a thread: `rich_text_to_email(event["blocks"], names)`; the HTML goes
    to Draft.html_body and the text to Draft.body (build_mime makes multipart/alternative).
    """
    doc = parse(blocks, names)
    return html_document(_blocks_html(doc)), _blocks_text(doc, mrkdwn=False)


# -- mrkdwn --------------------------------------------------------------------------------


def _esc_mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def rich_text_to_mrkdwn(blocks: Any, names: Mapping[str, str] | None = None) -> str:
    """Slack mrkdwn with the same formatting. Mentions are written as escaped "@Name" text
    (never `<@U…>` or `<!here>`), so showing a sent email pings nobody."""
    return _blocks_text(parse(blocks, names), mrkdwn=True).rstrip("\n")


# -- building and cleaning values ----------------------------------------------------------

_TEXT_STYLES = ("bold", "italic", "strike", "code")


def _clean_inline(el: Any) -> dict[str, Any] | None:
    if not isinstance(el, Mapping):
        return None
    kind = el.get("type")
    out: dict[str, Any] = {"type": kind}
    if kind == "text":
        out["text"] = str(el.get("text") or "")
    elif kind == "link":
        href = safe_href(el.get("url"))
        text = str(el.get("text") or "")
        if href is None:  # a link we would not send becomes its text
            return {"type": "text", "text": text or str(el.get("url") or "")}
        out["url"] = href
        if text:
            out["text"] = text
    elif kind == "emoji":
        name = str(el.get("name") or "")
        if not _EMOJI_NAME.match(name):
            return None
        out["name"] = name
        if isinstance(el.get("unicode"), str) and re.fullmatch(
            r"[0-9a-fA-F\-]{1,60}", el["unicode"]
        ):
            out["unicode"] = el["unicode"]
        if _int(el.get("skin_tone")) in _SKIN_TONES:
            out["skin_tone"] = el["skin_tone"]
    elif kind in ("user", "channel", "usergroup"):
        key = f"{kind}_id"
        value = str(el.get(key) or "")
        if not re.fullmatch(r"[A-Z0-9]{1,40}", value):
            return None
        out[key] = value
    elif kind == "broadcast":
        value = str(el.get("range") or "")
        if value not in ("here", "channel", "everyone"):
            return None
        out["range"] = value
    elif kind == "date":
        out["timestamp"] = _int(el.get("timestamp"))
        out["format"] = str(el.get("format") or "{date_long}")
        if isinstance(el.get("fallback"), str):
            out["fallback"] = el["fallback"]
    elif kind == "color":
        value = str(el.get("value") or "")
        if not re.fullmatch(r"#[0-9a-fA-F]{3,8}", value):
            return None
        out["value"] = value
    else:
        return None
    style = _style_of(el)
    if style:
        out["style"] = style
    return out


def _clean_section(el: Any, kind: str = "rich_text_section") -> dict[str, Any]:
    elements = el.get("elements") if isinstance(el, Mapping) else None
    cleaned = [c for c in (_clean_inline(x) for x in elements or []) if c is not None]
    return {"type": kind, "elements": cleaned}


def clean_rich_text(value: Any) -> dict[str, Any]:
    """A rich_text value with only the element types and fields we know, link targets checked.
    This is what is stored (templates, outbox rows) and what goes back into an input."""
    out: list[dict[str, Any]] = []
    for el in top_elements(value):
        kind = el.get("type")
        if kind in ("rich_text_section", "rich_text_preformatted", "rich_text_quote"):
            out.append(_clean_section(el, str(kind)))
        elif kind == "rich_text_list":
            lst: dict[str, Any] = {
                "type": "rich_text_list",
                "style": "ordered" if el.get("style") == "ordered" else "bullet",
                "indent": max(0, min(_int(el.get("indent")), 8)),
                "elements": [_clean_section(s) for s in el.get("elements") or []],
            }
            if _int(el.get("offset")) > 0:
                lst["offset"] = _int(el.get("offset"))
            out.append(lst)
    return {"type": "rich_text", "elements": out}


def plain_to_rich_text(text: str) -> dict[str, Any]:
    """Plain text as a rich text value (one paragraph, line breaks kept)."""
    text = (text or "").replace("\r\n", "\n")
    if not text:
        return {"type": "rich_text", "elements": []}
    return {
        "type": "rich_text",
        "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
    }


def is_blank(value: Any) -> bool:
    """True when a rich text value shows nothing (no text, emoji or mention)."""
    for el in top_elements(value):
        sections = el.get("elements") if el.get("type") == "rich_text_list" else [el]
        for sec in sections if isinstance(sections, list) else []:
            if isinstance(sec, Mapping) and any(
                s.text.strip() for s in _spans(sec.get("elements"), {})
            ):
                return False
    return True


def rich_text_append(first: Any, second: Any, *, blank_line: bool = False) -> dict[str, Any]:
    """`second` after `first` (template insertion keeps what was typed).

    `blank_line`: when a paragraph meets a paragraph, join them with an empty line between, as
    a person would type it (in one section, the way Slack's editor stores blank lines), so both
    the text and the HTML part show the gap; a list, quote or code block stands apart anyway."""
    a = clean_rich_text(first)["elements"]
    b = clean_rich_text(second)["elements"]
    if is_blank(a):
        a = []
    if is_blank(b):
        b = []
    if blank_line and a and b:
        last, head = a[-1], b[0]
        if last["type"] == head["type"] == "rich_text_section" and last["elements"]:
            end = last["elements"][-1]
            text = str(end.get("text") or "") if end["type"] == "text" else ""
            trailing = len(text) - len(text.rstrip("\n"))
            gap = "\n" * max(0, 2 - trailing)
            joined = [*last["elements"], *([{"type": "text", "text": gap}] if gap else [])]
            merged = {"type": "rich_text_section", "elements": [*joined, *head["elements"]]}
            return {"type": "rich_text", "elements": [*a[:-1], merged, *b[1:]]}
    return {"type": "rich_text", "elements": [*a, *b]}


def text_length(value: Any) -> int:
    """Characters of text in a rich text value (for limits stated to people)."""
    total = 0
    for el in top_elements(value):
        sections = el.get("elements") if el.get("type") == "rich_text_list" else [el]
        for sec in sections or []:
            if isinstance(sec, Mapping):
                total += sum(len(s.text) for s in _spans(sec.get("elements"), {}))
    return total


# -- templates: render through Jinja2 with every output in a text node -----------------------

MARK_OPEN = "\ue000"
MARK_CLOSE = "\ue001"
_MARK_RE = re.compile("\ue000(\\d+)\ue001")


@dataclass(frozen=True)
class Slot:
    leaf: int  # which paragraph / list item / code block / quote
    container: tuple[Any, ...]  # ("section",) | ("list", top, style, indent, offset) | …
    element: Mapping[str, Any]


def template_source(value: Any) -> tuple[str, list[Slot]]:
    """One Jinja2 source for a whole rich text template: each inline element is preceded by a
    marker naming it, and only text (and link text) is template code."""
    slots: list[Slot] = []
    parts: list[str] = []
    leaf = 0
    for top, el in enumerate(clean_rich_text(value)["elements"]):
        kind = el["type"]
        if kind == "rich_text_list":
            sections = el["elements"]
            container: tuple[Any, ...] = (
                "list",
                top,
                el["style"],
                el["indent"],
                el.get("offset", 0),
            )
        else:
            sections = [el]
            container = (kind, top)
        for sec in sections:
            for inline in sec["elements"]:
                parts.append(f"{MARK_OPEN}{len(slots)}{MARK_CLOSE}")
                if inline["type"] in ("text", "link"):
                    parts.append(str(inline.get("text") or ""))
                slots.append(Slot(leaf, container, inline))
            leaf += 1
    return "".join(parts), slots


def strip_marks(text: str) -> str:
    return text.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")


def from_rendered(
    output: str, slots: list[Slot], render_url: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """Rebuild a rich text value from a rendered template_source: the text after each marker
    belongs to that marker's element. A loop may repeat elements and an `if` drop them."""
    pieces = _MARK_RE.split(output)
    leaves: list[tuple[int, tuple[Any, ...], list[dict[str, Any]]]] = []

    def add(slot: Slot, element: dict[str, Any]) -> None:
        if leaves and leaves[-1][0] == slot.leaf:
            leaves[-1][2].append(element)
        else:
            leaves.append((slot.leaf, slot.container, [element]))

    lead = pieces[0]
    for i in range(1, len(pieces), 2):
        n = int(pieces[i])
        text = strip_marks(pieces[i + 1])
        if n >= len(slots):
            continue
        slot = slots[n]
        el = copy.deepcopy(dict(slot.element))
        if el["type"] == "text":
            el["text"] = (strip_marks(lead) if lead else "") + text
            lead = ""
            add(slot, el)
        elif el["type"] == "link":
            if text:
                el["text"] = text
            else:
                el.pop("text", None)
            if render_url is not None:
                href = safe_href(render_url(str(el.get("url") or "")))
                if href is None:
                    el = {"type": "text", "text": text}
                else:
                    el["url"] = href
            add(slot, el)
        else:
            add(slot, el)
            if text:
                add(slot, {"type": "text", "text": text})
    out: list[dict[str, Any]] = []
    for _leaf, container, elements in leaves:
        elements = [e for e in elements if e["type"] != "text" or e["text"]]
        if is_blank([{"type": "rich_text_section", "elements": elements}]):
            continue  # a paragraph that held only {% if %} / {% endif %}
        section = {"type": "rich_text_section", "elements": elements}
        if container[0] == "list":
            _k, top, style, indent, offset = container
            prev = out[-1] if out else None
            if prev is not None and prev.get("_top") == top:
                prev["elements"].append(section)
                continue
            lst: dict[str, Any] = {
                "type": "rich_text_list",
                "style": style,
                "indent": indent,
                "elements": [section],
                "_top": top,
            }
            if offset:
                lst["offset"] = offset
            out.append(lst)
        else:
            out.append({"type": container[0], "elements": elements})
    for el in out:
        el.pop("_top", None)
    return {"type": "rich_text", "elements": out}


def iter_text(value: Any) -> Iterable[str]:
    """Every text string in a rich text value (for checks such as 'is it Jinja?')."""
    for slot in template_source(value)[1]:
        if slot.element.get("type") in ("text", "link"):
            yield str(slot.element.get("text") or "")
