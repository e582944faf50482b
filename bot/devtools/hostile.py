"""Poison emails: messages anyone can send that once cost minutes to parse or store.

Each shape is a function returning raw RFC 5322 bytes. The shapes of the security review
(`../shared/notes/security-review.md`, findings #1, #2, #3, #13, #15, #22, #23) are here at or
above the sizes it measured, with more of the same kinds. tests/hostile/ stores each one on
SQLite and PostgreSQL in a child process with a memory limit, and bench/hostile_bench.py reports
the time and memory each took.

`python -m bot.devtools.hostile store SHAPE DB_URL` parses and stores one shape through the
real ingest path in this process and prints what it cost and what was stored, as JSON. The
account `hostile@ours.example` is created in the database when missing.
"""

from __future__ import annotations

import base64
import json
import resource
import sys
import time
from collections.abc import Callable

_HEAD = (
    "From: Mallory <mallory@evil.example>\r\n"
    "To: Team <hostile@ours.example>\r\n"
    "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
)


def _mail(headers: str, body: str = "hello\r\n", *, mid: str) -> bytes:
    return (f"{headers}Message-ID: <{mid}@evil.example>\r\n\r\n{body}").encode(
        "utf-8", "surrogateescape"
    )


def _simple(extra: str, body: str = "hello\r\n", *, mid: str) -> bytes:
    return _mail(_HEAD + "Subject: poison\r\n" + extra, body, mid=mid)


def references_2mb() -> bytes:
    """#1: 200,000 distinct ids in References (2.1 MB), folded."""
    ids = "\r\n ".join(f"<ref{i:07d}@evil.example>" for i in range(200_000))
    return _simple(f"References: {ids}\r\n", mid="refs2mb")


def references_one_line_2mb() -> bytes:
    """#1, unfolded: one 2 MB header line, duplicates included."""
    ids = " ".join(f"<r{i % 150_000}@e.example>" for i in range(200_000))
    return _simple(f"References: {ids}\r\n", mid="refsline")


def in_reply_to_many() -> bytes:
    """In-Reply-To naming 50,000 ids."""
    ids = " ".join(f"<irt{i}@evil.example>" for i in range(50_000))
    return _simple(f"In-Reply-To: {ids}\r\n", mid="irtmany")


def references_control_chars() -> bytes:
    """#23: a control character inside a referenced id."""
    return _simple(
        "References: <root\x01x@cust.example> <ok@cust.example>\r\n"
        "In-Reply-To: <ok@cust.example>\r\n",
        mid="refsctrl",
    )


def to_quote_then_commas() -> bytes:
    """#2: one '"' then 'a,' x 100,000 (200 kB) in To."""
    return _mail(
        'From: Mallory <mallory@evil.example>\r\nTo: "' + "a," * 100_000 + "\r\n"
        "Subject: poison\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n",
        mid="toquote",
    )


def to_quoted_names_20k() -> bytes:
    """#2: a plausible list of 20,000 quoted names (about 640 kB)."""
    names = ",\r\n ".join(f'"Person, No {i}" <p{i}@cust.example>' for i in range(20_000))
    return _mail(
        f"From: Mallory <mallory@evil.example>\r\nTo: {names}\r\n"
        "Subject: poison\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n",
        mid="toquoted20k",
    )


def cc_comments_2mb() -> bytes:
    """Address comments force the stdlib getaddresses path: 2 MB of them in Cc."""
    cc = ", ".join(f"p{i}@cust.example (Person {i})" for i in range(80_000))
    return _simple(f"Cc: {cc}\r\n", mid="cccomments")


def from_name_encoded_words() -> bytes:
    """#13 on a display name: 50,000 adjacent encoded-words in From."""
    words = " ".join("=?utf-8?q?ab?=" for _ in range(50_000))
    return _mail(
        f"From: {words} <mallory@evil.example>\r\nTo: hostile@ours.example\r\n"
        "Subject: poison\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n",
        mid="fromwords",
    )


def subject_encoded_words() -> bytes:
    """#13: 100,000 adjacent encoded-words in Subject (1.4 MB)."""
    words = "\r\n ".join("=?utf-8?b?w6k=?=" for _ in range(100_000))
    return _mail(_HEAD + f"Subject: {words}\r\n", mid="subjwords")


def subject_huge_plain() -> bytes:
    """A 5 MB Subject without encoded-words."""
    return _mail(_HEAD + "Subject: " + "x" * 5_000_000 + "\r\n", mid="subjhuge")


def many_headers() -> bytes:
    """200,000 header lines."""
    extra = "".join(f"X-Junk-{i}: {i}\r\n" for i in range(200_000))
    return _simple(extra, mid="manyheaders")


def _html(html: str, mid: str) -> bytes:
    return _simple("MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n", html, mid=mid)


def html_nested_links_2mb() -> bytes:
    """#3: links nested 60,000 deep (2 MB)."""
    return _html('<a href="https://e.example/">' * 60_000 + "t" + "</a>" * 60_000, "nesteda")


