"""parse_message on named pathology fixtures, every corpus message, and fuzzed input."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.mail.parse import extract_attachment, full_view, parse_message, synthetic_message_id
from tests.mail.corpora import FEDORA, MAIL_PARSER, NOTMUCH, corpus_files, fedora_messages

Load = Callable[[str], bytes]


def test_broken_charset_falls_back_and_records_defect(eml: Load) -> None:
    p = parse_message(eml("broken-charset.eml"))
    assert p.text.strip() == "Café is open."
    assert p.subject == "café menu"
    assert any("unknown charset" in d for d in p.defects)


def test_missing_message_id_gets_stable_synthetic_id(eml: Load) -> None:
    raw = eml("no-message-id.eml")
    first, again = parse_message(raw), parse_message(raw)
    assert first.message_id_synthetic
    assert first.message_id == again.message_id == synthetic_message_id(raw)
    assert first.message_id.endswith("@mailroom.invalid")
    assert parse_message(raw + b"other\n").message_id != first.message_id
    assert any("Message-ID" in d for d in first.defects)


def test_html_only_body_is_converted_to_text(eml: Load) -> None:
    p = parse_message(eml("html-only.eml"))
    assert p.html is not None and "<ul>" in p.html
    assert "Big sale & more" in p.text
    assert "• Shoes" in p.text and "• Hats" in p.text
    assert "our sale (https://shop.example/sale)" in p.text
    assert "track()" not in p.text and "color:red" not in p.text
    assert p.defects == []


def test_cid_inline_image_is_listed_as_inline_attachment(eml: Load) -> None:
    raw = eml("cid-inline-image.eml")
    p = parse_message(raw)
    [att] = p.attachments
    assert att.content_type == "image/png"
    assert att.content_id == "logo123@example.com"
    assert att.inline
    assert att.size == 108
    info, data = extract_attachment(raw, att.part_index)
    assert info == att and data.startswith(b"\x89PNG")


def test_rfc2231_filename_is_decoded(eml: Load) -> None:
    raw = eml("rfc2231-filename.eml")
    p = parse_message(raw)
    [att] = p.attachments
    assert att.filename == "Rapport année 2024.pdf"
    assert not att.inline
    assert extract_attachment(raw, att.part_index)[1].startswith(b"%PDF-1.4")
    assert p.text.strip() == "See attached."


def test_long_folded_headers_unfold(eml: Load) -> None:
    p = parse_message(eml("long-folded-header.eml"))
    assert p.from_ is not None and p.from_.name == "Jürgen Müller"
    assert [a.email for a in p.to] == ["a@example.com", "b@example.com", "c@example.com"]
    assert p.to[2].name == "Last, First"
    assert p.subject == (
        "This is a very long subject with ümlauts that wraps over several lines — and plain tail"
    )
    assert p.references == ["a@example.de", "b@example.de", "c@example.de"]
    assert p.in_reply_to == ["c@example.de"] and p.in_reply_to_clean


@pytest.mark.parametrize("name", ["rfc2047-split-multibyte.eml", "rfc2047-split-character.eml"])
def test_rfc2047_split_across_encoded_words(eml: Load, name: str) -> None:
    p = parse_message(eml(name))
    assert p.subject == "日本語"
    assert p.defects == []


def test_8bit_utf8_headers(eml: Load) -> None:
    p = parse_message(eml("8bit-header.eml"))
    assert p.from_ is not None and p.from_.name == "François Pérez"
    assert p.subject == "Réunion demain"
    assert any("8-bit" in d for d in p.defects)


def test_8bit_latin1_headers(eml: Load) -> None:
    p = parse_message(eml("8bit-header-latin1.eml"))
    assert p.from_ is not None and p.from_.name == "François"
    assert p.subject == "Réunion"


def test_unlisted_recipients_group_is_empty_not_an_error(eml: Load) -> None:
    p = parse_message(eml("unlisted-recipients.eml"))
    assert p.to == [] and p.cc == []
    assert p.from_ is not None and p.from_.email == "a@example.com"


def test_missing_boundary_keeps_body_and_records_defect(eml: Load) -> None:
    p = parse_message(eml("missing-boundary.eml"))
    assert "no boundary" in p.text
    assert p.defects


def test_bad_date_is_none_with_defect(eml: Load) -> None:
    p = parse_message(eml("bad-date.eml"))
    assert p.date is None
    assert any("Date" in d for d in p.defects)


def test_date_is_utc_aware(eml: Load) -> None:
    p = parse_message(eml("8bit-header.eml"))
    assert p.date == datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


def test_outlook_reply_snippet_drops_history(eml: Load) -> None:
    p = parse_message(eml("outlook-quoted-reply.eml"))
    assert p.text.startswith("Thanks, paid today \u2013 please confirm.")
    assert p.snippet == "Thanks, paid today \u2013 please confirm. Best regards Client"
    assert "Please find the invoice" in p.text  # the full body keeps it


def test_forwarded_message_is_an_attachment_not_the_body(eml: Load) -> None:
    raw = eml("forwarded-as-attachment.eml")
    p = parse_message(raw)
    assert p.text.strip() == "See the forwarded mail."
    [att] = p.attachments
    assert att.content_type == "message/rfc822"
    inner = parse_message(extract_attachment(raw, att.part_index)[1])
    assert inner.message_id == "inner@example.com"
    assert "Inner body" in inner.text


def test_alternative_prefers_plain_and_keeps_html(eml: Load) -> None:
    p = parse_message(eml("crlf-multipart-alternative.eml"))
    assert p.text.strip() == "Plain version with café."
    assert "\r" not in p.text
    assert p.html is not None and "HTML version" in p.html
    assert p.attachments == [] and p.defects == []


def test_full_view_lists_decoded_headers_and_untrimmed_body(eml: Load) -> None:
    view = full_view(eml("outlook-quoted-reply.eml"))
    assert ("Subject", "RE: Invoice 42") in view.headers
    assert "Please find the invoice attached." in view.text


def test_extract_attachment_unknown_index_raises_lookup_error(eml: Load) -> None:
    with pytest.raises(LookupError):
        extract_attachment(eml("rfc2231-filename.eml"), 99)


def test_snippet_is_bounded_and_trimmed() -> None:
    raw = (
        b"From: a@b.example\nMessage-ID: <s@b.example>\nSubject: s\n\n"
        + b"word " * 200
        + b"\n\nOn Mon, 1 Jan 2024, Bob <b@x.example> wrote:\n> old\n"
    )
    p = parse_message(raw)
    assert len(p.snippet) <= 280 and p.snippet.endswith("…")
    assert "old" not in p.snippet


def test_auto_and_list_hints() -> None:
    raw = (
        b"From: a@b.example\nMessage-ID: <l@b.example>\nAuto-Submitted: auto-replied\n"
        b"List-Id: Dev list <dev.lists.example>\n\nout of office\n"
    )
    p = parse_message(raw)
    assert p.auto_submitted and p.list_id == "dev.lists.example"
    assert not parse_message(b"From: a@b.example\n\nhi\n").auto_submitted


def test_bare_message_id_and_garbage_references() -> None:
    raw = (
        b"Message-ID: 1234@host.example\nIn-Reply-To: Your message of Monday <p@x.example>\n"
        b"References: <r1@x.example> (comment) garbage <r1@x.example> <r2@x.example>\n\nx\n"
    )
    p = parse_message(raw)
    assert p.message_id == "1234@host.example" and not p.message_id_synthetic
    assert p.in_reply_to == ["p@x.example"] and not p.in_reply_to_clean
    assert p.references == ["r1@x.example", "r2@x.example"]


# --- corpora ---------------------------------------------------------------------------------


def _corpus_params() -> list[object]:
    files = [*corpus_files(NOTMUCH), *corpus_files(MAIL_PARSER)] if NOTMUCH.exists() else []
    return [pytest.param(p, id=str(p.relative_to(p.parents[2]))) for p in files]


needs_corpora = pytest.mark.skipif(
    not NOTMUCH.exists(), reason="shared corpora absent (../shared/corpora)"
)


@needs_corpora
@pytest.mark.parametrize("path", _corpus_params())
def test_every_corpus_file_parses(path: object) -> None:
    from pathlib import Path

    assert isinstance(path, Path)
    raw = path.read_bytes()
    p = parse_message(raw)
    assert not any(d.startswith("parser failure") for d in p.defects)
    assert p.size == len(raw) and p.message_id
    assert len(p.snippet) <= 280
    full_view(raw)
    for att in p.attachments:
        info, data = extract_attachment(raw, att.part_index)
        assert len(data) == info.size


@pytest.mark.skipif(not FEDORA.exists(), reason="fedora-devel corpus absent")
def test_every_fedora_message_parses() -> None:
    messages = fedora_messages()
    assert len(messages) == 292
    parsed = [parse_message(raw) for raw in messages]
    assert all(not p.message_id_synthetic for p in parsed)
    assert all(p.date is not None and p.from_ is not None for p in parsed)
    assert not any("parser failure" in d for p in parsed for d in p.defects)


@needs_corpora
def test_notmuch_charset_cases() -> None:
    by_id = {parse_message(p.read_bytes()).message_id: p for p in corpus_files(NOTMUCH / "default")}
    essai = parse_message(by_id["877h1wv7mg.fsf@inf-8657.int-evry.fr"].read_bytes())
    assert essai.subject == "Essai accentué"
    francois = parse_message(by_id["4EFC743A.3060609@april.org"].read_bytes())
    assert francois.from_ is not None and francois.from_.name == "François Boulogne"


def _with_attachment(b64: bytes) -> bytes:
    return (
        b"From: a@example.com\r\nMessage-ID: <att@example.com>\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b'--B\r\nContent-Type: application/pdf; name="x.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"\r\n--B--\r\n"
    )


@settings(max_examples=300, deadline=None)
@given(
    blob=st.binary(max_size=3000),
    width=st.integers(4, 100),
    unpad=st.booleans(),
    noise=st.lists(st.tuples(st.floats(0, 1), st.sampled_from([b"=", b"!", b" ", b"\t", b"A"]))),
)
def test_attachment_size_is_the_decoded_size(
    blob: bytes, width: int, unpad: bool, noise: list[tuple[float, bytes]]
) -> None:
    """The size is counted without decoding clean base64 (and by decoding anything else): it
    must be what decoding gives, padding dropped, stray characters and odd lines included."""
    import base64

    b64 = bytearray(base64.b64encode(blob))
    if unpad:
        b64 = b64.rstrip(b"=")
    for where, junk in noise:
        pos = int(where * len(b64))
        b64[pos:pos] = junk
    text = b"\r\n".join(bytes(b64[i : i + width]) for i in range(0, len(b64), width))
    raw = _with_attachment(text)
    [att] = parse_message(raw).attachments
    assert att.size == len(extract_attachment(raw, att.part_index)[1])
    if not noise and not unpad:
        assert att.size == len(blob)


# --- fuzzing ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    p = parse_message(raw)
    assert p.size == len(raw) and p.message_id


_HEADERISH = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=",
        b"Content-Transfer-Encoding: base64\n",
        b"=?utf-8?b?",
        b"=?x-bogus?q?=FF=?=",
        b'charset="utf-7"',
        b"\n--",
        b"\r\n\r\n",
        b"\xff\xfe\x00",
        b"filename*0*=utf-8''%E9",
        b"To: unlisted-recipients:;\n",
        b"Date: 99 Foo 99999 99:99:99 +9999\n",
        b";;;;;;;;",
        b"<<>>@@",
    ]
)


@needs_corpora
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), inserts=st.lists(_HEADERISH, max_size=6), cut=st.floats(0, 1))
def test_mutated_real_messages_never_raise(seed: int, inserts: list[bytes], cut: float) -> None:
    rng = random.Random(seed)
    files = corpus_files(MAIL_PARSER) + corpus_files(NOTMUCH / "default")
    raw = bytearray(rng.choice(files).read_bytes()[:20000])
    for chunk in inserts:
        pos = rng.randrange(len(raw) + 1)
        raw[pos:pos] = chunk
    for _ in range(rng.randrange(5)):
        if raw:
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    data = bytes(raw[: max(1, int(len(raw) * (0.5 + cut / 2)))])
    p = parse_message(data)
    assert p.size == len(data)
    full_view(data)
    for att in p.attachments:
        assert len(extract_attachment(data, att.part_index)[1]) == att.size
