"""Engine and sessions. Callers own the unit of work: `with session_scope(factory) as s:`."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.store.checkpoint import BACKSTOP_BYTES, Checkpointer

SessionFactory = sessionmaker[Session]

# A new SQLite database's page size. Most of its bytes are raw mail (~15 KB a message, in
# overflow pages); at 16 KB a message takes a quarter of the pages, WAL frames and checksums
# it took at SQLite's default 4 KB: storing a mailbox took ~45 % less of SQLite's own time
# (the benchmark's floor, docs/sync.md). An existing database keeps its size (a WAL database
# cannot change it without a VACUUM out of WAL mode).
PAGE_SIZE = 16384

_checkpointers: weakref.WeakKeyDictionary[Engine, Checkpointer] = weakref.WeakKeyDictionary()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # autocommit at the driver; BEGIN comes from _sqlite_begin
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before WAL: only a new file takes it
    # WAL lets the Slack listeners read while the sync worker writes; busy_timeout waits for
    # the write lock instead of failing at once; foreign keys are off by default in SQLite.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_file_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # Checkpoints run in the engine's Checkpointer thread, not in a writer's commit. The
    # writers' own automatic checkpoint stays as a backstop, and the log is cut back after it.
    (page_size,) = cur.execute("PRAGMA page_size").fetchone()
    cur.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_BYTES // int(page_size)}")
    cur.execute(f"PRAGMA journal_size_limit={BACKSTOP_BYTES}")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite opens transactions lazily (on the first write), so a SAVEPOINT issued first
        # became the outermost transaction and its RELEASE committed. SQLAlchemy's documented
        # fix: turn off the driver's own handling and emit BEGIN ourselves. IMMEDIATE takes the
        # write lock up front: a transaction that read and then writes can never fail with
        # SQLITE_BUSY because another writer committed in between (WAL snapshot upgrade);
        # writers queue on busy_timeout instead.
        event.listen(engine, "begin", _sqlite_begin)
        if parsed.database and parsed.database != ":memory:" and "mode=memory" not in url:
            checkpointer = Checkpointer(parsed.database)
            _checkpointers[engine] = checkpointer
            event.listen(engine, "connect", _sqlite_file_pragmas)
            # Fired just before the driver's COMMIT: the thread's next round sees its pages.
            event.listen(engine, "commit", lambda _conn: checkpointer.wake())
        return engine
    # Plan per search term, not a generic plan (search-baseline.md): no server-side prepares.
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("prepare_threshold", None)
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    return create_engine(url, connect_args=connect_args, **kwargs)


def checkpointer_of(engine: Engine) -> Checkpointer | None:
    """The WAL checkpoint thread of a SQLite file engine; None for any other engine."""
    return _checkpointers.get(engine)


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: SessionFactory) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = (
        session_or_engine.get_bind()
        if isinstance(session_or_engine, Session)
        else session_or_engine
    )
    return bind.dialect.name == "postgresql"
