"""The fast reader of plain ``BODY[]`` FETCH responses, and its hand-off to imapclient."""

from __future__ import annotations

from typing import Any

from imapclient.response_parser import parse_fetch_response

from bot.providers.imap import _bodies_fast

A = b"From: a@x\r\nSubject: one\r\n\r\nbody one\r\n"
B = b"From: b@x\r\nSubject: two\r\n\r\n)\r\n* 9 FETCH (UID 99 BODY[] {3}\r\n"  # looks like protocol


def _plain(uid: int, seq: int, raw: bytes) -> list[Any]:
    return [(f"{seq} (UID {uid} BODY[] {{{len(raw)}}}".encode(), raw), b")"]


def test_plain_responses_are_read_without_the_general_parser() -> None:
    data = _plain(7, 1, A) + _plain(12, 2, B)
    assert _bodies_fast(data) == {7: A, 12: B}
    # The same answer imapclient gives for these responses.
    general = parse_fetch_response(data, True, False)
    assert {m[b"UID"]: m[b"BODY[]"] for m in general.values()} == {7: A, 12: B}


def test_any_other_shape_goes_to_the_general_parser() -> None:
    uid_last = [(b"1 (BODY[] {%d}" % len(A), A), b" UID 7)"]
    unsolicited = [*_plain(7, 1, A), b"3 (FLAGS (\\Seen))"]
    wrong_size = [(b"1 (UID 7 BODY[] {5}", A), b")"]
    with_flags = [(b"1 (UID 7 FLAGS (\\Seen) BODY[] {%d}" % len(A), A), b")"]
    for data in (uid_last, unsolicited, wrong_size, with_flags):
        assert _bodies_fast(data) is None, data
    # ...which reads them correctly.
    general = parse_fetch_response(uid_last, True, False)
    assert [(m[b"UID"], m[b"BODY[]"]) for m in general.values()] == [(7, A)]


def test_no_responses_is_an_empty_answer() -> None:
    assert _bodies_fast([]) == {}
