"""Parsing is linear and bounded: every cap records a defect, a parse over its budget keeps the
headers (security-review #1, #2, #3, #13, #22, #23, #24)."""

from __future__ import annotations

import base64

import pytest

from bot.devtools import hostile
from bot.mail import parse
from bot.mail.compose import reply_references
from bot.mail.html import HTML_PARSER_MAX_CHARS, html_to_text
from bot.mail.parse import (
    HEADER_ONLY_DEFECT,
    MAX_ADDRESSES,
    MAX_ATTACHMENTS,
    MAX_ENCODED_HEADER,
    MAX_REFERENCES_TAIL,
    extract_attachment,
    extract_attachments,
    full_view,
    is_header_only,
    parse_message,
    split_commas,
)
from bot.mail.thread import ThreadInput, link_ids
from bot.search.query import parse_query


def _mail(headers: str, body: str = "hi\r\n") -> bytes:
    return (
        "From: Bob <bob@acme.example>\r\nTo: team@ours.example\r\n"
        "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m1@acme.example>\r\n"
        f"{headers}\r\n{body}"
    ).encode("utf-8", "surrogateescape")


def test_references_keep_the_root_and_the_last_hundred_with_a_defect() -> None:
    ids = [f"r{i}@x.example" for i in range(2_000)]
    p = parse_message(_mail("References: " + " ".join(f"<{i}>" for i in ids) + "\r\n"))
    assert p.references == [ids[0], *ids[-MAX_REFERENCES_TAIL:]]
    assert any(d.startswith("References: 2,000 ids") for d in p.defects)
    # A header of 200,000 ids is read from its start and its end only: the same ids kept.
    ids = [f"r{i}@x.example" for i in range(200_000)]
    p = parse_message(_mail("References: " + "\r\n ".join(f"<{i}>" for i in ids) + "\r\n"))
    assert p.references == [ids[0], *ids[-MAX_REFERENCES_TAIL:]]
    assert any(d.startswith("References: longer than 64,000") for d in p.defects)


def test_link_ids_deduplicate_every_id_once_in_order() -> None:
    msg = ThreadInput(
        key="k",
        message_id="own@x",
        in_reply_to=("b@x",),
        references=("a@x", "b@x", "own@x", "a@x", *(f"z{i}@x" for i in range(3))),
        subject="s",
        date=None,
    )
    assert link_ids(msg) == ("own@x", "b@x", "a@x", "z0@x", "z1@x", "z2@x")


def test_address_list_split_is_quote_aware_and_capped() -> None:
    assert split_commas('"Doe, J" <j@x>, a@y,"q" <q@z>') == ['"Doe, J" <j@x>', " a@y", '"q" <q@z>']
    names = ", ".join(f'"Person, {i}" <p{i}@x.example>' for i in range(3_000))
    p = parse_message(_mail(f"Cc: {names}\r\n"))
    # 64 kB of it is read: fewer than the 3,000 given, at most MAX_ADDRESSES, each one whole.
    assert 0 < len(p.cc) <= MAX_ADDRESSES
    assert p.cc[0].name == "Person, 0" and p.cc[-1].email.endswith("@x.example")
    assert any(d.startswith("Cc: longer than") for d in p.defects)


def test_a_quote_then_many_commas_is_one_bounded_address_header() -> None:
    p = parse_message(_mail('Cc: "' + "a," * 100_000 + "\r\n"))
    assert len(p.cc) <= MAX_ADDRESSES
    assert any(d.startswith("Cc: longer than") for d in p.defects)


def test_encoded_words_are_decoded_from_a_bounded_prefix() -> None:
    words = " ".join("=?utf-8?q?ab?=" for _ in range(20_000))
    p = parse_message(_mail(f"Subject: {words}\r\n"))
    assert 0 < len(p.subject) <= MAX_ENCODED_HEADER
    assert set(p.subject) == {"a", "b"}
    assert any(d.startswith("Subject: longer than") for d in p.defects)


def test_a_charset_label_with_raw_8bit_bytes_keeps_the_parse() -> None:
    p = parse_message(hostile.bad_charset_8bit_label())
    assert p.subject == "café" and p.from_ is not None
    assert p.text.strip() == "body text"
    assert not p.message_id_synthetic
    assert not any(d.startswith("parser failure") for d in p.defects)
    assert any("unknown charset" in d for d in p.defects)


def test_deep_mime_is_stored_header_only_and_marked() -> None:
    p = parse_message(hostile.deep_mime())
    assert is_header_only(p.defects) and p.defects[0] == HEADER_ONLY_DEFECT
    assert p.subject == "poison" and p.from_ is not None
    assert p.from_.email == "mallory@evil.example"
    assert p.message_id == "deepmime@evil.example" and p.text == "" and p.attachments == []


