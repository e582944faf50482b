"""Writers of one process take SQLite's write lock in turn: a writer that commits and begins
again at once (the sync, batch after batch) no longer starves the background writers (the
outbox and scheduler claims, the Slack event record) into "database is locked"; readers
never queue at all. Real threads on one SQLite file."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select

from bot.store import migrate
from bot.store.db import (
    WriteQueue,
    make_engine,
    make_session_factory,
    read_scope,
    session_scope,
)
from bot.store.models import Client, SlackEvent
from bot.store.outbox import claim_due as claim_outbox
from bot.sync.leases import claim_due as claim_accounts

BATCH_HOLD = 0.2  # seconds each "sync batch" keeps its write transaction open
MAX_BATCHES = 60  # the batches stop once the others are done; this bounds a broken run
WAIT = 30.0


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite file whose connections wait 1 s for the lock (busy_timeout): a
    starved writer fails within a few batches instead of after the app's 5 s."""
    engine = make_engine(f"sqlite:///{tmp_path / 'mailroom.db'}")
    migrate.upgrade(engine)
    engine.dispose()
    event.listen(engine, "connect", lambda conn, _r: conn.execute("PRAGMA busy_timeout=1000"))
    try:
        yield engine
    finally:
        engine.dispose()


def test_background_writers_wait_their_turn_behind_back_to_back_batches(
    sqlite_engine: Engine,
) -> None:
    factory = make_session_factory(sqlite_engine)
    others_done = threading.Event()
    first_batch, in_batch, read_done = threading.Event(), threading.Event(), threading.Event()
    batches: list[int] = []
    read_while_held: list[bool] = []
    errors: list[BaseException] = []

    def sync_batches() -> None:
        """The sync's shape: one write transaction per batch, the next begun right after."""
        try:
            for n in range(MAX_BATCHES):
                if others_done.is_set():
                    return
                with session_scope(factory) as s:
                    s.add(Client(name=f"batch {n}", company="", notes=""))
                    s.flush()
                    first_batch.set()
                    if n == 2:  # a reader, while this batch holds the lock
                        in_batch.set()
                        read_while_held.append(read_done.wait(WAIT))
                    else:
                        others_done.wait(BATCH_HOLD)
                batches.append(n)
        except BaseException as exc:
            errors.append(exc)

    def background(name: str, work: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)

        return run

    def record_event() -> None:  # bot/handlers/middleware.py `_record`
        with session_scope(factory) as s:
            s.add(SlackEvent(event_id="Ev1"))

    def claim_outbox_rows() -> None:  # bot/outbox/dispatch.py `Dispatcher.claim`
        with session_scope(factory) as s:
            claim_outbox(s, owner="test", lease_seconds=30, limit=5)

    def claim_sync_accounts() -> None:  # bot/sync/scheduler.py `tick`
        claim_accounts(factory, "test", limit=5)

    hog = threading.Thread(target=sync_batches, name="sync")
    hog.start()
    assert first_batch.wait(WAIT)  # they all arrive while a batch holds the lock
    workers = [
        threading.Thread(target=background(n, fn), name=n)
        for n, fn in (
            ("event", record_event),
            ("outbox", claim_outbox_rows),
            ("scheduler", claim_sync_accounts),
        )
    ]
    for w in workers:
        w.start()

    assert in_batch.wait(WAIT)
    with read_scope(factory) as s:  # never queues: answers while the batch holds the lock
        assert s.scalar(select(func.count(Client.id))) is not None
    read_done.set()

    for w in workers:
        w.join(WAIT)
    others_done.set()
    hog.join(WAIT)
    assert errors == []
    assert read_while_held == [True]
    with read_scope(factory) as s:
        assert s.get(SlackEvent, "Ev1") is not None
    # The batches did not stop for them: they kept coming while the others waited.
    assert len(batches) >= 3


def test_a_writer_that_gives_up_its_place_lets_the_next_one_go() -> None:
    queue = WriteQueue()
    assert queue.acquire(1)
    assert not queue.acquire(0.05)  # the lock is held: no turn within the time given
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(queue.acquire(WAIT)))
    waiter.start()
    queue.release()
    waiter.join(WAIT)
    assert got == [True]  # the one that gave up did not keep its place in the line
    queue.release()
    assert queue.acquire(0)
