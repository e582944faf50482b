"""peers.md §3 reliability cases for the sync engine (rows 2, 4, 5, 7, 8, 9, 10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.store.db import session_scope
from bot.store.ingest import ingest_message
from bot.store.models import Account, FolderState, Message, MessageRaw, RunStatus
from tests.sync.conftest import Env, make_raw

MALFORMED = (
    b"From: =?utf-8?B?broken\r\nSubject: =?x-unknown?Q?caf=E9?=\r\n"
    b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
    b"--never-closed\r\nContent-Type: text/html; charset=bogus\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n@@@not base64\xff\xfe\r\n"
)


def test_peer_2_same_message_on_two_polls_is_stored_once(env: Env) -> None:
    aid, user = env.new_account()
    raw, mid = make_raw("Twice")
    env.dovecot.deliver(user.username, raw)
    env.sync(aid)
    env.dovecot.deliver(user.username, raw)  # the same mail again (a re-delivery)
    env.dovecot.deliver(user.username, raw, "Archive")
    env.sync(aid)
    env.sync(aid)
    assert [m.message_id for m in env.messages(aid)] == [mid]
    assert len(env.locations(aid)) == 3


def test_peer_4_same_message_id_in_two_accounts_is_two_records(env: Env) -> None:
    a1, u1 = env.new_account()
    a2, u2 = env.new_account()
    raw, mid = make_raw("To both mailboxes")
    env.dovecot.deliver(u1.username, raw)
    env.dovecot.deliver(u2.username, raw)
    env.sync(a1)
    env.sync(a2)
    assert [m.message_id for m in env.messages(a1)] == [mid]
    assert [m.message_id for m in env.messages(a2)] == [mid]
    assert env.messages(a1)[0].id != env.messages(a2)[0].id


def test_peer_5_poison_message_is_quarantined_and_never_blocks(env: Env) -> None:
    aid, user = env.new_account()
    raw_bad, bad_mid = make_raw("Poison")
    env.dovecot.deliver(user.username, raw_bad)
    raw_ok, ok_mid = make_raw("Fine")
    env.dovecot.deliver(user.username, raw_ok)
    calls: list[str] = []

    def failing_ingest(session: Any, account: Account, raw: bytes, **kw: Any) -> Any:
        if bad_mid.encode() in raw:
            calls.append(bad_mid)
            raise RuntimeError("storage refused this message")
        return ingest_message(session, account, raw, **kw)

    runs = [env.sync(aid, ingest=failing_ingest) for _ in range(4)]
    assert [m.message_id for m in env.messages(aid)] == [ok_mid]  # later mail not blocked
    assert len(calls) == 3  # tried three times, then quarantined, never fetched again
    assert runs[0].status == RunStatus.PARTIAL
    assert any("quarantined" in p["problem"] and p["uid"] == 1 for p in runs[2].problems)
    assert runs[3].problems == [] and runs[3].status == RunStatus.OK
    stored = env.runs(aid)
    assert any("storage refused" in p["problem"] for p in stored[0].problems)
    with session_scope(env.factory) as s:
        fs = s.scalar(
            select(FolderState).where(FolderState.account_id == aid, FolderState.name == "INBOX")
        )
        assert fs is not None and fs.last_uid == 2 and "quarantined" in (fs.cursor or "")


def test_peer_7_long_disconnect_is_backfilled_from_the_cursor(env: Env) -> None:
    aid, user = env.new_account()
    env.sync(aid)
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    mids = set()
    for i in range(5):
        raw, mid = make_raw(f"While away {i}", date=three_days_ago + timedelta(hours=i))
        env.dovecot.deliver(user.username, raw)
        mids.add(mid)
    with session_scope(env.factory) as s:
        acc = s.get_one(Account, aid)
        acc.last_success_at = three_days_ago
    run = env.sync(aid)
    assert run.new == 5
    assert {m.message_id for m in env.messages(aid)} == mids


def test_peer_8_cursor_advances_with_each_run(env: Env) -> None:
    aid, user = env.new_account()
    last = 0
    for round_ in range(3):
        uids = [env.dovecot.deliver(user.username, make_raw(f"R{round_}.{i}")[0]) for i in range(3)]
        env.sync(aid)
        with session_scope(env.factory) as s:
            fs = s.scalar(
                select(FolderState).where(
                    FolderState.account_id == aid, FolderState.name == "INBOX"
                )
            )
            assert fs is not None
            assert fs.last_uid == max(uids) > last
            assert fs.uidnext == max(uids) + 1
            last = fs.last_uid
    assert len(env.messages(aid)) == 9


def test_peer_8_a_cursor_that_stops_moving_is_reported_then_alerted(
    env: Env, monkeypatch: Any
) -> None:
    """chatwoot #8829: fetch saw nothing new, forever, while the server had new mail. Here a
    fetch that returns nothing must show in the sync log each run, and after STALL_RUNS runs
    the account goes to Error and the admins are told."""
    from bot.providers.imap import ImapProvider
    from bot.store.models import AccountStatus, Outbox
    from bot.sync.imap_sync import STALL_RUNS
    from bot.sync.status import ERROR_AFTER

    aid, user = env.new_account()
    with session_scope(env.factory) as s:
        s.get_one(Account, aid).created_by = "UADMIN"  # the account's creator gets alerts
    env.dovecot.deliver(user.username, make_raw("Before the bug")[0])
    env.sync(aid)
    uid = env.dovecot.deliver(user.username, make_raw("Never fetched")[0])
    monkeypatch.setattr(ImapProvider, "fetch_new", lambda self, *a, **k: iter(()))
    runs = [env.sync(aid) for _ in range(STALL_RUNS - 1 + ERROR_AFTER)]
    for run in runs[: STALL_RUNS - 1]:
        assert run.status == RunStatus.PARTIAL, (run.problems, runs)
        assert any("not fetched" in p["problem"] and p["uid"] == uid for p in run.problems)
    for run in runs[STALL_RUNS - 1 :]:  # failed runs: the usual backoff, then Error + alert
        assert run.status == RunStatus.ERROR and "has not been fetched" in (run.error or "")
    with session_scope(env.factory) as s:
        assert s.get_one(Account, aid).status == AccountStatus.ERROR
        dms = s.scalars(select(Outbox).where(Outbox.kind == "slack.dm")).all()
        told = [d.payload["user_id"] for d in dms]
        assert "UADMIN" in told and len(told) == len(set(told))  # each admin once
    # The bug goes away: the missed mail arrives and the account is healthy again.
    monkeypatch.undo()
    env.sync(aid)  # the backoff does not apply to an explicit run
    with session_scope(env.factory) as s:
        assert s.get_one(Account, aid).status == AccountStatus.ACTIVE
    assert "Never fetched" in {m.subject for m in env.messages(aid)}


def test_peer_9_oversized_message_is_a_stub_and_sync_continues(env: Env) -> None:
    aid, user = env.new_account()
    big, big_mid = make_raw("Huge attachment", body="x" * 200_000 + "\n")
    env.dovecot.deliver(user.username, big)
    small, small_mid = make_raw("Small after it")
    env.dovecot.deliver(user.username, small)
    run = env.sync(aid, max_size=50_000)
    assert run.status == RunStatus.PARTIAL
    by_mid = {m.message_id: m for m in env.messages(aid)}
    assert set(by_mid) == {big_mid, small_mid}
    assert by_mid[big_mid].truncated and by_mid[big_mid].subject == "Huge attachment"
    assert any(d.startswith("truncated") for d in by_mid[big_mid].parse_defects)
    assert [p["uid"] for p in run.problems if "stored headers only" in p["problem"]] == [1]
    assert env.runs(aid)[-1].problems == run.problems
    assert env.sync(aid).problems == []  # recorded once, not on every run


def test_peer_10_malformed_message_is_kept_and_does_not_block(env: Env) -> None:
    aid, user = env.new_account()
    env.dovecot.deliver(user.username, MALFORMED)
    env.dovecot.deliver(user.username, b"\x00\xff garbage without any header at all \xfe")
    raw, ok_mid = make_raw("Next one is fine")
    env.dovecot.deliver(user.username, raw)
    run = env.sync(aid)
    msgs = env.messages(aid)
    assert len(msgs) == 3
    assert ok_mid in {m.message_id for m in msgs}
    assert all(m.message_id for m in msgs)
    assert any(m.parse_defects for m in msgs if m.message_id != ok_mid)
    assert any("defects" in p["problem"] for p in run.problems)
    with session_scope(env.factory) as s:  # nothing lost: the original bytes are kept
        raws = set(
            s.scalars(
                select(MessageRaw.raw)
                .join(Message, Message.id == MessageRaw.message_id)
                .where(Message.account_id == aid)
            )
        )
        assert MALFORMED in {bytes(r).replace(b"\r\n", b"\r\n") for r in raws}
