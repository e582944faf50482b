"""Readers never wait for writers: `read_scope` is a read-only transaction that, on SQLite,
neither takes nor waits for the one write lock; and the database files are private."""

from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.exc import DBAPIError

from bot.store import migrate
from bot.store.db import make_engine, make_session_factory, read_scope, session_scope
from bot.store.models import Client, Template


@contextmanager
def write_lock_held(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holds SQLite's write lock (an open BEGIN IMMEDIATE) meanwhile."""
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    other.execute(
        "INSERT INTO clients (name, company, notes, created_at) VALUES ('held', '', '', '2024-01-01')"
    )
    try:
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


def impatient(path: Path) -> Engine:
    """An engine whose connections never wait for a lock (busy_timeout 0): anything that
    needs the write lock while another connection holds it fails at once."""
    engine = make_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", lambda conn, _r: conn.execute("PRAGMA busy_timeout=0"))
    return engine


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[tuple[Path, Engine]]:
    path = tmp_path / "data" / "mailroom.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    try:
        yield path, engine
    finally:
        engine.dispose()


def test_a_reader_reads_while_a_writer_holds_the_lock(sqlite_file: tuple[Path, Engine]) -> None:
    path, engine = sqlite_file
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        s.add(Client(name="Acme", company="Acme", notes=""))
    with write_lock_held(path):
        # busy_timeout 0: a reader that needed the lock would fail at once with
        # "database is locked" (before, every session began with BEGIN IMMEDIATE).
        factory0 = make_session_factory(impatient(path))
        with read_scope(factory0) as s:
            names = list(s.scalars(select(Client.name)))
        assert names == ["Acme"]  # its snapshot: the writer's uncommitted row is not there
        with pytest.raises(DBAPIError, match="locked"), session_scope(factory0) as s:
            s.add(Client(name="Other", company="", notes=""))


def test_an_open_reader_does_not_block_a_writer(sqlite_file: tuple[Path, Engine]) -> None:
    path, engine = sqlite_file
    factory = make_session_factory(engine)
    with read_scope(factory) as s:
        assert s.scalar(select(func.count(Client.id))) == 0
        # While the read transaction is open, a writer with no patience at all gets the lock.
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        other.execute("BEGIN IMMEDIATE")
        other.execute(
            "INSERT INTO clients (name, company, notes, created_at) VALUES ('new', '', '', '2024-01-01')"
        )
        other.execute("COMMIT")
        other.close()
        assert s.scalar(select(func.count(Client.id))) == 0  # one snapshot throughout
    with read_scope(factory) as s:
        assert s.scalar(select(func.count(Client.id))) == 1


def test_a_slow_reader_and_a_writer_in_threads(sqlite_file: tuple[Path, Engine]) -> None:
    """The review's reproduction: a read-only session busy for a while no longer fails the
    writers behind it with "database is locked"."""
    path, _engine = sqlite_file
    factory = make_session_factory(impatient(path))
    reading, written = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            with read_scope(factory) as s:
                s.scalar(select(func.count(Client.id)))
                reading.set()
                assert written.wait(10)  # still inside the read transaction
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    assert reading.wait(10)
    with session_scope(factory) as s:  # busy_timeout 0: must not wait for the reader
        s.add(Client(name="during", company="", notes=""))
    written.set()
    thread.join(10)
    assert errors == []


def test_a_write_inside_a_read_scope_fails(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with pytest.raises(DBAPIError), read_scope(factory) as s:
        s.add(Template(name="t", subject="", body="b", created_by="U1"))
        s.flush()
    # The connection goes back to the pool writable: the next writer works.
    for _ in range(3):
        with session_scope(factory) as s:
            s.add(Client(name=f"c{_}", company="", notes=""))
        with read_scope(factory) as s:
            assert s.scalar(select(func.count(Client.id))) == _ + 1


def test_read_scope_objects_stay_readable_after_the_scope(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        s.add(Client(name="Acme", company="Acme Inc", notes=""))
    with read_scope(factory) as s:
        client = s.scalars(select(Client)).one()
    assert client.company == "Acme Inc"
    with read_scope(factory) as s:
        assert s.execute(text("SELECT 1")).scalar() == 1


def test_new_database_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "mailroom.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        s.add(Client(name="Acme", company="", notes=""))
    try:
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert f.exists() and stat.S_IMODE(f.stat().st_mode) == 0o600, f
    finally:
        engine.dispose()


def test_existing_database_files_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "mailroom.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    make_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
