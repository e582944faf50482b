"""The stdlib parser's message tree for well-formed mail, built without its line-by-line walk.

`email.feedparser` reads every body line through a Python generator: for a 60 KB base64
attachment that is a thousand lines, and over a mailbox it was half of all parsing time. Here
only header blocks go through the stdlib parser; bodies are cut at their blank line and at
MIME boundaries with `bytes.find` and one regex, and set as payloads exactly as the stdlib
parser would set them (same `compat32` Message objects, same strings, same tree).

The cutting is done on the bytes and each piece is decoded on its own. The stdlib decodes the
whole message (ASCII, undecodable bytes as surrogates) and cuts the string: the same strings,
since that decoding maps each byte to one character, but one non-ASCII byte in a text part
made the whole string, a base64 attachment included, decode and search several times slower.

It is strict on purpose: anything the stdlib parser would treat specially (a header defect,
a bare CR line break, message/* parts, multipart/digest, a missing start or close boundary,
adjacent boundaries, a transfer encoding on a multipart) returns None, and the caller parses
the whole message with the stdlib. So the fast path never has to be right about malformed
mail; it only has to recognise well-formed mail. tests/mail/test_mime_fast.py checks that
both paths give the same ParsedMessage on every corpus message.
"""

from __future__ import annotations

import itertools
import re
from email import policy
from email.message import Message

_NAME = re.compile(r"[\041-\071\073-\176]+")  # what the stdlib accepts as a header name
_BARE_CR = re.compile(rb"\r(?!\n)")
_MULTIPART_CTE = ("7bit", "8bit", "binary")
MAX_DEPTH = 8  # deeper nesting goes to the stdlib parser (which handles any depth)


def message_from_bytes(raw: bytes) -> Message | None:
    """What ``BytesParser(policy=compat32).parsebytes(raw)`` returns, or None to say "use it"."""
    if _BARE_CR.search(raw):
        return None  # the stdlib splits lines on a lone CR too: not worth mirroring
    return _entity(raw, 0)


def _text(data: bytes) -> str:
    return data.decode("ascii", "surrogateescape")


def _split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """(header block including its blank line, body), or None if there is no blank line."""
    if data.startswith(b"\r\n"):
        return data[:2], data[2:]
    if data.startswith(b"\n"):
        return data[:1], data[1:]
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n", 0, crlf if crlf != -1 else len(data))
    if crlf == -1 and lf == -1:
        return None
    end = crlf + 4 if lf == -1 else lf + 2
    return data[:end], data[end:]


def _headers(head: str) -> Message | None:
    """`feedparser._parse_headers` for a header block with nothing unusual in it: every line
    a `Name: value` or a continuation of one, no envelope `From ` line."""
    msg = Message(policy=policy.compat32)
    lines = head.split("\n")[:-2]  # drop the blank line and the empty tail after it
    current: list[str] = []
    for text in lines:
        line = text + "\n"
        if line[0] in " \t":
            if not current:
                return None  # a continuation with nothing to continue: a defect
            current.append(line)
            continue
        colon = line.find(":")
        if colon <= 0 or not _NAME.fullmatch(line, 0, colon) or line.startswith("From "):
            return None
        if current:
            msg.set_raw(*policy.compat32.header_source_parse(current))
        current = [line]
    if current:
        msg.set_raw(*policy.compat32.header_source_parse(current))
    return msg


def _entity(data: bytes, depth: int) -> Message | None:
    split = _split_head(data)
    if split is None:
        return None
    head, body = split
    msg = _headers(_text(head))
    if msg is None:
        return None
    maintype = msg.get_content_maintype()
    if maintype == "message":
        return None
    if maintype != "multipart":
        msg.set_payload(_text(body))
        return msg
    return _multipart(msg, body, depth)


def _boundary_lines(body: bytes, marker: bytes, line: re.Pattern[bytes]) -> list[re.Match[bytes]]:
    """`list(line.finditer(body))`, found fast: `bytes.find` jumps to each "--boundary" and
    the pattern checks only those that start a line. (The pattern alone tries `^` at every
    byte, which for a 60 KB base64 attachment was most of the parse.)"""
    found: list[re.Match[bytes]] = []
    i = body.find(marker)
    while i != -1:
        if i == 0 or body[i - 1] == 10:  # "\n"
            m = line.match(body, i)
            if m is not None:
                found.append(m)
        i = body.find(marker, i + 1)
    return found


def _multipart(msg: Message, body: bytes, depth: int) -> Message | None:
    boundary = msg.get_boundary()
    if not boundary or depth >= MAX_DEPTH or msg.get_content_subtype() == "digest":
        return None
    if str(msg.get("content-transfer-encoding", "8bit")).lower() not in _MULTIPART_CTE:
        return None
    try:
        # Back to the bytes it came from (undecodable bytes were surrogates); an RFC 2231
        # boundary with real non-ASCII characters cannot match the body: the stdlib's case.
        marker = boundary.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None
    # A boundary line: "--boundary", maybe "--", maybe blanks, then the line break (or EOF).
    line = re.compile(
        rb"^--" + re.escape(marker) + rb"(?P<end>--)?[ \t]*(?P<eol>\r\n|\n|\Z)", re.MULTILINE
    )
    found = _boundary_lines(body, b"--" + marker, line)
    close = next((i for i, m in enumerate(found) if m.group("end")), None)
    if close is None or close == 0:
        return None  # no close boundary, or no part before it: the stdlib reports defects
    seps = found[: close + 1]
    parts: list[Message] = []
    for this, nxt in itertools.pairwise(seps):
        chunk = body[this.end() : nxt.start()]
        if chunk == b"" or (nxt.start() > 0 and not chunk.endswith(b"\n")):
            return None  # adjacent boundaries, or a boundary not at a line start
        # RFC 2046: the line break before a boundary belongs to the boundary.
        chunk = chunk[:-2] if chunk.endswith(b"\r\n") else chunk[:-1]
        part = _entity(chunk, depth + 1)
        if part is None:
            return None
        parts.append(part)
    first = seps[0]
    if first.start() > 0:
        preamble = body[: first.start()]
        msg.preamble = _text(preamble[:-2] if preamble.endswith(b"\r\n") else preamble[:-1])
    # The stdlib: the text after the close boundary; a nested multipart's empty one is None.
    rest = _text(body[seps[-1].end() :])
    msg.epilogue = rest if depth == 0 else rest or None
    msg.set_payload(list[Message | str](parts))
    return msg
