"""The outbox delivers each effect once: idempotent enqueue, exclusive claims, retries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from sqlalchemy import select

from bot.access import AccessControl
from bot.crypto import Vault, generate_key
from bot.outbox.dispatch import Dispatcher, PermanentFailure, Registry, RetryLater, retry_row
from bot.services import Services
from bot.store.db import SessionFactory, session_scope
from bot.store.models import Outbox, OutboxStatus, utcnow
from bot.store.outbox import claim_due, enqueue


def _services(factory: SessionFactory) -> Services:
    from bot.config import Settings

    return Services(Settings(), factory, Vault(generate_key()), AccessControl(frozenset()))


def test_enqueue_is_idempotent_by_key(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        a = enqueue(s, kind="k", key="same", payload={"n": 1})
        b = enqueue(s, kind="k", key="same", payload={"n": 2})
        assert a.id == b.id
    with session_scope(session_factory) as s:
        rows = s.scalars(select(Outbox)).all()
        assert [r.payload for r in rows] == [{"n": 1}]


def test_a_claimed_row_is_not_claimed_again_until_its_lease_expires(
    session_factory: SessionFactory,
) -> None:
    with session_scope(session_factory) as s:
        enqueue(s, kind="k", key="one", payload={})
    with session_scope(session_factory) as s:
        first = claim_due(s, owner="w1", lease_seconds=60, limit=10)
    with session_scope(session_factory) as s:
        second = claim_due(s, owner="w2", lease_seconds=60, limit=10)
    assert len(first) == 1 and second == []
    # w1 died: once its lease is over, another worker takes the row.
    later = utcnow() + timedelta(seconds=61)
    with session_scope(session_factory) as s:
        third = claim_due(s, owner="w2", lease_seconds=60, limit=10, now=later)
    assert [r.lease_owner for r in third] == ["w2"]
    assert third[0].attempts == 2


def test_dispatcher_retries_transient_failures_and_records_results(
    session_factory: SessionFactory,
) -> None:
    calls: list[int] = []

    def flaky(ctx: Any, row: Outbox) -> dict[str, Any]:
        calls.append(row.attempts)
        if row.attempts == 1:
            raise RetryLater("busy", after_seconds=0)
        return {"done_on": row.attempts}

    def broken(ctx: Any, row: Outbox) -> None:
        raise PermanentFailure("address rejected")

    registry = Registry()
    registry.register("flaky", flaky)
    registry.register("broken", broken)
    with session_scope(session_factory) as s:
        enqueue(s, kind="flaky", key="f", payload={})
        enqueue(s, kind="broken", key="b", payload={})
        enqueue(s, kind="unknown", key="u", payload={})
    dispatcher = Dispatcher(_services(session_factory), WebClient(token="x"), registry)
    dispatcher.run_until_idle(timeout=5)
    with session_scope(session_factory) as s:
        rows = {r.key: r for r in s.scalars(select(Outbox))}
    assert calls == [1, 2]
    assert rows["f"].status == OutboxStatus.DONE and rows["f"].result == {"done_on": 2}
    assert rows["b"].status == OutboxStatus.FAILED and rows["b"].last_error == "address rejected"
    assert rows["u"].status == OutboxStatus.FAILED and "no handler" in (rows["u"].last_error or "")
    # A person presses Retry: the failed row becomes due again and runs.
    assert retry_row(_services(session_factory), rows["b"].id)
    assert not retry_row(_services(session_factory), rows["f"].id)  # done rows stay done


def test_retry_later_honours_the_remote_delay(session_factory: SessionFactory) -> None:
    def limited(ctx: Any, row: Outbox) -> None:
        raise RetryLater("ratelimited", after_seconds=30)

    registry = Registry()
    registry.register("limited", limited)
    with session_scope(session_factory) as s:
        enqueue(s, kind="limited", key="l", payload={})
    before = utcnow()
    Dispatcher(_services(session_factory), WebClient(token="x"), registry).run_until_idle(2)
    with session_scope(session_factory) as s:
        row = s.scalars(select(Outbox)).one()
    assert row.status == OutboxStatus.PENDING
    assert row.next_attempt_at >= before + timedelta(seconds=29)


def test_waiting_for_something_does_not_use_up_attempts(session_factory: SessionFactory) -> None:
    # A reply waits for its thread's parent post: however long that takes (a Slack outage),
    # the row must not fail after MAX_ATTEMPTS.
    from bot.outbox.dispatch import MAX_ATTEMPTS

    def waiting(ctx: Any, row: Outbox) -> None:
        raise RetryLater("parent not posted yet", after_seconds=0, counts=False)

    registry = Registry()
    registry.register("waiting", waiting)
    with session_scope(session_factory) as s:
        enqueue(s, kind="waiting", key="w", payload={})
    dispatcher = Dispatcher(_services(session_factory), WebClient(token="x"), registry)
    for _ in range(MAX_ATTEMPTS + 3):
        dispatcher.run_once()
    with session_scope(session_factory) as s:
        row = s.scalars(select(Outbox)).one()
    assert row.status == OutboxStatus.PENDING and row.attempts == 0
