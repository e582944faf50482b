"""Poison mail through a real sync (Dovecot, SQLite and PostgreSQL): a message past the caps or
the parse budget is stored with its headers, marked and listed in the sync log, and the sync
goes on; the parse worker that overruns its batch is killed and the batch parsed here; fetch
batches are bounded by bytes; Slack never converts a body again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.blocks.conversation import EmailCard
from bot.devtools import hostile
from bot.inbox.render import email_card
from bot.mail.parse import HEADER_ONLY_DEFECT, HEADER_ONLY_NOTE, parse_message
from bot.providers.imap import ImapProvider
from bot.store.db import SessionFactory, session_scope
from bot.store.models import Message, RunStatus
from bot.sync.parse_pool import ParsePool
from tests.store.helpers import make_account
from tests.sync.conftest import Env, imap_for, make_raw

pytestmark = pytest.mark.hostile


@pytest.mark.dovecot
@pytest.mark.parametrize("parse_in_worker", [False, True], ids=["inline", "worker"])
def test_a_poison_email_is_stored_header_only_listed_and_the_sync_goes_on(
    env: Env, parse_in_worker: bool
) -> None:
    aid, user = env.new_account()
    before, before_mid = make_raw("Before")
    env.dovecot.deliver(user.username, before)
    env.dovecot.deliver(user.username, hostile.deep_mime())
    env.dovecot.deliver(user.username, hostile.references_2mb())
    after, after_mid = make_raw("After")
    env.dovecot.deliver(user.username, after)
    run = env.sync(aid, parse_in_worker=parse_in_worker, parse_min_batch=1, parse_min_backlog=0)
    assert run.status == RunStatus.PARTIAL  # problems listed, nothing failed
    assert run.new == 4
    stored = {m.message_id: m for m in env.messages(aid)}
    assert {before_mid, after_mid, "deepmime@evil.example", "refs2mb@evil.example"} <= set(stored)
    poison = stored["deepmime@evil.example"]
    assert poison.parse_defects[0] == HEADER_ONLY_DEFECT
    assert (poison.subject, poison.from_email, poison.body_text) == (
        "poison",
        "mallory@evil.example",
        "",
    )
    listed = [p for p in run.problems if p["message_id"] == "deepmime@evil.example"]
    assert listed and listed[0]["problem"].startswith("too large or complex to show")
    [sync_run] = env.runs(aid)
    assert any("too large or complex" in p["problem"] for p in sync_run.problems or [])
    refs = stored["refs2mb@evil.example"]
    assert len(refs.references) == 101 and refs.body_text.strip() == "hello"
    # Slack shows a note in place of the body, and never converts anything at render.
    card = email_card(_load(env.factory, poison.id))
    assert isinstance(card, EmailCard) and card.body == HEADER_ONLY_NOTE


def _load(factory: SessionFactory, pk: int) -> Message:
    with session_scope(factory) as s:
        m = s.get_one(Message, pk)
        _ = list(m.attachments)
        s.expunge(m)
        return m


def test_render_uses_the_stored_text_and_never_converts_html_again(
    session_factory: SessionFactory,
) -> None:
    raw = hostile.html_empty_text()
    parsed = parse_message(raw)
    assert parsed.text == "" and parsed.html
    from bot.store.ingest import ingest_message

    with session_scope(session_factory) as s:
        account = make_account(s)
        pk = ingest_message(s, account, raw, parsed=parsed).message_pk
    with session_scope(session_factory) as s:
        m = s.get_one(Message, pk)
        # A body the parse could not see text in stays as it was stored: empty. (An HTML body
        # that did hold text would have been stored converted.) Rendering converts nothing.
        m.body_html = "<p>converted at render</p>"
        s.flush()
        _ = list(m.attachments)
        assert email_card(m).body == ""


def test_a_worker_over_its_batch_budget_is_killed_and_the_batch_parsed_here() -> None:
    raws = [make_raw(f"m{i}")[0] for i in range(40)] + [hostile.parts_50k()]
    with ParsePool(min_batch=1) as pool:
        pool.timeout_base = 0.0
        pool.timeout_per_message = 0.0  # no time at all: the worker cannot make it
        got = pool.submit(raws).result()
        assert pool.killed == 1 and pool._executor is None
        assert [p.subject for p in got.parsed or []] == [parse_message(r).subject for r in raws]
        # The next batch starts a new worker, which does make it.
        pool.timeout_base = 60.0
        again = pool.submit(raws[:5]).result()
        assert pool.used == 2 and len(again) == 5


@pytest.mark.dovecot
def test_fetch_batches_are_bounded_by_bytes_as_well_as_count(
    env: Env,
) -> None:
    aid, user = env.new_account()
    big = b"x" * 300_000
    for i in range(5):
        raw, _mid = make_raw(f"big {i}", body=big.decode())
        env.dovecot.deliver(user.username, raw)
    small, _ = make_raw("small")
    env.dovecot.deliver(user.username, small)
    with ImapProvider(imap_for(env, aid), user.password) as imap:
        imap.select("INBOX")
        batches = list(imap.fetch_new("INBOX", 0, batch_size=500, max_batch_bytes=700_000))
        sizes = [sum(m.size for m in b) for b in batches]
        assert [len(b) for b in batches] == [2, 2, 2]  # by bytes, not by the count of 500
        assert all(size <= 700_000 for size in sizes)
        uids = [m.uid for b in batches for m in b]
        assert uids == sorted(uids) and len(uids) == 6
        # One message bigger than the byte budget still comes, alone.
        alone = list(imap.fetch_new("INBOX", 0, max_batch_bytes=1))
        assert [len(b) for b in alone] == [1] * 6


def test_header_only_mail_keeps_its_date_and_addresses() -> None:
    p = parse_message(hostile.deep_mime())
    assert p.date == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    assert [a.email for a in p.to] == ["hostile@ours.example"]
