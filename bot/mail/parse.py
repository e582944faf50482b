"""Parse raw RFC 5322 bytes into a ParsedMessage. Never raises.

The hot path uses the stdlib parser with ``policy.compat32`` (4-10x faster than
``policy.default``, see imap-baseline.md) and decodes headers by hand with
``email.header.decode_header`` and ``email.utils``. Every problem becomes a human-readable
entry in ``defects``; whatever could be read is kept.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import re
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from email import policy
from email.feedparser import BytesFeedParser
from email.header import decode_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parsedate_to_datetime

from bot.mail.html import html_to_text
from bot.mail.mime_fast import message_from_bytes
from bot.mail.quotes import trim_quoted
from bot.mail.types import Address, AttachmentInfo, FullMessage, ParsedMessage

SNIPPET_MAX = 280
# The snippet is the first 280 characters of the new content, which sits at the top: trimming
# the first few KB gives the same snippet as trimming the whole body, at a fraction of the cost.
_SNIPPET_SOURCE_CHARS = 3_000

_PARSER = BytesParser(policy=policy.compat32)
_ID_RE = re.compile(r"<([^<>\s]+)>")
_FOLD_RE = re.compile(r"\r?\n[ \t]*")
_WS_RE = re.compile(r"\s+")
_CAMEL_RE = re.compile(r"(?<!^)(?=[A-Z])")
_QUOTED_LOCAL_RE = re.compile(r'^"([^"\\\s]+)"@(.+)$')
_SURROGATES_RE = re.compile(r"[\udc80-\udcff]")

# --- bounds (security-review #1, #2, #3, #13) -------------------------------------------------
# Every step from raw bytes to rows is linear in the input, and these caps keep the inputs of
# the stdlib steps that are not (RFC 2047 decoding, the feedparser on deep nesting, html.parser)
# small. Each cut is recorded as a defect; nothing fails.

# The budget of one parse: seconds of the parsing thread's CPU, and WALL_FACTOR times that of
# wall clock. Past either the message is stored with its headers only (`header_only`), marked
# with HEADER_ONLY_DEFECT, and listed in the sync log.
PARSE_BUDGET_SECONDS = 2.0
WALL_FACTOR = 4
HEADER_ONLY_DEFECT = "too large or complex to show: stored with headers only; open the original"
# What Slack shows in place of such a message's body.
HEADER_ONLY_NOTE = (
    "This email is too large or complex to show here: open the original in the mailbox."
)
# RFC 2047 decoding (stdlib decode_header) is quadratic in adjacent encoded-words: a Subject, a
# display name or a filename is decoded from at most this many characters.
MAX_ENCODED_HEADER = 16_000
# An address header (From/To/Cc/Reply-To/Bcc) is read up to this size and this many addresses.
MAX_ADDRESS_HEADER = 64_000
MAX_ADDRESSES = 1_000
# References: the first id (the conversation root) and the last ones (RFC 5322 §3.6.4).
MAX_REFERENCES_TAIL = 100
MAX_IN_REPLY_TO = 10
# A References header is read from its start and its end, this many characters in all.
MAX_ID_HEADER = 64_000
# Headers only: the header block read when the body is not (over budget, too complex).
MAX_HEADER_ONLY_BYTES = 512 * 1024
# MIME: more multipart containers than this (counted as "boundary=" parameters before any
# parsing) is not mail anyone writes; the stdlib parser is O(depth x lines) on such nesting.
MAX_MULTIPARTS = 100
# Parts walked and attachments listed per message.
MAX_PARTS = 1_000
MAX_ATTACHMENTS = 250
# The stdlib parser is fed this much at a time, with a look at the budget in between.
_FEED_CHUNK = 256 * 1024
_BOUNDARY_RE = re.compile(rb"boundary\s*=", re.IGNORECASE)


class ParseBudgetExceeded(Exception):
    """The parse ran past its wall-clock budget (or past a structural cap)."""


# Labels seen in real mail that Python's codec registry does not know (or knows worse).
_CHARSET_ALIASES = {
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "x-sjis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "unicode-1-1-utf-7": "utf-7",
    "gb2312": "gb18030",  # superset; mislabelled GBK mail decodes cleanly
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "iso-8859-1": "cp1252",  # Windows clients label cp1252 text as latin-1
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "windows-874": "cp874",
    "x-mac-roman": "mac_roman",
    "ansi_x3.4-1968": "ascii",
    "us-ascii": "ascii",
    "utf8": "utf-8",
    "x-unknown": "",
    "unknown-8bit": "",
    "unknown": "",
    "default": "",
}


class _Defects:
    """Collects defects without duplicates, in order; carries the parse's deadline."""

    def __init__(self, budget: float | None = None) -> None:
        self.items: list[str] = []
        # The budget is CPU time of the parsing thread: what a message costs, the same on a
        # busy machine, so what is kept does not depend on the load. Wall clock bounds it too,
        # at WALL_FACTOR times the budget, for a parse starved of CPU for long.
        self.budget = budget or 0.0
        self.started = time.monotonic()
        self.deadline = None if budget is None else time.thread_time() + budget
        self.wall_deadline = None if budget is None else self.started + budget * WALL_FACTOR

    def add(self, text: str) -> None:
        if text not in self.items and len(self.items) < 50:
            self.items.append(text)

    def check(self) -> None:
        """Raise ParseBudgetExceeded once the deadline has passed."""
        if self.deadline is None or self.wall_deadline is None:
            return
        now = time.monotonic()
        if now > self.wall_deadline:
            raise ParseBudgetExceeded("over the parse budget")
        # A thread cannot use more CPU than the wall clock lets pass: before the budget's
        # worth of wall time, the CPU deadline cannot have passed either, and the thread's
        # CPU clock (a system call, ~1.4 us, where the monotonic clock is read in user
        # space) is not read at all.
        if now > self.started + self.budget and time.thread_time() > self.deadline:
            raise ParseBudgetExceeded("over the parse budget")