def test_message_rfc822_nesting_keeps_the_headers() -> None:
    p = parse_message(hostile.nested_rfc822_2000())
    assert is_header_only(p.defects) and p.subject == "poison"


def test_over_the_budget_a_parse_gives_the_headers_only() -> None:
    raw = _mail("Subject: big\r\nContent-Type: text/html\r\n", "<p>" + "x " * 10_000)
    assert not is_header_only(parse_message(raw).defects)
    p = parse_message(raw, budget=-1.0)  # a budget already spent
    assert is_header_only(p.defects)
    assert (p.subject, p.message_id, p.text) == ("big", "m1@acme.example", "")
    assert p.from_ is not None and p.from_.email == "bob@acme.example"
    view = full_view(raw, budget=-1.0)
    assert view.text == "" and ("Subject", "big") in view.headers
    assert HEADER_ONLY_DEFECT in view.defects


def test_attachments_are_listed_up_to_the_cap_and_extracted_in_one_walk() -> None:
    raw = hostile.attachments_2000()
    p = parse_message(raw)
    assert len(p.attachments) == MAX_ATTACHMENTS
    assert any(d.startswith("attachments: more than") for d in p.defects)
    got = extract_attachments(raw)
    assert [info for info, _ in got] == p.attachments
    assert {data for _, data in got} == {b"%PDF-1.4 tiny"}
    some = [a.part_index for a in p.attachments[3:6]]
    assert [info.part_index for info, _ in extract_attachments(raw, some)] == some
    assert len(extract_attachments(raw, limit=7)) == 7
    info, data = extract_attachment(raw, some[0])
    assert info.part_index == some[0] and data == base64.b64decode(
        base64.b64encode(b"%PDF-1.4 tiny")
    )


def test_html_nested_links_and_unterminated_tags_convert() -> None:
    nested = '<a href="https://e.example/">' * 5_000 + "t" + "</a>" * 5_000
    assert html_to_text(nested).startswith("t (https://e.example/)")
    assert html_to_text('<a href="https://e.example/">https://e.example/</a>') == (
        "https://e.example/"
    )
    big = "<p>visible</p>" + '<a b="' * (HTML_PARSER_MAX_CHARS // 3)
    assert html_to_text(big) == "visible"  # the unterminated tag and what follows: dropped
    loose = "<p>one</p>" + '<a style="x"href="https://e.example/l">link</a> ' * 400 + "<b"
    assert "link (https://e.example/l)" in html_to_text(loose)


def test_reply_references_drop_ids_no_header_may_carry() -> None:
    p = parse_message(hostile.references_control_chars())
    assert "root\x01x@cust.example" in p.references  # stored as sent ...
    refs = reply_references(p.references, p.message_id)
    assert refs == ["ok@cust.example", "refsctrl@evil.example"]  # ... but never replied with
    assert reply_references(["a b@x", "<c>d@x", "ok@x"], "p@x") == ["ok@x", "p@x"]


def test_nul_in_a_search_query_separates_words() -> None:
    q = parse_query("x\x00y \x00z")
    assert [t.text for t in q.terms] == ["x", "y", "z"]
    assert all("\x00" not in t.text for t in q.terms)


def test_the_caps_are_the_documented_ones() -> None:
    # docs/threading.md lists these numbers; change both together.
    assert (parse.MAX_ADDRESS_HEADER, parse.MAX_ADDRESSES) == (64_000, 1_000)
    assert (parse.MAX_ENCODED_HEADER, parse.MAX_REFERENCES_TAIL) == (16_000, 100)
    assert (parse.MAX_MULTIPARTS, parse.MAX_PARTS, parse.MAX_ATTACHMENTS) == (100, 1_000, 250)
    assert parse.PARSE_BUDGET_SECONDS == 2.0


def test_the_budget_counts_the_threads_cpu_before_the_wall_clock_allowance() -> None:
    """The CPU budget stops a busy parse at its budget, not at WALL_FACTOR times it (the
    thread's CPU clock is read only once the budget's worth of wall time has passed)."""
    import time

    defects = parse._Defects(0.05)
    defects.check()  # fresh: within both
    defects.wall_deadline = float("inf")  # only the CPU budget can stop it (a loaded machine)
    started = time.thread_time()
    while time.thread_time() - started < 0.06:  # burn CPU past the budget
        pass
    with pytest.raises(parse.ParseBudgetExceeded):
        defects.check()
    idle = parse._Defects(0.05)
    time.sleep(0.06)  # wall time past the budget, CPU not: still within it
    idle.check()
