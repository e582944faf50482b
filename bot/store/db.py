"""Engine and sessions. Callers own the unit of work: `with session_scope(factory) as s:`."""

from __future__ import annotations

import os
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


# The execution option `read_scope` sets on its connection: the transaction only reads.
READ_ONLY = "mailroom_read_only"


def _sqlite_begin(conn: Any) -> None:
    # A reader takes a deferred BEGIN: in WAL mode it reads its snapshot while one writer
    # writes, and never queues on (or holds) the write lock. query_only makes a write inside
    # a read scope fail loudly instead of silently upgrading to a writer (which could fail
    # with SQLITE_BUSY_SNAPSHOT at any point). The pragma outlives the transaction, so it is
    # set per pooled DBAPI connection only when the kind of transaction changes.
    read_only = bool(conn.get_execution_options().get(READ_ONLY, False))
    info = conn.connection.info
    if info.get(READ_ONLY, False) != read_only:
        conn.exec_driver_sql(f"PRAGMA query_only={int(read_only)}")
        info[READ_ONLY] = read_only
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and "mode=memory" not in url:
            _private_data_dir(Path(parsed.database))
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
    """One write transaction: commit on success, roll back on error. On SQLite it holds the
    database's single write lock from its start (BEGIN IMMEDIATE), so keep it short: no
    network, no parsing, no rendering inside (docs/security.md)."""
    with factory() as session, session.begin():
        yield session


@contextmanager
def read_scope(factory: SessionFactory) -> Iterator[Session]:
    """One read-only transaction, for work that only reads (Slack listeners, App Home,
    search). On SQLite a deferred BEGIN: it neither waits for nor blocks the writer, and a
    write inside fails (query_only). On PostgreSQL a READ ONLY transaction. Nothing is
    committed; the session is closed (not expired) on exit, like `with factory() as s`."""
    with factory() as session:
        # The options apply to the connection before its BEGIN (procured here, first use).
        session.connection(execution_options={READ_ONLY: True, "postgresql_readonly": True})
        yield session


def _private_data_dir(path: Path) -> None:
    """The database holds every email in clear: only the service's user may read it. A new
    data directory is 0700; a new database file is created empty with 0600 (SQLite takes a
    zero-length file as a new database and gives its -wal/-shm files the database file's
    mode); existing files are tightened."""
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for suffix in ("", "-wal", "-shm"):
        f = path.with_name(path.name + suffix)
        if f.exists():
            f.chmod(f.stat().st_mode & 0o700)


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = (
        session_or_engine.get_bind()
        if isinstance(session_or_engine, Session)
        else session_or_engine
    )
    return bind.dialect.name == "postgresql"
