"""Engine and sessions. Callers own the unit of work: `with session_scope(factory) as s:`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SessionFactory = sessionmaker[Session]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # autocommit at the driver; BEGIN comes from _sqlite_begin
    cur = dbapi_conn.cursor()
    # WAL lets the Slack listeners read while the sync worker writes; busy_timeout waits for
    # the write lock instead of failing at once; foreign keys are off by default in SQLite.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
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
        return engine
    # Plan per search term, not a generic plan (search-baseline.md): no server-side prepares.
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("prepare_threshold", None)
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    return create_engine(url, connect_args=connect_args, **kwargs)


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
