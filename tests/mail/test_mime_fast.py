"""The fast MIME tree builder agrees with the stdlib parser, or steps aside.

Every message here is parsed twice: `parse_message` as shipped (fast path where it applies)
and with the fast path switched off (the stdlib parser for everything). The results must be
equal field by field. The fast path must also really be taken on well-formed mail, or these
tests would prove nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from bot.mail import parse as parse_mod
from bot.mail.mime_fast import message_from_bytes
from bot.mail.parse import full_view, parse_message
from bot.mail.types import ParsedMessage
from tests.mail.corpora import FEDORA, MAIL_PARSER, NOTMUCH, corpus_files, fedora_messages

FIXTURES = Path(__file__).parent / "fixtures"
STDLIB = BytesParser(policy=policy.compat32)


def _stdlib_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_mod, "message_from_bytes", lambda raw: None)


def _both(raw: bytes) -> tuple[ParsedMessage, ParsedMessage]:
    with pytest.MonkeyPatch.context() as mp:
        fast = parse_message(raw)
        _stdlib_only(mp)
        slow = parse_message(raw)
    return fast, slow


def _corpus() -> Iterator[bytes]:
    for path in corpus_files(FIXTURES):
        yield path.read_bytes()
    if NOTMUCH.exists():
        for path in [*corpus_files(NOTMUCH), *corpus_files(MAIL_PARSER)]:
            yield path.read_bytes()
    if FEDORA.exists():
        yield from fedora_messages()


MULTIPART = (
    b"From: a@x\r\nTo: b@y\r\nSubject: files\r\nMessage-ID: <mp@x>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"This is a MIME message.\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
    b"--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello caf\xc3\xa9\r\n"
    b"--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello</p>\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b'Content-Type: application/pdf; name="a.pdf"\r\nContent-Disposition: attachment; '
    b'filename="a.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    + b"JVBERi0xLjQK\r\n" * 50
    + b"--outer--  \r\nepilogue\r\n"
)


def test_well_formed_multipart_takes_the_fast_path_and_matches() -> None:
    tree = message_from_bytes(MULTIPART)
    assert tree is not None
    reference = STDLIB.parsebytes(MULTIPART)
    assert [p.get_content_type() for p in tree.walk()] == [
        p.get_content_type() for p in reference.walk()
    ]
    assert [p.get_payload(decode=True) for p in tree.walk() if not p.is_multipart()] == [
        p.get_payload(decode=True) for p in reference.walk() if not p.is_multipart()
    ]
    assert tree.as_bytes() == reference.as_bytes()
    fast, slow = _both(MULTIPART)
    assert fast == slow and fast.attachments[0].filename == "a.pdf"
    view = full_view(MULTIPART)
    with pytest.MonkeyPatch.context() as mp:
        _stdlib_only(mp)
        assert full_view(MULTIPART) == view


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: x\r\n",  # no blank line
        b"Subject: x\r\nbroken header line\r\n\r\nbody",  # the stdlib records a defect
        b" continued: first\r\n\r\nbody",
        b"From sender Sat Jan  3 01:05:34 1996\r\nSubject: mbox\r\n\r\nbody",
        b"Subject: cr\rTo: a@b\r\n\r\nbody",  # a bare CR is a line break to the stdlib
        b"Content-Type: multipart/mixed\r\n\r\nno boundary",
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\npart\r\n',  # no close
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b--\r\n',  # close first
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n--b\r\n\r\nx\r\n--b--\r\n',
        b'Content-Type: multipart/digest; boundary="b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n',
        b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi",
        b'Content-Type: multipart/mixed; boundary="b"\r\nContent-Transfer-Encoding: base64'
        b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
    ],
)
def test_anything_unusual_is_left_to_the_stdlib(raw: bytes) -> None:
    assert message_from_bytes(raw) is None
    fast, slow = _both(raw)
    assert fast == slow


def test_every_corpus_message_parses_the_same_either_way() -> None:
    # The project's own fixtures always; the shared corpora when the checkout sits next to
    # shared/ (like the other corpus tests, which skip without them).
    raws = list(_corpus())
    taken = 0
    for raw in raws:
        fast, slow = _both(raw)
        assert fast == slow, (
            fast.message_id,
            [k for k in vars(fast) if getattr(fast, k) != getattr(slow, k)],
        )
        taken += message_from_bytes(raw) is not None
    # Most real mail is well formed: the fast path must carry most of it.
    assert taken > len(raws) * 0.6, (taken, len(raws))
    print(f"fast path taken for {taken} of {len(raws)} corpus messages")


@pytest.mark.parametrize(
    "raw",
    [
        # Undecodable bytes in the preamble, a part header, the text and the epilogue; the
        # fast path cuts the bytes and decodes each piece, the stdlib decodes the whole.
        MULTIPART.replace(b"This is a MIME message.", b"Pr\xe9ambule \xff")
        .replace(b'name="a.pdf"', b'name="\xe9t\xe9.pdf"')
        .replace(b"epilogue", b"\xe9pilogue \xc3\xa9"),
        MULTIPART.replace(b"\r\n", b"\n"),  # LF line ends throughout
        MULTIPART.replace(b"\r\n\r\nHello", b"\n\nHello"),  # a part with an LF blank line
    ],
)
def test_bytes_are_cut_where_the_stdlib_cuts_the_string(raw: bytes) -> None:
    tree = message_from_bytes(raw)
    assert tree is not None
    reference = STDLIB.parsebytes(raw)
    assert [(p.get_content_type(), p.get_payload(decode=True)) for p in tree.walk()] == [
        (p.get_content_type(), p.get_payload(decode=True)) for p in reference.walk()
    ]
    assert (tree.preamble, tree.epilogue) == (reference.preamble, reference.epilogue)
    assert tree.as_bytes() == reference.as_bytes()
    fast, slow = _both(raw)
    assert fast == slow
