"""Outgoing mail: validation, CR/LF rejection, References cap, round trip through the parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.mail.compose import (
    Draft,
    HeaderError,
    OutgoingAttachment,
    build_mime,
    envelope_recipients,
    forward_body,
    make_message_id,
    parse_address_list,
    quote_for_reply,
    reply_recipients,
    reply_references,
    reply_subject,
)
from bot.mail.parse import parse_message
from bot.mail.subject import forward_subject
from bot.mail.types import Address


def _draft(**overrides: object) -> Draft:
    base: dict[str, object] = {
        "from_": Address("Zoë Agent", "agent@example.com"),
        "to": [Address("Bob, Jr.", "bob@client.example")],
        "cc": [Address("", "cc@client.example")],
        "bcc": [Address("", "secret@example.com")],
        "subject": "Re: Ünïcode invoice " + "long " * 20,
        "body": "Hi Bob,\n\nthanks — see attached.\n",
        "message_id": make_message_id("example.com"),
        "in_reply_to": "parent@client.example",
        "references": ["root@client.example", "parent@client.example"],
        "attachments": [
            OutgoingAttachment(
                "résumé 2024.pdf", "application/pdf", b"%PDF-1.4" + bytes(range(256))
            )
        ],
        "date": datetime(2024, 3, 1, 12, 0, tzinfo=UTC),
    }
    base.update(overrides)
    return Draft(**base)  # type: ignore[arg-type]


def test_round_trip_through_parse_message() -> None:
    draft = _draft(html_body="<p>Hi <b>Bob</b></p>")
    raw = build_mime(draft)
    p = parse_message(raw)
    assert p.message_id == draft.message_id and not p.message_id_synthetic
    assert p.in_reply_to == ["parent@client.example"]
    assert p.references == draft.references
    assert p.subject == " ".join(draft.subject.split())
    assert p.from_ == draft.from_
    assert p.to == draft.to and p.cc == draft.cc
    assert p.bcc == [] and b"secret@example.com" not in raw
    assert p.text == draft.body
    assert p.html is not None and "<b>Bob</b>" in p.html
    assert p.date == draft.date
    [att] = p.attachments
    assert (att.filename, att.content_type, att.size) == ("résumé 2024.pdf", "application/pdf", 264)
    assert p.defects == []
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_forwarded_message_attachment_round_trips() -> None:
    original = b"From: c@x.example\nMessage-ID: <orig@x.example>\nSubject: hi\n\nold body\n"
    raw = build_mime(_draft(attachments=[OutgoingAttachment("hi.eml", "message/rfc822", original)]))
    [att] = parse_message(raw).attachments
    assert att.content_type == "message/rfc822" and att.filename == "hi.eml"


def test_envelope_has_bcc_once() -> None:
    draft = _draft(cc=[Address("", "BOB@client.example")])
    assert envelope_recipients(draft) == ["bob@client.example", "secret@example.com"]


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("Subject", {"subject": "hi\r\nBcc: victim@example.com"}),
        ("To", {"to": [Address("Eve\nX-Evil: 1", "eve@example.com")]}),
        ("Cc", {"cc": [Address("", "a@example.com\r\nBcc: x@example.com")]}),
        ("In-Reply-To", {"in_reply_to": "a@b\nX: y"}),
        ("References", {"references": ["ok@x.example", "bad@x\r\n"]}),
        ("Message-ID", {"message_id": "id@x.example\n"}),
        ("attachment filename", {"attachments": [OutgoingAttachment("a\n.pdf", "a/b", b"")]}),
    ],
)
def test_cr_lf_in_any_header_is_rejected(field: str, overrides: dict[str, object]) -> None:
    with pytest.raises(HeaderError) as info:
        build_mime(_draft(**overrides))
    assert info.value.field_name == field


def test_parse_address_list_reports_each_bad_entry() -> None:
    valid, errors = parse_address_list(
        'Bob <bob@x.com>; "Doe, John" <j@x.co.uk>\nbad, a@b, c@exa mple.com,\r\n x@y.com, bob@X.com'
    )
    assert valid == [
        Address("Bob", "bob@x.com"),
        Address("Doe, John", "j@x.co.uk"),
        Address("", "x@y.com"),
    ]
    assert len(errors) == 3
    assert "missing @" in errors[0] and "bad domain" in errors[1] and "bad domain" in errors[2]
    _, crlf = parse_address_list("a@x.com\rBcc: evil@x.com")
    assert crlf and "line break" in crlf[0]


def test_reply_references_are_capped_keeping_first_and_last() -> None:
    refs = [f"m{i}@example.com" for i in range(50)]
    capped = reply_references(refs, "parent@example.com", max_ids=10)
    assert capped[0] == "m0@example.com" and capped[-1] == "parent@example.com"
    assert capped[1:] == [*refs[-8:], "parent@example.com"]
    long_ids = [f"{'x' * 80}{i}@example.com" for i in range(30)]
    capped = reply_references(long_ids, "<p@example.com>")
    assert len(" ".join(f"<{i}>" for i in capped)) <= 900
    assert capped[0] == long_ids[0] and capped[-1] == "p@example.com"
    assert reply_references(["a@x", "a@x"], "a@x") == ["a@x"]


def test_make_message_id_is_unique_and_validated() -> None:
    ids = {make_message_id("Example.com") for _ in range(100)}
    assert len(ids) == 100 and all(i.endswith("@example.com") for i in ids)
    with pytest.raises(HeaderError):
        make_message_id("bad domain\r\n")


def test_reply_and_forward_subjects() -> None:
    assert reply_subject("Invoice") == "Re: Invoice"
    assert reply_subject("RE: AW: Invoice") == "Re: Invoice"
    assert forward_subject("Fwd: FW: Invoice") == "Fwd: Invoice"


def test_quote_for_reply() -> None:
    quoted = quote_for_reply(
        "hello\n> older\n\nbye", Address("Bob", "b@x.com"), datetime(2024, 1, 1, 9, tzinfo=UTC)
    )
    assert (
        quoted
        == "On Mon, 1 Jan 2024 at 09:00 UTC, Bob <b@x.com> wrote:\n> hello\n>> older\n>\n> bye\n"
    )


def _original(**kw: object) -> object:
    raw = (
        b"From: Client <c@client.example>\nReply-To: Desk <desk@client.example>\n"
        b"To: support@example.com, other@client.example\nCc: boss@client.example, "
        b"SUPPORT@example.com\nSubject: Help\nDate: Mon, 01 Jan 2024 09:00:00 +0000\n"
        b"Message-ID: <o@client.example>\n\nPlease help.\n"
    )
    return parse_message(raw)


def test_reply_recipients_honour_reply_to_and_drop_own_addresses() -> None:
    original = parse_message(
        b"From: Client <c@client.example>\nReply-To: Desk <desk@client.example>\n"
        b"To: support@example.com, other@client.example\nCc: boss@client.example, "
        b"SUPPORT@example.com, desk@client.example\nSubject: Help\nMessage-ID: <o@c.example>\n\nx\n"
    )
    to, cc = reply_recipients(original, ["support@example.com"], reply_all=False)
    assert to == [Address("Desk", "desk@client.example")] and cc == []
    to, cc = reply_recipients(original, ["support@example.com"], reply_all=True)
    assert [a.email for a in to] == ["desk@client.example"]
    assert [a.email for a in cc] == ["other@client.example", "boss@client.example"]


def test_reply_to_our_own_message_goes_to_its_recipients() -> None:
    sent = parse_message(
        b"From: support@example.com\nTo: c@client.example\nCc: d@client.example\n"
        b"Subject: x\nMessage-ID: <s@example.com>\n\nx\n"
    )
    assert reply_recipients(sent, ["support@example.com"], reply_all=True) == (
        [Address("", "c@client.example")],
        [Address("", "d@client.example")],
    )


def test_forward_body_block() -> None:
    original = parse_message(
        b"From: Client <c@client.example>\nTo: support@example.com\nSubject: Help\n"
        b"Date: Mon, 01 Jan 2024 09:00:00 +0000\nMessage-ID: <o@client.example>\n\nPlease help.\n"
    )
    body = forward_body(original)
    assert body.startswith(
        "---------- Forwarded message ---------\nFrom: Client <c@client.example>\n"
    )
    assert "Subject: Help\nTo: support@example.com\n\nPlease help.\n" in body