# --- bytes and header decoding ---------------------------------------------------------------


def _codec_for(charset: str | None) -> str | None:
    """A Python codec name for a MIME charset label, "" for "guess", None if unknown."""
    if not charset:
        return ""
    label = charset.strip().strip('"').lower()
    label = _CHARSET_ALIASES.get(label, label)
    if not label:
        return ""
    try:
        return codecs.lookup(label).name
    except (LookupError, UnicodeError, ValueError):
        # A raw 8-bit label (surrogates) raises UnicodeEncodeError: unknown, not a failure
        # of the whole parse (security-review #22).
        return None


def _guess_decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def decode_bytes(data: bytes, charset: str | None, defects: _Defects, where: str) -> str:
    """Decode with the declared charset; unknown or wrong charsets fall back, with a defect."""
    codec = _codec_for(charset)
    if codec is None:
        defects.add(f"{where}: unknown charset {charset!r}, decoded as utf-8/latin-1")
        return _guess_decode(data)
    if codec == "":
        return _guess_decode(data)
    if codec == "ascii":
        # Declared ASCII with 8-bit bytes is common; utf-8 is the best guess.
        return _guess_decode(data)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        if codec != "utf-8":
            defects.add(f"{where}: bytes invalid for charset {charset!r}, some replaced")
            return data.decode(codec, errors="replace")
        defects.add(f"{where}: invalid utf-8, decoded as latin-1")
        return data.decode("cp1252", errors="replace")
    except Exception:  # some codecs (utf-7, iso-2022) raise other errors on garbage
        defects.add(f"{where}: undecodable with charset {charset!r}")
        return _guess_decode(data)


def _fix_8bit(value: str, defects: _Defects, name: str) -> str:
    """compat32 keeps raw 8-bit header bytes as surrogates; turn them into text."""
    if value.isascii() or not _SURROGATES_RE.search(value):
        return value
    defects.add(f"{name}: raw 8-bit bytes in header")
    return _guess_decode(value.encode("ascii", "surrogateescape"))


