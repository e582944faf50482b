"""The fetch path of a full sync against a real Dovecot: messages whose bytes look like protocol,
keywords, 8-bit bytes, a multi-megabyte literal, unsolicited flag updates. Each message is
APPENDed with known flags and INTERNALDATE, so every field fetch_new gives back is checked
against what was put there, through the fast readers and through imapclient's parser."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from imapclient import IMAPClient

import bot.providers.imap as imap_module
from bot.providers.imap import ImapProvider
from bot.providers.types import FetchedMessage, ImapSettings
from tests.mailservers.dovecot import DovecotServer, MailUser

pytestmark = pytest.mark.dovecot

BIG = 3 * 1024 * 1024 + 17  # one literal bigger than any read buffer on the way

# (raw, flags APPENDed, INTERNALDATE APPENDed, the same instant in UTC)
CASES: list[tuple[bytes, tuple[str, ...], str, datetime]] = [
    (
        # A body that reads like the end of this response and the start of another one.
        b"From: a@x.test\r\nSubject: protocol\r\n\r\n)\r\n* 9 FETCH (UID 5 BODY[] {3}\r\n"
        b"abc)\r\n* 5 FETCH (UID 5 FLAGS (\\Deleted))\r\nA1 OK done\r\n",
        (),
        "01-Feb-2025 10:00:00 -0330",
        datetime(2025, 2, 1, 13, 30, tzinfo=UTC),
    ),
    (
        b"From: b@x.test\r\nSubject: keywords\r\n\r\nUID 5 FLAGS (\\Seen) {12}\r\n",
        ("\\Seen", "\\Flagged", "$Label1", "Custom_Keyword"),
        " 3-Jan-2025 23:59:59 +0000",
        datetime(2025, 1, 3, 23, 59, 59, tzinfo=UTC),
    ),
    (
        b"From: c@x.test\r\nSubject: caf\xe9\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"\r\n\xe9\xff\x80\xfe 8-bit bytes, {5} and ( and ) \x7f\r\n",
        ("\\Answered", "\\Draft"),
        "29-Feb-2024 12:00:00 +0530",
        datetime(2024, 2, 29, 6, 30, tzinfo=UTC),
    ),
    (
        b"From: d@x.test\r\nSubject: big\r\n\r\n"
        + (b"x" * 75 + b"\r\n") * (BIG // 77)
        + b"last line ) UID 4\r\n",
        ("\\Seen",),
        "31-Oct-2026 10:11:12 +1345",
        datetime(2026, 10, 30, 20, 26, 12, tzinfo=UTC),
    ),
    (
        b"From: e@x.test\r\nSubject: headers only\r\n\r\n",
        ("$Forwarded",),
        "01-Dec-1999 00:00:00 -0000",
        datetime(1999, 12, 1, tzinfo=UTC),
    ),
]


@pytest.fixture
def filled(dovecot: DovecotServer, imap_user: MailUser) -> list[int]:
    """CASES APPENDed in order, twice (so batches hold several of each); their UIDs."""
    with dovecot.admin(imap_user.username) as admin:
        for _ in range(2):
            for raw, flags, when, _utc in CASES:
                typ, _data = admin.append("INBOX", f"({' '.join(flags)})", f'"{when}"', raw)
                assert typ == "OK"
        admin.select("INBOX")
        _typ, found = admin.uid("SEARCH", "ALL")
    return [int(u) for u in found[0].split()]


@pytest.fixture
def provider(imap_settings: ImapSettings, imap_user: MailUser) -> Iterator[ImapProvider]:
    with ImapProvider(imap_settings, imap_user.password) as p:
        yield p


def _expected(uids: list[int]) -> dict[int, tuple[bytes, frozenset[str], datetime]]:
    cases = CASES * 2
    return {uid: (c[0], frozenset(c[1]), c[3]) for uid, c in zip(uids, cases, strict=True)}


def _check(got: list[FetchedMessage], uids: list[int]) -> None:
    expected = _expected(uids)
    assert [m.uid for m in got] == uids
    for m in got:
        raw, flags, when = expected[m.uid]
        assert m.raw == raw, m.uid
        assert m.flags == flags, m.uid
        assert m.internaldate == when, m.uid
        assert m.size == len(raw) and not m.truncated, m.uid


def _fetch(provider: ImapProvider, **kw: Any) -> list[list[FetchedMessage]]:
    return list(provider.fetch_new("INBOX", 0, **kw))


def test_every_field_comes_back_as_appended_through_the_fast_readers(
    provider: ImapProvider, filled: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dovecot's answers all have the plain shapes: imapclient's parser is never needed (it
    would raise here), and each body, flag set and date lands on its own UID."""

    def general_parser(*_a: object) -> None:
        raise AssertionError("the general parser was used")

    monkeypatch.setattr(imap_module, "_parse_fetch", general_parser)
    batches = _fetch(provider, batch_size=4)
    assert [len(b) for b in batches] == [4, 4, 2]
    _check([m for b in batches for m in b], filled)