def html_unterminated_attr() -> bytes:
    """#3: '<a b="' x 350,000 (2 MB): html.parser is quadratic on it."""
    return _html('<a b="' * 350_000, "unterm")


def html_open_tags() -> bytes:
    """#3: '<a' x 1,000,000 (2 MB)."""
    return _html("<a" * 1_000_000, "opentags")


def html_lone_brackets() -> bytes:
    """'< ' x 1,000,000: every '<' starts nothing."""
    return _html("< " * 1_000_000, "lonelt")


def html_empty_text() -> bytes:
    """#3: HTML whose text is empty (styles and an image without alt)."""
    return _html(
        "<html><head><style>" + "p{}" * 100_000 + "</style></head>"
        '<body><img src="cid:x"></body></html>',
        "emptytext",
    )


def html_unclosed_comments() -> bytes:
    """'<!--' x 500,000 and an unclosed script."""
    return _html("<p>x</p><script>" + "<!--" * 500_000, "comments")


def _multipart(parts: list[str], boundary: str, subtype: str = "mixed") -> str:
    inner = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts)
    return f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n{inner}--{boundary}--'


def deep_mime() -> bytes:
    """#13: multipart nested 400 deep around 300,000 lines of text."""
    body = "Content-Type: text/plain\r\n\r\n" + "line\r\n" * 300_000
    for depth in range(400):
        body = _multipart([body], f"b{depth}")
    head, _, rest = body.partition("\r\n\r\n")
    return _simple(f"MIME-Version: 1.0\r\n{head}\r\n", rest, mid="deepmime")


def deep_mime_unclosed() -> bytes:
    """Nesting 400 deep with no close boundaries (the stdlib path, line by line)."""
    lines = []
    for depth in range(400):
        lines.append(f"--b{depth - 1}\r\n" if depth else "")
        lines.append(f'Content-Type: multipart/mixed; boundary="b{depth}"\r\n\r\n')
    body = "".join(lines) + "--b399\r\nContent-Type: text/plain\r\n\r\n" + "x\r\n" * 200_000
    head, _, rest = body.partition("\r\n\r\n")
    return _simple(f"MIME-Version: 1.0\r\n{head}\r\n", rest, mid="deepunclosed")


def nested_rfc822_2000() -> bytes:
    """message/rfc822 nested 2,000 deep."""
    body = "Subject: inner\r\n\r\nhi\r\n"
    for _ in range(2_000):
        body = "Content-Type: message/rfc822\r\n\r\n" + body
    head, _, rest = body.partition("\r\n\r\n")
    return _simple(f"MIME-Version: 1.0\r\n{head}\r\n", rest, mid="rfc822deep")


def attachments_2000() -> bytes:
    """#15: 2,000 small attachments."""
    data = base64.b64encode(b"%PDF-1.4 tiny").decode()
    parts = ["Content-Type: text/plain\r\n\r\nsee attached"] + [
        f'Content-Type: application/pdf; name="f{i}.pdf"\r\n'
        f'Content-Disposition: attachment; filename="f{i}.pdf"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{data}"
        for i in range(2_000)
    ]
    body = _multipart(parts, "att")
    head, _, rest = body.partition("\r\n\r\n")
    return _simple(f"MIME-Version: 1.0\r\n{head}\r\n", rest, mid="att2000")


def parts_50k() -> bytes:
    """50,000 empty text parts."""
    body = _multipart(["Content-Type: text/plain\r\n\r\nx"] * 50_000, "many")
    head, _, rest = body.partition("\r\n\r\n")
    return _simple(f"MIME-Version: 1.0\r\n{head}\r\n", rest, mid="parts50k")


def boundary_flood() -> bytes:
    """500 multipart containers side by side, each declaring its own boundary."""
    parts = [_multipart(["Content-Type: text/plain\r\n\r\nx"], f"in{i}") for i in range(500)]
    body = _multipart(parts, "outer")
    head, _, rest = body.partition("\r\n\r\n")
    return _simple(f"MIME-Version: 1.0\r\n{head}\r\n", rest, mid="boundaryflood")


def filename_encoded_words() -> bytes:
    """A filename of 50,000 adjacent encoded-words."""
    words = " ".join("=?utf-8?q?x?=" for _ in range(50_000))
    parts = [
        "Content-Type: text/plain\r\n\r\nhi",
        f"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
        f'filename="{words}"\r\n\r\ndata',
    ]
    body = _multipart(parts, "fn")
    head, _, rest = body.partition("\r\n\r\n")
    return _simple(f"MIME-Version: 1.0\r\n{head}\r\n", rest, mid="fnwords")


def bad_charset_8bit_label() -> bytes:
    """#22: a charset label with raw 8-bit bytes (surrogates in compat32)."""
    return (
        _HEAD + "Subject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <badlabel@evil.example>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="\xe9\xff"\r\n\r\nbody text\r\n'
    ).encode("latin-1")


def bad_charset_unknown() -> bytes:
    """Unknown charset labels in the body and in encoded-words."""
    return _simple(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n"
        "X-Note: =?x-bogus?q?abc?=\r\n",
        "caf\xe9 body\r\n",
        mid="unknowncs",
    )


