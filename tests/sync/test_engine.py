"""Full and incremental sync, flags both ways, expunge, UIDVALIDITY, crashes between batches."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.providers.imap import ImapProvider
from bot.store.db import session_scope
from bot.store.models import AccountStatus, Conversation, FolderState, RunStatus
from bot.sync import parse_pool
from bot.sync.state import recompute_conversations
from tests.sync.conftest import Env, make_raw

# Where fetched mail is parsed: inline, or in the parse worker process (bot/sync/parse_pool.py),
# which a real sync uses for batches of MIN_BATCH and more of a backlog of MIN_BACKLOG and more;
# here every batch qualifies.
PARSE_WHERE: dict[str, dict[str, Any]] = {
    "inline": {"parse_in_worker": False},
    "worker": {"parse_min_batch": 1, "parse_min_backlog": 0},
}


@pytest.fixture(params=sorted(PARSE_WHERE))
def parse_opts(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """Sync options for one parse placement; checks at teardown that it was the one used."""
    used: list[int] = []
    close = parse_pool.ParsePool.close

    def record(self: parse_pool.ParsePool) -> None:
        used.append(self.used)
        close(self)

    monkeypatch.setattr(parse_pool.ParsePool, "close", record)
    yield PARSE_WHERE[request.param]
    assert used, "no sync ran"
    if request.param == "worker":
        assert any(used), "the parse worker was never used"
    else:
        assert not any(used)


def test_full_then_incremental_sync(env: Env, parse_opts: dict[str, Any]) -> None:
    aid, user = env.new_account()
    mids = []
    for i in range(7):
        raw, mid = make_raw(f"Question {i}")
        env.dovecot.deliver(user.username, raw)
        mids.append(mid)
    first = env.sync(aid, batch_size=3, **parse_opts)
    assert first.status == RunStatus.OK, first.problems
    assert first.new == 7
    assert sorted(m.message_id for m in env.messages(aid)) == sorted(mids)
    raw, mid = make_raw("Later")
    env.dovecot.deliver(user.username, raw)
    second = env.sync(aid)
    assert second.new == 1
    assert len(env.messages(aid)) == 8
    # Nothing new: nothing stored twice, the folder is skipped.
    third = env.sync(aid)
    assert (third.new, third.changed, third.removed) == (0, 0, 0)
    assert len(env.messages(aid)) == 8
    acc = env.account(aid)
    assert acc.status == AccountStatus.ACTIVE
    assert acc.last_success_at is not None and acc.next_sync_at is not None
    assert acc.next_sync_at > acc.last_success_at
    with session_scope(env.factory) as s:
        inbox = s.scalar(
            select(FolderState).where(FolderState.account_id == aid, FolderState.name == "INBOX")
        )
        assert inbox is not None and inbox.last_uid == 8
    runs = env.runs(aid)
    assert [r.new_count for r in runs] == [7, 1, 0]
    assert all(r.finished_at is not None and r.status == RunStatus.OK for r in runs)


def test_flags_changed_by_another_client_reach_the_store(env: Env) -> None:
    aid, user = env.new_account()
    raw, _mid = make_raw("Read me elsewhere")
    uid = env.dovecot.deliver(user.username, raw)
    env.sync(aid)
    [msg] = env.messages(aid)
    assert not msg.is_read
    assert env.conversation(msg.conversation_id).unread_count == 1
    with env.dovecot.admin(user.username) as conn:
        conn.select("INBOX")
        conn.uid("STORE", str(uid), "+FLAGS", "(\\Seen)")
    run = env.sync(aid)
    assert run.changed == 1
    [msg] = env.messages(aid)
    assert msg.is_read
    assert env.conversation(msg.conversation_id).unread_count == 0


def test_expunge_removes_location_and_marks_deleted(env: Env) -> None:
    aid, user = env.new_account()
    raw1, _ = make_raw("Keep")
    raw2, gone_mid = make_raw("Delete me")
    env.dovecot.deliver(user.username, raw1)
    uid2 = env.dovecot.deliver(user.username, raw2)
    env.sync(aid)
    with env.dovecot.admin(user.username) as conn:
        conn.select("INBOX")
        conn.uid("STORE", str(uid2), "+FLAGS", "(\\Deleted)")
        conn.expunge()
    run = env.sync(aid)
    assert run.removed == 1
    by_mid = {m.message_id: m for m in env.messages(aid)}
    assert by_mid[gone_mid].deleted  # kept in the store, marked gone
    assert env.conversation(by_mid[gone_mid].conversation_id).deleted
    assert [loc[2] for loc in env.locations(aid)] != [gone_mid]
    assert gone_mid not in [loc[2] for loc in env.locations(aid)]


def test_move_to_archive_by_another_client_archives_the_conversation(env: Env) -> None:
    aid, user = env.new_account()
    raw, mid = make_raw("Archive me elsewhere")
    uid = env.dovecot.deliver(user.username, raw)
    env.sync(aid)
    with env.dovecot.admin(user.username) as conn:
        conn.select("INBOX")
        conn.uid("MOVE", str(uid), "Archive")
    env.sync(aid)
    [msg] = env.messages(aid)
    assert not msg.deleted
    assert [(f, m) for f, _, m in env.locations(aid)] == [("Archive", mid)]
    assert env.conversation(msg.conversation_id).archived


def test_uidvalidity_change_resyncs_without_duplicates(env: Env) -> None:
    aid, user = env.new_account()
    raw1, _ = make_raw("One")
    raw2, m2 = make_raw("Two")
    raw3, _ = make_raw("Re: Two", in_reply_to=m2)
    for raw in (raw1, raw2, raw3):
        env.dovecot.deliver(user.username, raw)
    env.sync(aid)
    before = {m.message_id: (m.id, m.conversation_id) for m in env.messages(aid)}
    env.dovecot.reset_uidvalidity(user.username, "INBOX")
    run = env.sync(aid)
    assert run.error is None
    after = {m.message_id: (m.id, m.conversation_id) for m in env.messages(aid)}
    assert after == before  # same rows, same conversations
    assert all(not m.deleted for m in env.messages(aid))
    assert len(env.locations(aid)) == 3
    assert any("UIDVALIDITY" in p["problem"] for p in run.problems)


def test_crash_between_batches_loses_and_doubles_nothing(
    env: Env, parse_opts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fetch thread must be off the IMAP connection before the connection is closed.
    threads_at_close: list[list[str]] = []
    close = ImapProvider.close

    def recording_close(self: ImapProvider) -> None:
        threads_at_close.append([t.name for t in threading.enumerate()])
        close(self)

    monkeypatch.setattr(ImapProvider, "close", recording_close)
    aid, user = env.new_account()
    mids = set()
    for i in range(10):
        raw, mid = make_raw(f"Batch {i}")
        env.dovecot.deliver(user.username, raw)
        mids.add(mid)

    class Crash(Exception):
        pass

    def crash_after_first(folder: str, last_uid: int) -> None:
        raise Crash(f"killed after {folder} uid {last_uid}")

    # The fetch thread is ahead of the store (it may hold batch 2 and be fetching batch 3):
    # what it fetched but the store never committed must simply be fetched again.
    run = env.sync(aid, batch_size=4, after_batch=crash_after_first, **parse_opts)
    assert run.status == RunStatus.ERROR
    assert len(env.messages(aid)) == 4  # the first batch was committed, nothing more
    assert threads_at_close and not any(
        name.startswith("fetch ") for names in threads_at_close for name in names
    )
    run = env.sync(aid, batch_size=4, **parse_opts)
    assert run.status == RunStatus.OK
    stored = env.messages(aid)
    assert len(stored) == 10
    assert {m.message_id for m in stored} == mids
    assert len(env.locations(aid)) == 10


def test_conversations_a_batch_makes_from_inbox_mail_need_no_recompute(env: Env) -> None:
    """The store leaves conversations made by a batch of Inbox mail out of the per-batch
    recompute (bot/sync/imap_sync.py). That is only right if what they were made with is what
    the recompute would derive: checked here on new threads of read and unread mail."""
    aid, user = env.new_account()
    root, root_mid = make_raw("Order 1")
    env.dovecot.deliver(user.username, root, flags=["\\Seen"])
    reply, _ = make_raw("Re: Order 1", in_reply_to=root_mid)
    env.dovecot.deliver(user.username, reply)
    for i in range(3):
        raw, _ = make_raw(f"Question {i}")
        env.dovecot.deliver(user.username, raw, flags=["\\Seen"] if i == 1 else [])
    assert env.sync(aid, batch_size=50).new == 5
    with session_scope(env.factory) as s:
        convs = s.scalars(select(Conversation).where(Conversation.account_id == aid)).all()
        made = {c.id: (c.archived, c.deleted, c.unread_count, c.message_count) for c in convs}
        assert sorted(v[2] for v in made.values()) == [0, 1, 1, 1]  # the thread: 1 of 2 unread
        assert recompute_conversations(s, list(made)) == set()  # nothing to change...
        s.flush()
        again = {c.id: (c.archived, c.deleted, c.unread_count, c.message_count) for c in convs}
    assert again == made  # ...and nothing changed


class Killed(BaseException):
    """A kill at a chosen point: not an Exception, so no fallback path catches it (as a
    SIGTERM turned into SystemExit, or the process simply ending, would not be caught)."""


KILL_POINTS = ["between_fetch_and_store", "during_index_fill", "after_rows_before_commit"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_sync_killed_anywhere_resumes_without_losing_doubling_or_unsearchable(
    env: Env, parse_opts: dict[str, Any], monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """Issue 19: killed in the second batch (fetched, not stored; inside the search index
    fill; after every row but before the commit), the next sync stores each message once,
    and search finds every one of them (the index is filled in the batch's transaction:
    SQLite's FTS5 insert, PostgreSQL's generated tsvector)."""
    import bot.store.ingest as ingest_module
    import bot.sync.imap_sync as imap_sync
    from bot.store.search import all_account_ids, search

    aid, user = env.new_account()
    mids = set()
    for i in range(10):
        raw, mid = make_raw(f"Resume {i}", body=f"zebra{i} crossing\n")
        env.dovecot.deliver(user.username, raw)
        mids.add(mid)

    calls = {"n": 0}

    def second_call(fn: Any) -> Any:
        def wrapped(*a: Any, **k: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 2:
                raise Killed(point)
            return fn(*a, **k)

        return wrapped

    with monkeypatch.context() as m:
        if point == "between_fetch_and_store":
            m.setattr(imap_sync, "_store_batch", second_call(imap_sync._store_batch))
        elif point == "during_index_fill":
            m.setattr(ingest_module, "index_messages", second_call(ingest_module.index_messages))
        else:
            m.setattr(ingest_module, "_add_locations", second_call(ingest_module._add_locations))
        with pytest.raises(Killed):
            env.sync(aid, batch_size=4, **parse_opts)
    assert len(env.messages(aid)) == 4  # the first batch committed, the second not at all

    run = env.sync(aid, batch_size=4, **parse_opts)
    assert run.status == RunStatus.OK, run.problems
    stored = env.messages(aid)
    assert sorted(m.message_id for m in stored) == sorted(mids)  # each once
    assert len(env.locations(aid)) == 10
    with session_scope(env.factory) as s:
        visible = all_account_ids(s)
        found = search(s, "crossing", visible_account_ids=visible, limit=50)
        assert sorted(h.message_id for h in found.hits) == sorted(mids)
        for i in range(10):  # and each by its own word
            hits = search(s, f"zebra{i}", visible_account_ids=visible).hits
            assert [h.subject for h in hits] == [f"Resume {i}"]


def test_batches_commit_without_waiting_for_the_disk_and_nothing_else_does(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: each sync batch's transaction, and only it, runs with synchronous_commit
    off (`SET LOCAL`); the pooled connection goes back synchronous, so the outbox's and the
    Slack handlers' commits stay durable. SQLite: nothing is set (its WAL commits never sync)."""
    from sqlalchemy import text

    import bot.sync.imap_sync as imap_sync

    aid, user = env.new_account()
    for i in range(5):
        env.dovecot.deliver(user.username, make_raw(f"Durable {i}")[0])
    postgres = env.factory.kw["bind"].dialect.name == "postgresql"
    seen: list[str] = []
    announce_all = imap_sync._announce_all

    def spy(job: Any, s: Any, *args: Any) -> None:
        if postgres:
            seen.append(s.execute(text("SHOW synchronous_commit")).scalar_one())
        else:
            seen.append("sqlite")
        announce_all(job, s, *args)

    monkeypatch.setattr(imap_sync, "_announce_all", spy)
    run = env.sync(aid, batch_size=2, parse_in_worker=False)
    assert run.status == RunStatus.OK and run.new == 5
    assert seen == (["off"] * 3 if postgres else ["sqlite"] * 3)
    if postgres:
        with session_scope(env.factory) as s:
            assert s.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
