"""The fast reader of plain ``BODY[]`` FETCH responses, and its hand-off to imapclient."""

from __future__ import annotations

from typing import Any

import pytest
from imapclient.datetime_util import parse_to_datetime
from imapclient.response_parser import parse_fetch_response

from bot.providers.imap import _bodies_fast, _internaldate, _meta_fast

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
    wrong_size = [(b"1 (UID 7 BODY[] {5}", A), b")"]
    with_flags = [(b"1 (UID 7 FLAGS (\\Seen) BODY[] {%d}" % len(A), A), b")"]
    twice = _plain(7, 1, A) + _plain(7, 2, B)  # one UID, two bodies: not ours to choose
    no_close = [(b"1 (UID 7 BODY[] {%d}" % len(A), A), b" FLAGS (\\Seen))"]
    flags_with_literal = [*_plain(7, 1, A), (b"3 (FLAGS {5}", b"\\Seen"), b")"]
    not_a_flag_update = [*_plain(7, 1, A), b"3 (FLAGS (\\Seen) BODY[] NIL)"]
    for data in (
        uid_last,
        wrong_size,
        with_flags,
        twice,
        no_close,
        flags_with_literal,
        not_a_flag_update,
    ):
        assert _bodies_fast(data) is None, data
    # ...which reads them correctly.
    general = parse_fetch_response(uid_last, True, False)
    assert [(m[b"UID"], m[b"BODY[]"]) for m in general.values()] == [(7, A)]


def test_unsolicited_flag_updates_between_bodies_are_skipped() -> None:
    """Another client's flag change arrives as `* n FETCH (FLAGS ...)`, with MODSEQ under
    CONDSTORE (Dovecot sends it after the bodies; tests/providers/test_fetch_dovecot.py). It
    carries no body: the bodies read are those imapclient reads from the same responses."""
    for data in (
        [*_plain(7, 1, A), b"3 (FLAGS (\\Seen))", *_plain(12, 2, B)],
        [*_plain(7, 1, A), *_plain(12, 2, B), b"2 (MODSEQ (5) FLAGS (\\Flagged $Label1))"],
        [b"1 (UID 7 MODSEQ (9) FLAGS ())", *_plain(7, 1, A), *_plain(12, 2, B)],
        [*_plain(7, 1, A), b"2 (FLAGS (\\Seen) MODSEQ (12))", *_plain(12, 2, B)],
    ):
        general = parse_fetch_response(data, True, False)
        expected = {m[b"UID"]: m[b"BODY[]"] for m in general.values() if b"BODY[]" in m}
        assert _bodies_fast(data) == expected == {7: A, 12: B}, data


def test_no_responses_is_an_empty_answer() -> None:
    assert _bodies_fast([]) == {}


class _Client:
    """What _meta_fast reads of an IMAPClient."""

    def __init__(self, normalise_times: bool) -> None:
        self.normalise_times = normalise_times


META = [
    b'1 (UID 7 FLAGS () INTERNALDATE "28-Nov-2026 01:50:05 +0000" RFC822.SIZE 678)',
    b'2 (UID 9 FLAGS (\\Seen \\Flagged $Label1) INTERNALDATE " 3-Jan-2025 23:59:59 -0800" '
    b"RFC822.SIZE 58069)",
]


def test_plain_metadata_is_read_as_imapclient_reads_it() -> None:
    for normalise in (True, False):
        fast = _meta_fast(_Client(normalise), META)
        general = parse_fetch_response(META, normalise, False)
        assert fast == {m[b"UID"]: m for m in general.values()}
    assert fast is not None and fast[9][b"FLAGS"] == (b"\\Seen", b"\\Flagged", b"$Label1")


def test_other_metadata_shapes_go_to_the_general_parser() -> None:
    for data in (
        [b'1 (UID 7 RFC822.SIZE 678 FLAGS () INTERNALDATE "28-Nov-2026 01:50:05 +0000")'],
        [b'1 (UID 7 FLAGS () INTERNALDATE "28-Nov-2026 01:50:05 +0000" RFC822.SIZE 6 MODSEQ (4))'],
        [META[0], b"3 (FLAGS (\\Seen))"],  # unsolicited flag update
        [b'1 (UID 7 FLAGS () INTERNALDATE "not a date" RFC822.SIZE 678)'],
    ):
        assert _meta_fast(_Client(True), data) is None, data


def test_internal_dates_are_read_as_imapclient_reads_them() -> None:
    for when in (
        b"28-Nov-2026 01:50:05 +0000",
        b" 3-Jan-2025 23:59:59 -0800",
        b"29-Feb-2024 12:00:00 +0530",
        b"01-Dec-1999 00:00:00 -0000",
        b"31-Oct-2026 10:11:12 +1345",
        b"9-Sep-2023 09:09:09 -0330",
    ):
        fast, general = _internaldate(when, False), parse_to_datetime(when, normalise=False)
        assert fast == general, when  # the same instant...
        assert fast.utcoffset() == general.utcoffset(), when  # ...in the same zone
        assert fast.replace(tzinfo=None) == general.replace(tzinfo=None), when
        assert _internaldate(when, True) == parse_to_datetime(when, normalise=True)
    for odd in (b"31-Feb-2024 00:00:00 +0000", b"28-Foo-2026 01:50:05 +0000"):
        with pytest.raises(ValueError):  # as imapclient's parser: _meta_fast then hands over
            _internaldate(odd, False)