def bad_base64_5mb() -> bytes:
    """5 MB of invalid base64 as the text body."""
    return _simple(
        "MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n",
        "!!!!====" * 650_000,
        mid="badb64",
    )


def nul_and_controls() -> bytes:
    """NUL and control characters in the subject, the names and the body."""
    return (
        b"From: Mal\x00lory\x07 <mallory@evil.example>\r\nTo: hostile@ours.example\r\n"
        b"Subject: hi\x00there\x1b[31m\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        b"Message-ID: <nul@evil.example>\r\n\r\nbody\x00with\x00nul\x01\r\n"
    )


def blank_lines_body() -> bytes:
    """A plain body of 2,000,000 blank lines, then text (quote trimming at render)."""
    return _simple("", "\r\n" * 2_000_000 + "the text\r\n", mid="blanklines")


def quoted_history_flood() -> bytes:
    """500,000 quoted lines and attribution-like lines ending in ':'."""
    body = "top\r\n" + "On Mon, Bob wrote wrote wrote:\r\n> q\r\n" * 150_000
    return _simple("", body, mid="quoteflood")


def no_header_end() -> bytes:
    """3 MB of header-like lines and no blank line."""
    return ("X-A: " + "y" * 100 + "\r\n").encode() * 28_000


SHAPES: dict[str, Callable[[], bytes]] = {
    f.__name__: f
    for f in (
        references_2mb,
        references_one_line_2mb,
        in_reply_to_many,
        references_control_chars,
        to_quote_then_commas,
        to_quoted_names_20k,
        cc_comments_2mb,
        from_name_encoded_words,
        subject_encoded_words,
        subject_huge_plain,
        many_headers,
        html_nested_links_2mb,
        html_unterminated_attr,
        html_open_tags,
        html_lone_brackets,
        html_empty_text,
        html_unclosed_comments,
        deep_mime,
        deep_mime_unclosed,
        nested_rfc822_2000,
        attachments_2000,
        parts_50k,
        boundary_flood,
        filename_encoded_words,
        bad_charset_8bit_label,
        bad_charset_unknown,
        bad_base64_5mb,
        nul_and_controls,
        blank_lines_body,
        quoted_history_flood,
        no_header_end,
    )
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def store(shape: str, url: str) -> dict[str, object]:
    """Parse and store one shape through the real ingest path; what it cost and stored."""
    from sqlalchemy import select

    from bot.blocks.conversation import parent_message, thread_email_message
    from bot.inbox.render import conversation_card, email_card
    from bot.mail.parse import parse_message
    from bot.store.db import make_engine, make_session_factory, session_scope
    from bot.store.ingest import IngestItem, ingest_batch
    from bot.store.models import Account, Attachment, Conversation, Message, MessageRef, Provider
    from bot.store.rows import RowCodec, dialect_key

    raw = SHAPES[shape]()
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        account = s.scalar(select(Account).where(Account.email == "hostile@ours.example"))
        if account is None:
            account = Account(provider=Provider.IMAP, email="hostile@ours.example", config={})
            s.add(account)
        s.flush()
        account_id = account.id
    cpu0, wall0 = _cpu(), time.perf_counter()
    # As the sync does: parse and encode first, outside any transaction; then store.
    parsed = parse_message(raw)
    encoded = RowCodec.for_key(dialect_key(engine.dialect)).encode(parsed, len(raw))
    parse_cpu = _cpu() - cpu0
    with session_scope(factory) as s:
        account = s.get_one(Account, account_id)
        [result] = ingest_batch(s, account, [IngestItem(raw, parsed=parsed, encoded=encoded)])
        pk = result.message_pk
    cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
    with session_scope(factory) as s:
        m = s.get_one(Message, pk)
        # And the Slack text of it: the parent and the thread post, as the outbox renders them.
        render0 = _cpu()
        conversation = s.get_one(Conversation, m.conversation_id)
        blocks = [
            parent_message(conversation_card(s, conversation)),
            thread_email_message(email_card(m)),
        ]
        render_cpu = _cpu() - render0
        facts = {
            "message_id": m.message_id,
            "subject_len": len(m.subject or ""),
            "from_email": m.from_email,
            "to_count": len(m.to or []),
            "body_len": len(m.body_text or ""),
            "defects": list(m.parse_defects or []),
            "refs": s.query(MessageRef).filter(MessageRef.message_id == pk).count(),
            "attachments": s.query(Attachment).filter(Attachment.message_id == pk).count(),
        }
    engine.dispose()
    return {
        "shape": shape,
        "raw_bytes": len(raw),
        "parse_cpu_s": round(parse_cpu, 3),
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "render_cpu_s": round(render_cpu, 3),
        "render_chars": len(json.dumps(blocks)),
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **facts,
    }


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "store":
        print(json.dumps(store(argv[1], argv[2])))
        return 0
    if argv == ["list"]:
        print("\n".join(SHAPES))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
