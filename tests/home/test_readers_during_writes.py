"""Readers never wait for writers, end to end: while a writer holds SQLite's write lock far
longer than its busy_timeout (a big sync batch, a slow write), the App Home, `/inbox search`
and the Open modal still answer, through signed requests against a real SQLite file."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import update

from bot.blocks import ids
from bot.store.db import session_scope
from bot.store.models import Account
from tests.commands.conftest import ingest, last_response, two_accounts

# The lock is held until the test lets go; every wait below ends well before. With the old
# BEGIN IMMEDIATE for every transaction, the readers gave up after busy_timeout (5 s) with
# "database is locked" and the waits below ran out.
HOLD_LIMIT = 60.0
WAIT = 10.0


@contextmanager
def writer_holding_the_lock(mailroom: Any) -> Iterator[threading.Event]:
    """A write transaction (what a sync batch is) open in another thread meanwhile."""
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with session_scope(mailroom.services.session_factory) as s:
                s.execute(update(Account).values(last_error=None))
                s.flush()
                holding.set()
                release.wait(HOLD_LIMIT)
        except BaseException as exc:
            errors.append(exc)
            holding.set()

    thread = threading.Thread(target=writer, name="slow-writer")
    thread.start()
    assert holding.wait(WAIT)
    assert errors == []
    try:
        yield release
    finally:
        release.set()
        thread.join(WAIT)
    assert errors == []


@pytest.fixture
def sqlite_mailroom(mailroom: Any) -> Any:
    if mailroom.services.session_factory.kw["bind"].dialect.name != "sqlite":
        pytest.skip("SQLite's single write lock; PostgreSQL readers never took it")
    return mailroom


def test_home_search_and_open_answer_while_a_writer_holds_the_lock(sqlite_mailroom: Any) -> None:
    mailroom = sqlite_mailroom
    inbox, _secret = two_accounts(mailroom)
    conv_id = ingest(mailroom, inbox, "Invoice 1001 overdue")
    with writer_holding_the_lock(mailroom) as release:
        mailroom.driver.event({"type": "app_home_opened", "user": "UMEMBER", "tab": "home"})
        [published] = mailroom.fake.wait_for("views.publish", 1, timeout=WAIT)
        assert published.ok and "Invoice 1001 overdue" in json.dumps(published.args)

        assert mailroom.driver.command(text="search invoice", user_id="UMEMBER").status == 200
        found = last_response(mailroom, 1)
        assert "Invoice 1001 overdue" in json.dumps(found)

        mailroom.driver.block_action("UMEMBER", ids.CONV_OPEN, str(conv_id), channel_id="CINBOX")
        [opened] = mailroom.fake.wait_for("views.open", 1, timeout=WAIT)
        assert opened.ok and "Invoice 1001 overdue" in json.dumps(opened.response)
        assert not release.is_set()  # all of it while the writer still held the lock
    mailroom.settle()  # Open's mark-as-read write ran once the lock was free


def test_a_retried_event_during_a_write_is_still_handled_once(sqlite_mailroom: Any) -> None:
    mailroom = sqlite_mailroom
    event = {"type": "app_home_opened", "user": "UMEMBER", "tab": "home"}
    with writer_holding_the_lock(mailroom):
        assert mailroom.driver.event(event, event_id="EvLocked").status == 200
        mailroom.fake.wait_for("views.publish", 1, timeout=WAIT)
        assert mailroom.driver.event(event, event_id="EvLocked", retry_num=1).status == 200
    mailroom.settle()
    assert mailroom.driver.event(event, event_id="EvOther").status == 200
    mailroom.fake.wait_for("views.publish", 2, timeout=WAIT)
    mailroom.settle()
    assert len(mailroom.fake.calls_to("views.publish")) == 2