def test_imapclient_reads_the_same_responses_the_same_way(
    provider: ImapProvider, filled: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback: with the fast readers refusing every response, imapclient's parser gives
    the same messages (so a fallback on an unusual server changes nothing but speed)."""
    monkeypatch.setattr(imap_module, "_bodies_fast", lambda _data: None)
    monkeypatch.setattr(imap_module, "_meta_fast", lambda _client, _data: None)
    _check([m for b in _fetch(provider, batch_size=3) for m in b], filled)


def test_batches_stay_within_their_byte_bound(provider: ImapProvider, filled: list[int]) -> None:
    """The multi-megabyte message comes alone in a 1 MB-bounded batch; the rest share."""
    batches = _fetch(provider, batch_size=500, max_batch_bytes=1024 * 1024)
    got = [m for b in batches for m in b]
    _check(got, filled)
    for b in batches:
        assert len(b) == 1 or sum(m.size for m in b) <= 1024 * 1024
    big = [b for b in batches if any(m.size > 2 * 1024 * 1024 for m in b)]
    assert len(big) == 2 and all(len(b) == 1 for b in big)


def test_a_flag_change_by_another_client_during_the_fetch(
    provider: ImapProvider,
    filled: list[int],
    dovecot: DovecotServer,
    imap_user: MailUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another client flags a message between our metadata and body fetches: Dovecot sends
    `* n FETCH (MODSEQ (m) FLAGS (...))` with the bodies. The bodies still land on their UIDs,
    read by the fast reader; the change itself is the next flag sync's to read."""
    other = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10)
    other.login(imap_user.username, imap_user.password)
    other.select_folder("INBOX")
    target = filled[1]
    meta = imap_module._uid_fetch_meta
    seen: list[list[Any]] = []
    fetch_data = imap_module._uid_fetch_data

    def meta_then_flag(client: IMAPClient, uids: str) -> dict[int, dict[bytes, Any]]:
        out = meta(client, uids)
        other.add_flags([target], [b"\\Deleted"])
        return out

    def recorded(*args: Any, **kw: Any) -> list[Any]:
        data = fetch_data(*args, **kw)
        seen.append(data)
        return data

    def general_parser(*_a: object) -> None:
        raise AssertionError("the general parser was used")

    monkeypatch.setattr(imap_module, "_uid_fetch_meta", meta_then_flag)
    monkeypatch.setattr(imap_module, "_uid_fetch_data", recorded)
    monkeypatch.setattr(imap_module, "_parse_fetch", general_parser)
    try:
        got = [m for b in _fetch(provider, batch_size=500) for m in b]
        assert b"\\Deleted" in other.get_flags([target])[target]
    finally:
        other.logout()
    # The update really came with the bodies (else this test tests nothing).
    assert any(isinstance(x, bytes) and b"\\Deleted" in x for data in seen for x in data)
    _check(got, filled)