def decode_header_value(value: str, defects: _Defects, name: str) -> str:
    """Unfold and decode RFC 2047 encoded-words (adjacent words are joined before decoding)."""
    value = _fix_8bit(value, defects, name)
    if len(value) > MAX_ENCODED_HEADER:
        defects.add(f"{name}: longer than {MAX_ENCODED_HEADER:,} characters, cut")
        # At a blank, so the last encoded-word kept is whole.
        cut = value.rfind(" ", MAX_ENCODED_HEADER // 2, MAX_ENCODED_HEADER)
        value = value[: cut if cut > 0 else MAX_ENCODED_HEADER]
    if "\n" in value:
        value = _FOLD_RE.sub(" ", value)
    if "=?" not in value:
        return value.strip()
    try:
        parts = decode_header(value)
    except Exception:
        defects.add(f"{name}: malformed encoded-word")
        return value.strip()
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None:
            out.append(chunk.decode("raw-unicode-escape", errors="replace"))
        else:
            out.append(decode_bytes(chunk, charset, defects, name))
    return "".join(out).strip()


def _collapse(text: str) -> str:
    return " ".join(text.split())


# --- structured headers ----------------------------------------------------------------------


def _normalize_id(ident: str) -> str:
    m = _QUOTED_LOCAL_RE.match(ident)
    return f"{m.group(1)}@{m.group(2)}" if m else ident


def parse_id_list(value: str | None) -> list[str]:
    """Message-IDs inside <...>, brackets removed, order kept, duplicates and garbage dropped."""
    if not value:
        return []
    seen: set[str] = set()
    ids: list[str] = []
    for raw in _ID_RE.findall(value):
        ident = _normalize_id(raw)
        if ident not in seen:
            seen.add(ident)
            ids.append(ident)
    return ids


def is_clean_single_id(value: str | None) -> bool:
    """True if the header is exactly one <id> and nothing else (notmuch's trust test)."""
    if not value:
        return True
    v = value.strip()
    return bool(_ID_RE.fullmatch(v))


# Fast path for the common shapes: 'a@b', 'Name <a@b>', '"Name, X" <a@b>'. Anything with
# comments, groups, escapes or stray brackets goes to email.utils.getaddresses (slow, thorough).
_SIMPLE_ADDR_RE = re.compile(
    r'\s*(?:"([^"\\]*)"|([^",<>()\\:;@]*?))\s*<\s*([^<>()\s,;:"\\]+@[^<>()\s,;:"\\]+)\s*>\s*'
    r'|\s*([^<>()\s,;:"\\]+@[^<>()\s,;:"\\]+)\s*'
)


def split_commas(value: str) -> list[str]:
    """`value` split at the commas outside double quotes, in one pass. (A lookahead regex did
    this by rescanning the rest of the header at every comma: quadratic, security-review #2.)
    The fast path below only takes values without backslashes, so a quote is never escaped."""
    if '"' not in value:
        return value.split(",")
    pieces: list[str] = []
    start = 0
    inside = False
    for i, ch in enumerate(value):
        if ch == '"':
            inside = not inside
        elif ch == "," and not inside:
            pieces.append(value[start:i])
            start = i + 1
    pieces.append(value[start:])
    return pieces


def _fast_addresses(value: str) -> list[tuple[str, str]] | None:
    if "(" in value or ";" in value or "\\" in value:
        return None
    pairs: list[tuple[str, str]] = []
    for piece in split_commas(value):
        if not piece.strip():
            continue
        m = _SIMPLE_ADDR_RE.fullmatch(piece)
        if m is None:
            return None
        if m.group(3):
            pairs.append(((m.group(1) or m.group(2) or "").strip(), m.group(3)))
        else:
            pairs.append(("", m.group(4)))
    return pairs


def _one_long_address(value: str) -> list[tuple[str, str]]:
    """A single entry longer than the cap (a display name of 50,000 encoded-words): its last
    <address>, with the start of the name before it. No address: nothing."""
    lt = value.rfind("<")
    gt = value.find(">", lt)
    if lt < 0 or gt < 0:
        return []
    display = _FOLD_RE.sub(" ", value[: min(lt, MAX_ENCODED_HEADER)]).replace('"', "").strip()
    return [(display, value[lt + 1 : gt])]


def parse_addresses(value: str | None, defects: _Defects, name: str) -> list[Address]:
    if not value:
        return []
    value = _fix_8bit(value, defects, name)
    pairs: list[tuple[str, str]] | None = None
    if len(value) > MAX_ADDRESS_HEADER:
        defects.add(f"{name}: longer than {MAX_ADDRESS_HEADER:,} characters, the rest dropped")
        # Cut at a comma, so the last address kept is whole (or nearly: a quoted comma).
        cut = value.rfind(",", 0, MAX_ADDRESS_HEADER)
        if cut > 0:
            value = value[:cut]
        else:
            pairs = _one_long_address(value)
    if pairs is None:
        if "\n" in value:
            value = _FOLD_RE.sub(" ", value)
        try:
            pairs = _fast_addresses(value)
            if pairs is None:
                pairs = getaddresses([value])
        except Exception:
            defects.add(f"{name}: unparseable address list")
            return []
    if len(pairs) > MAX_ADDRESSES:
        defects.add(f"{name}: {len(pairs):,} addresses, the first {MAX_ADDRESSES:,} kept")
        pairs = pairs[:MAX_ADDRESSES]
    result: list[Address] = []
    for display, addr in pairs:
        addr = addr.replace(" ", "").strip("<>")
        if not addr:
            continue
        decoded = decode_header_value(display, defects, name) if display else ""
        result.append(Address(name=_collapse(decoded), email=addr))
    return result


def _parse_date(value: str | None, defects: _Defects) -> datetime | None:
    if not value:
        defects.add("Date: missing")
        return None
    try:
        parsed = parsedate_to_datetime(_collapse(value))
    except Exception:
        parsed = None
    if parsed is None:
        defects.add(f"Date: unparseable {value[:60]!r}")
        return None
    try:
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        defects.add(f"Date: out of range {value[:60]!r}")
        return None


def synthetic_message_id(raw: bytes) -> str:
    """Stable for the same bytes, never colliding with a real domain."""
    return f"{hashlib.sha256(raw).hexdigest()[:32]}@mailroom.invalid"


def _own_message_id(value: str | None, raw: bytes, defects: _Defects) -> tuple[str, bool]:
    ids = parse_id_list(value)
    if ids:
        return ids[0], False
    if value:
        token = value.strip()
        # Some senders omit the brackets; accept a single bare token that looks like an id.
        if token and "@" in token and not _WS_RE.search(token) and "<" not in token:
            defects.add("Message-ID: missing angle brackets")
            return _normalize_id(token), False
        defects.add(f"Message-ID: invalid {value[:60]!r}, synthetic id used")
    else:
        defects.add("Message-ID: missing, synthetic id used")
    return synthetic_message_id(raw), True


def _header_map(msg: Message) -> dict[str, str]:
    """First value of each header by lower-case name, raw (compat32 str, maybe surrogates)."""
    headers: dict[str, str] = {}
    for name, value in msg.raw_items():
        key = name.lower()
        if key not in headers:
            headers[key] = value if isinstance(value, str) else str(value)
    return headers


def _is_auto(headers: dict[str, str]) -> bool:
    auto = headers.get("auto-submitted", "").strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if headers.get("precedence", "").strip().lower() in ("bulk", "junk", "list", "auto_reply"):
        return True
    return any(h in headers for h in ("x-autoreply", "x-autorespond", "x-auto-response"))


def _list_id(value: str | None, defects: _Defects) -> str | None:
    if not value:
        return None
    m = re.search(r"<([^<>]+)>", value)
    return m.group(1).strip() if m else (decode_header_value(value, defects, "List-Id") or None)


# --- MIME walk ---------------------------------------------------------------------------------


def _walk(msg: Message) -> Iterator[tuple[int, Message, bool]]:
    """(index, part, inside an attached message) in Message.walk() order, without recursion."""
    stack: list[tuple[Message, bool]] = [(msg, False)]
    index = 0
    while stack:
        part, attached = stack.pop()
        yield index, part, attached
        index += 1
        if part.is_multipart():
            payload = part.get_payload()
            nested = attached or part.get_content_maintype() == "message"
            if isinstance(payload, list):
                stack.extend((sub, nested) for sub in reversed(payload) if isinstance(sub, Message))


def _camel(name: str) -> str:
    return _CAMEL_RE.sub(" ", name.removesuffix("Defect")).lower()


def _part_defects(part: Message, where: str, defects: _Defects) -> None:
    for d in getattr(part, "defects", ()):
        defects.add(f"{where}: {_camel(type(d).__name__)}")


def _filename(part: Message, defects: _Defects) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        defects.add("attachment: unreadable filename")
        return None
    if name is None:
        return None
    if not isinstance(name, str):
        name = str(name)
    # Non-standard but common: RFC 2047 inside a quoted filename parameter.
    return _collapse(decode_header_value(name, defects, "filename")) or None


def _payload_bytes(part: Message, defects: _Defects, where: str) -> bytes:
    if part.is_multipart():
        # message/rfc822: the attached message itself.
        try:
            inner = part.get_payload(0)
            return inner.as_bytes() if isinstance(inner, Message) else b""
        except Exception:
            defects.add(f"{where}: attached message could not be serialised")
            return b""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        defects.add(f"{where}: undecodable payload")
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return b""


_B64_VALID = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_SPACE = b" \t\r\n"


def _base64_size(part: Message) -> int | None:
    """The decoded size of a well-formed base64 part, counted without decoding it; None when
    the payload is anything else (the caller decodes, as the stdlib would).

    An attachment is listed with its size, and decoding 100 KB of base64 to take its length
    was a tenth of all parsing. Clean base64 (only the alphabet, whitespace, and one or two
    "=" at the very end, a multiple of four characters) decodes to exactly 3 bytes per 4
    characters less the padding, so the count is the decoder's answer."""
    payload = part.get_payload()
    if not isinstance(payload, str) or not payload.isascii():
        return None
    if str(part.get("content-transfer-encoding", "")).lower() != "base64":
        return None
    data = payload.encode("ascii").translate(None, _B64_SPACE)
    n = len(data)
    if n % 4 or data.translate(None, _B64_VALID):
        return None
    pad = n - len(data.rstrip(b"="))
    if pad > 2 or data.find(b"=") not in (-1, n - pad):
        return None
    return n // 4 * 3 - pad


_CHARSET_PARAM_RE = re.compile(r';\s*charset\s*=\s*"?([^";\s]+)', re.IGNORECASE)


class _PartHeaders:
    """The few MIME headers the body walk needs, read once per part (Message.get is slow)."""

    __slots__ = ("charset", "ctype", "disposition", "maybe_named")

    def __init__(self, part: Message) -> None:
        ctype_raw = disposition_raw = None
        for name, value in part.raw_items():
            key = name.lower()
            if key == "content-type" and ctype_raw is None:
                ctype_raw = str(value)
            elif key == "content-disposition" and disposition_raw is None:
                disposition_raw = str(value)
        ctype = ctype_raw.partition(";")[0].strip().lower() if ctype_raw else ""
        if ctype.count("/") != 1:
            ctype = part.get_default_type()
        self.ctype = ctype
        self.disposition = (
            disposition_raw.partition(";")[0].strip().lower() or None if disposition_raw else None
        )
        # Only parts that might carry a filename pay for Message.get_filename().
        self.maybe_named = bool(disposition_raw and "name" in disposition_raw.lower()) or bool(
            ctype_raw and "name" in ctype_raw.lower()
        )
        charset = None
        if ctype_raw and "charset" in ctype_raw.lower():
            m = _CHARSET_PARAM_RE.search(ctype_raw)
            charset = m.group(1).lower() if m else part.get_content_charset()
        self.charset = charset


def _content_id(part: Message) -> str | None:
    cid = part.get("Content-ID")
    if not cid:
        return None
    cid = str(cid).strip()
    return cid[1:-1].strip() if cid.startswith("<") and cid.endswith(">") else cid or None


class _Body:
    def __init__(self) -> None:
        self.plain: list[str] = []
        self.html: str | None = None
        self.attachments: list[AttachmentInfo] = []


def _read_body(msg: Message, defects: _Defects) -> _Body:
    body = _Body()
    for index, part, attached in _walk(msg):
        if index >= MAX_PARTS:
            defects.add(f"MIME: more than {MAX_PARTS:,} parts, the rest not read")
            break
        if index % 64 == 0:
            defects.check()
        where = f"part {index}"
        _part_defects(part, "message" if index == 0 else where, defects)
        ph = _PartHeaders(part)
        ctype = ph.ctype
        maintype = ctype.partition("/")[0]
        if attached and maintype != "message":
            continue  # parts of a forwarded .eml belong to that attachment, not to this body
        if maintype == "multipart":
            if part.is_multipart():
                continue
            # Broken multipart (no boundary): the parser kept the body as text; so do we.
            ctype, maintype = "text/plain", "text"
        if attached:
            continue  # the inner Message object of an attached message/rfc822
        disposition = ph.disposition
        filename = _filename(part, defects) if ph.maybe_named else None
        is_body_text = (
            maintype == "text"
            and disposition != "attachment"
            and filename is None
            and ctype in ("text/plain", "text/html")
        )
        if is_body_text:
            data = _payload_bytes(part, defects, where)
            text = decode_bytes(data, ph.charset, defects, where)
            if "\r" in text:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            if ctype == "text/plain":
                body.plain.append(text)
            elif body.html is None:
                body.html = text
            continue
        if len(body.attachments) >= MAX_ATTACHMENTS:
            defects.add(f"attachments: more than {MAX_ATTACHMENTS:,}, the rest not listed")
            continue
        size = _base64_size(part)
        if size is None:
            size = len(_payload_bytes(part, defects, where))
        if filename is None and maintype == "message":
            filename = "forwarded-message.eml"
        cid = _content_id(part)
        body.attachments.append(
            AttachmentInfo(
                filename=filename or f"part-{index}{_extension(ctype)}",
                content_type=ctype,
                size=size,
                content_id=cid,
                inline=disposition == "inline" or (disposition is None and cid is not None),
                part_index=index,
            )
        )
    return body


def _extension(ctype: str) -> str:
    return {
        "text/plain": ".txt",
        "text/html": ".html",
        "text/calendar": ".ics",
        "image/png": ".png",
        "image/jpeg": ".jpg",
        "image/gif": ".gif",
        "application/pdf": ".pdf",
        "message/rfc822": ".eml",
        "message/delivery-status": ".txt",
    }.get(ctype, ".bin")


def make_snippet(text: str) -> str:
    trimmed = _collapse(trim_quoted(text[:_SNIPPET_SOURCE_CHARS]))
    if len(trimmed) <= SNIPPET_MAX:
        return trimmed
    return trimmed[: SNIPPET_MAX - 1].rstrip() + "…"


# --- entry points ------------------------------------------------------------------------------


def _parse_bytes(raw: bytes, defects: _Defects | None = None) -> Message:
    # Well-formed mail skips the stdlib's line-by-line body walk (bot/mail/mime_fast.py);
    # the tree is the same either way.
    msg = message_from_bytes(raw)
    if msg is not None:
        return msg
    # The stdlib parser tests every line against every open boundary: O(depth x lines)
    # (security-review #13). Nesting that deep is counted before it starts, and it is fed in
    # pieces so the budget is looked at while it works.
    if len(_BOUNDARY_RE.findall(raw)) > MAX_MULTIPARTS:
        raise ParseBudgetExceeded(f"MIME: more than {MAX_MULTIPARTS} multipart containers")
    if defects is None or defects.deadline is None:
        return _PARSER.parsebytes(raw)
    feeder = BytesFeedParser(policy=policy.compat32)
    for start in range(0, len(raw), _FEED_CHUNK):
        feeder.feed(raw[start : start + _FEED_CHUNK])
        defects.check()
    return feeder.close()


def _id_lists(h: dict[str, str], message_id: str, defects: _Defects) -> tuple[list[str], list[str]]:
    """(In-Reply-To, References) without the message's own id, capped: References keeps its
    first id (the root) and the last MAX_REFERENCES_TAIL (security-review #1)."""
    # Only its first ids are kept: its start is all that is read.
    irt = [
        i for i in parse_id_list((h.get("in-reply-to") or "")[:MAX_ID_HEADER]) if i != message_id
    ]
    if len(irt) > MAX_IN_REPLY_TO:
        defects.add(f"In-Reply-To: {len(irt):,} ids, the first {MAX_IN_REPLY_TO} kept")
        irt = irt[:MAX_IN_REPLY_TO]
    raw_refs = h.get("references") or ""
    if len(raw_refs) > MAX_ID_HEADER:
        # Only its first id and its last ones are kept: read the head and the tail, not a
        # million ids in between (a blank between them, so no id is glued across the cut).
        raw_refs = raw_refs[:4_000] + " " + raw_refs[-(MAX_ID_HEADER - 4_000) :]
        defects.add(f"References: longer than {MAX_ID_HEADER:,} characters, the middle skipped")
    refs = [i for i in parse_id_list(raw_refs) if i != message_id]
    if len(refs) > MAX_REFERENCES_TAIL + 1:
        defects.add(
            f"References: {len(refs):,} ids, the first and the last {MAX_REFERENCES_TAIL} kept"
        )
        refs = [refs[0], *refs[-MAX_REFERENCES_TAIL:]]
    return irt, refs


def _parse(raw: bytes, budget: float | None) -> ParsedMessage:
    defects = _Defects(budget)
    msg = _parse_bytes(raw, defects)
    h = _header_map(msg)
    message_id, synthetic = _own_message_id(h.get("message-id"), raw, defects)
    irt_raw = h.get("in-reply-to")
    in_reply_to, references = _id_lists(h, message_id, defects)
    defects.check()
    body = _read_body(msg, defects)
    text = "\n".join(body.plain) if body.plain else ""
    if not text.strip() and body.html is not None:
        text = html_to_text(body.html, check=defects.check)
    defects.check()
    subject = _collapse(decode_header_value(h.get("subject", ""), defects, "Subject"))
    from_list = parse_addresses(h.get("from"), defects, "From")
    return ParsedMessage(
        message_id=message_id,
        message_id_synthetic=synthetic,
        in_reply_to=in_reply_to,
        references=references,
        subject=subject,
        from_=from_list[0] if from_list else None,
        reply_to=parse_addresses(h.get("reply-to"), defects, "Reply-To"),
        to=parse_addresses(h.get("to"), defects, "To"),
        cc=parse_addresses(h.get("cc"), defects, "Cc"),
        bcc=parse_addresses(h.get("bcc"), defects, "Bcc"),
        date=_parse_date(h.get("date"), defects),
        text=text,
        html=body.html,
        attachments=body.attachments,
        snippet=make_snippet(text),
        defects=defects.items,
        size=len(raw),
        list_id=_list_id(h.get("list-id"), defects),
        auto_submitted=_is_auto(h),
        in_reply_to_clean=is_clean_single_id(irt_raw),
    )


def _fallback(raw: bytes, exc: BaseException) -> ParsedMessage:
    """Last resort: the parser itself failed. Keep the bytes readable and say why."""
    text = raw.decode("utf-8", errors="replace")
    return ParsedMessage(
        message_id=synthetic_message_id(raw),
        message_id_synthetic=True,
        in_reply_to=[],
        references=[],
        subject="",
        from_=None,
        reply_to=[],
        to=[],
        cc=[],
        bcc=[],
        date=None,
        text=text,
        html=None,
        attachments=[],
        snippet=_collapse(text)[:SNIPPET_MAX],
        defects=[f"parser failure: {type(exc).__name__}: {str(exc)[:200]}"],
        size=len(raw),
        list_id=None,
        auto_submitted=False,
    )


def header_only(raw: bytes, reason: str) -> ParsedMessage:
    """What can be read cheaply of a message whose body could not be read in time (or is too
    complex): the header block alone (at most MAX_HEADER_ONLY_BYTES), every header decoded
    with the same caps, no body, no attachments, marked with HEADER_ONLY_DEFECT. Never raises.
    """
    try:
        return _header_only(raw, reason)
    except Exception as exc:
        parsed = _fallback(raw, exc)
        parsed.text, parsed.snippet = "", ""
        parsed.defects = [HEADER_ONLY_DEFECT, reason, *parsed.defects]
        return parsed


def _header_only(raw: bytes, reason: str) -> ParsedMessage:
    defects = _Defects()
    defects.add(HEADER_ONLY_DEFECT)
    defects.add(reason)
    head = raw[:MAX_HEADER_ONLY_BYTES]
    ends = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    if ends:
        head = head[: min(ends)]
    elif len(raw) > MAX_HEADER_ONLY_BYTES:
        defects.add(f"headers: longer than {MAX_HEADER_ONLY_BYTES:,} bytes, the rest not read")
    msg = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
    h = _header_map(msg)
    message_id, synthetic = _own_message_id(h.get("message-id"), raw, defects)
    in_reply_to, references = _id_lists(h, message_id, defects)
    from_list = parse_addresses(h.get("from"), defects, "From")
    return ParsedMessage(
        message_id=message_id,
        message_id_synthetic=synthetic,
        in_reply_to=in_reply_to,
        references=references,
        subject=_collapse(decode_header_value(h.get("subject", ""), defects, "Subject")),
        from_=from_list[0] if from_list else None,
        reply_to=parse_addresses(h.get("reply-to"), defects, "Reply-To"),
        to=parse_addresses(h.get("to"), defects, "To"),
        cc=parse_addresses(h.get("cc"), defects, "Cc"),
        bcc=parse_addresses(h.get("bcc"), defects, "Bcc"),
        date=_parse_date(h.get("date"), defects),
        text="",
        html=None,
        attachments=[],
        snippet="",
        defects=defects.items,
        size=len(raw),
        list_id=_list_id(h.get("list-id"), defects),
        auto_submitted=_is_auto(h),
        in_reply_to_clean=is_clean_single_id(h.get("in-reply-to")),
    )


def is_header_only(defects: object) -> bool:
    """Whether a stored message's parse defects say it was kept with its headers only."""
    return isinstance(defects, (list, tuple)) and HEADER_ONLY_DEFECT in defects


def parse_message(raw: bytes, *, budget: float | None = PARSE_BUDGET_SECONDS) -> ParsedMessage:
    """Parse raw message bytes. Never raises: problems are listed in ``defects``.

    `budget`: seconds of wall clock; a parse that takes longer (or a MIME structure past the
    caps) gives `header_only` instead. None: no budget (tests comparing parsers)."""
    try:
        raw = bytes(raw)
    except Exception as exc:
        return _fallback(b"", exc)
    try:
        return _parse(raw, budget)
    except ParseBudgetExceeded as exc:
        return header_only(raw, str(exc))
    except RecursionError:  # absurdly nested MIME (message/rfc822 in message/rfc822 ...)
        return header_only(raw, "MIME: nested too deep to read")
    except Exception as exc:
        return _fallback(raw, exc)


def full_view(raw: bytes, *, budget: float | None = PARSE_BUDGET_SECONDS) -> FullMessage:
    """All headers decoded and the untrimmed body, for the "Open" modal. Never raises.
    Over the budget: the headers and a note instead of the body."""
    defects = _Defects(budget)
    try:
        msg = _parse_bytes(bytes(raw), defects)
        headers = [
            (name, decode_header_value(str(value), defects, name))
            for name, value in itertools.islice(msg.raw_items(), 500)
        ]
        body = _read_body(msg, defects)
        text = "\n".join(body.plain) if body.plain else ""
        if not text.strip() and body.html is not None:
            text = html_to_text(body.html, check=defects.check)
    except ParseBudgetExceeded as exc:
        p = header_only(bytes(raw), str(exc))
        return FullMessage(headers=_summary_headers(p), text="", html=None, defects=p.defects)
    except Exception as exc:
        text = bytes(raw)[:MAX_HEADER_ONLY_BYTES].decode("utf-8", errors="replace")
        return FullMessage(headers=[], text=text, html=None, defects=[f"parser failure: {exc}"])
    return FullMessage(
        headers=headers,
        text=text,
        html=body.html,
        attachments=body.attachments,
        defects=defects.items,
    )


def _summary_headers(p: ParsedMessage) -> list[tuple[str, str]]:
    out = [("Subject", p.subject)]
    if p.from_ is not None:
        out.append(("From", p.from_.formatted()))
    for name, addrs in (("To", p.to), ("Cc", p.cc)):
        if addrs:
            out.append((name, ", ".join(a.formatted() for a in addrs)))
    if p.date is not None:
        out.append(("Date", p.date.isoformat()))
    out.append(("Message-ID", f"<{p.message_id}>"))
    return out


def extract_attachment(raw: bytes, part_index: int) -> tuple[AttachmentInfo, bytes]:
    """The decoded bytes of one attachment listed by parse_message. LookupError if absent."""
    for info, data in extract_attachments(raw, [part_index]):
        return info, data
    raise LookupError(f"no attachment at part index {part_index}")


def extract_attachments(
    raw: bytes, part_indexes: Iterable[int] | None = None, *, limit: int = MAX_ATTACHMENTS
) -> list[tuple[AttachmentInfo, bytes]]:
    """The decoded bytes of the attachments parse_message lists, from one parse and one walk
    of the message: those at `part_indexes` (all when None), in part order, at most `limit`.
    (Extracting them one by one parsed the whole message once per attachment: quadratic in
    their number, security-review #15.)"""
    defects = _Defects()
    try:
        msg = _parse_bytes(bytes(raw))
    except ParseBudgetExceeded:
        return []  # too complex to parse: parse_message listed no attachments either
    wanted = None if part_indexes is None else set(part_indexes)
    infos = {
        info.part_index: info
        for info in _read_body(msg, defects).attachments
        if wanted is None or info.part_index in wanted
    }
    out: list[tuple[AttachmentInfo, bytes]] = []
    if not infos or limit <= 0:
        return out
    last = max(infos)
    for index, part, _attached in _walk(msg):
        if index > last:
            break
        info = infos.get(index)
        if info is not None:
            out.append((info, _payload_bytes(part, defects, f"part {index}")))
            if len(out) >= limit:
                break
    return out
