"""A send goes out once: with two workers whose leases overlap (finding #6), and when the
bookkeeping after the server accepted fails (finding #5). Real Dovecot, real SMTP server, the
store on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from slack_sdk import WebClient
from sqlalchemy import select, text, update

from bot.compose import outbox as compose_outbox
from bot.outbox.dispatch import Dispatcher, Registry
from bot.store.db import is_postgres, session_scope
from bot.store.models import Message, Outbox, OutboxStatus, utcnow
from tests.mailservers.smtp_server import SmtpServer
from tests.outbox.conftest import queue_send, sends_of, smtp_account
from tests.sync.conftest import Env


def _sends_only() -> Registry:
    # Only the send handler: the "Sent" DMs it queues fail as unhandled instead of calling Slack.
    registry = Registry()
    compose_outbox.register(registry)
    return registry


def _row(env: Env, mid: str) -> Outbox:
    with session_scope(env.factory) as s:
        row = s.scalars(select(Outbox).where(Outbox.key == f"compose:{mid}")).one()
        s.expunge(row)
        return row


def test_two_workers_never_send_one_row_twice_when_a_lease_runs_out(
    env: Env, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    aid, support, customer = smtp_account(env, smtp_server)
    first = queue_send(env, aid, support, customer, "First")
    second = queue_send(env, aid, support, customer, "Second")
    client = WebClient(token="xoxb-unused")
    a = Dispatcher(env.services, client, _sends_only(), owner="worker-A")
    b = Dispatcher(env.services, client, _sends_only(), owner="worker-B")

    # Worker A stalls inside the first send, after its "already sent?" look (store and Sent)
    # and just before SMTP: a long GC pause, a stuck network call, a suspended VM.
    reached, go = threading.Event(), threading.Event()
    real_check = a.leases.check

    def stalled_check(row: Outbox) -> None:
        reached.set()
        assert go.wait(60)
        real_check(row)

    monkeypatch.setattr(a.leases, "check", stalled_check)
    worker_a = threading.Thread(target=a.run_once)
    worker_a.start()
    assert reached.wait(60)
    # Meanwhile A's lease runs out (its renewals did not get through either).
    with session_scope(env.factory) as s:
        s.execute(
            update(Outbox)
            .where(Outbox.lease_owner == "worker-A")
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    # Worker B takes the row over and sends both emails of the lane.
    b.run_until_idle(60)
    assert _row(env, first).lease_owner is None and _row(env, first).attempts == 2
    go.set()
    worker_a.join(60)
    a.close()
    b.close()

    assert sends_of(smtp_server, first) == 1
    assert sends_of(smtp_server, second) == 1
    assert _row(env, first).status == OutboxStatus.DONE
    assert _row(env, second).status == OutboxStatus.DONE


def _fail_message_inserts(env: Env) -> None:
    """Make every insert into `messages` fail, as a full disk or a locked database would."""
    with session_scope(env.factory) as s:
        if is_postgres(s):
            s.execute(
                text(
                    "CREATE FUNCTION induced_failure() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'induced: could not extend file'; END $$ LANGUAGE plpgsql"
                )
            )
            s.execute(
                text(
                    "CREATE TRIGGER induced_failure BEFORE INSERT ON messages "
                    "FOR EACH ROW EXECUTE FUNCTION induced_failure()"
                )
            )
        else:
            s.execute(
                text(
                    "CREATE TRIGGER induced_failure BEFORE INSERT ON messages "
                    "BEGIN SELECT RAISE(ABORT, 'induced: disk I/O error'); END"
                )
            )


def _heal(env: Env) -> None:
    with session_scope(env.factory) as s:
        s.execute(text("DROP TRIGGER induced_failure" + (" ON messages" if is_postgres(s) else "")))
        if is_postgres(s):
            s.execute(text("DROP FUNCTION induced_failure()"))


def test_a_store_failure_after_the_server_accepted_never_sends_again(
    env: Env, smtp_server: SmtpServer
) -> None:
    aid, support, customer = smtp_account(env, smtp_server)
    mid = queue_send(env, aid, support, customer, "Quote for the new roof")
    dispatcher = Dispatcher(env.services, WebClient(token="xoxb-unused"), _sends_only())
    _fail_message_inserts(env)
    try:
        assert dispatcher.run_once() == 1
    finally:
        _heal(env)
    row = _row(env, mid)
    # Accepted and recorded so; storing the sent copy failed: the row waits for a retry.
    assert sends_of(smtp_server, mid) == 1
    assert row.status == OutboxStatus.PENDING and "sent" in (row.last_error or "")
    assert "accepted" in row.result

    with session_scope(env.factory) as s:
        s.execute(update(Outbox).where(Outbox.id == row.id).values(next_attempt_at=utcnow()))
    dispatcher.run_until_idle(60)
    dispatcher.close()

    row = _row(env, mid)
    assert row.status == OutboxStatus.DONE and row.result.get("sent") is True
    assert sends_of(smtp_server, mid) == 1
    with session_scope(env.factory) as s:
        stored = s.scalars(select(Message).where(Message.message_id == mid)).all()
        assert len(stored) == 1
    # The Sent folder got its copy once too.
    with env.dovecot.admin(support.username) as conn:
        conn.select('"Sent"')
        _, found = conn.search(None, "HEADER", "Message-ID", mid)
        assert len(found[0].split()) == 1
