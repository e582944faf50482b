"""Engine and sessions. Callers own the unit of work: `with session_scope(factory) as s:`."""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
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

# SQLite's busy_timeout, ms: how long BEGIN IMMEDIATE waits for a writer in another process.
BUSY_TIMEOUT_MS = 5000
# How long a writer of this process waits for its turn behind the ones queued before it
# (`WriteQueue`). Each write transaction is short (docs/security.md), so this is only
# reached when one is stuck; then the writer fails with "database is locked", as before.
WRITE_TURN_SECONDS = 30.0


class WriteQueue:
    """First come, first served for SQLite's one write lock among one process's threads.

    SQLite does not queue writers: a BEGIN IMMEDIATE that finds the lock taken sleeps and
    retries (every 100 ms after the first few) until busy_timeout. A writer that commits and
    at once begins again, as the sync does batch after batch, takes the lock back within
    microseconds, so the others' retries almost never find it free: they starve and fail
    with "database is locked" after busy_timeout although every transaction was short
    (docs/benchmarks.md, the load benchmark's first sync). Here each write transaction of
    the engine takes its turn in arrival order before its BEGIN IMMEDIATE and gives it up at
    COMMIT or ROLLBACK: a sync batch that ends lets every writer already waiting go first.
    Readers (`read_scope`) never queue. Writers in other processes still meet busy_timeout.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._held = False

    def acquire(self, timeout: float) -> bool:
        me = object()
        with self._cond:
            self._waiting.append(me)
            if not self._cond.wait_for(lambda: not self._held and self._waiting[0] is me, timeout):
                self._waiting.remove(me)
                self._cond.notify_all()  # the next one may be first now
                return False
            self._waiting.popleft()
            self._held = True
            return True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()


# The DBAPI connection's info key: its transaction holds the engine's WriteQueue turn.
_HOLDS_TURN = "mailroom_write_turn"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # autocommit at the driver; BEGIN comes from _sqlite_begin
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before WAL: only a new file takes it
    # WAL lets the Slack listeners read while the sync worker writes; busy_timeout waits for
    # the write lock instead of failing at once; foreign keys are off by default in SQLite.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
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


def _sqlite_begin(conn: Any, queue: WriteQueue) -> None:
    # A reader takes a deferred BEGIN: in WAL mode it reads its snapshot while one writer
    # writes, and never queues on (or holds) the write lock. query_only makes a write inside
    # a read scope fail loudly instead of silently upgrading to a writer (which could fail
    # with SQLITE_BUSY_SNAPSHOT at any point). The pragma outlives the transaction, so it is
    # set per pooled DBAPI connection only when the kind of transaction changes. A writer
    # waits for its turn among this process's writers (WriteQueue), then BEGIN IMMEDIATE.
    read_only = bool(conn.get_execution_options().get(READ_ONLY, False))
    info = conn.connection.info
    if info.get(READ_ONLY, False) != read_only:
        conn.exec_driver_sql(f"PRAGMA query_only={int(read_only)}")
        info[READ_ONLY] = read_only
    if read_only:
        conn.exec_driver_sql("BEGIN")
        return
    if not queue.acquire(WRITE_TURN_SECONDS):
        raise OperationalError(
            "BEGIN IMMEDIATE",
            None,
            Exception(f"database is locked: no write turn within {WRITE_TURN_SECONDS:.0f} s"),
        )
    info[_HOLDS_TURN] = True
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        _give_turn_back(queue, info)
        raise


def _give_turn_back(queue: WriteQueue, info: dict[Any, Any]) -> None:
    if info.pop(_HOLDS_TURN, False):
        queue.release()


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
        queue = WriteQueue()
        event.listen(engine, "begin", lambda conn: _sqlite_begin(conn, queue))
        # The turn ends with the transaction. The events fire just before the driver's
        # COMMIT / ROLLBACK: the next writer's BEGIN IMMEDIATE waits (busy_timeout) the
        # moment that takes. A connection back in the pool never keeps a turn.
        for name in ("commit", "rollback"):
            event.listen(engine, name, lambda conn: _give_turn_back(queue, conn.connection.info))
        event.listen(engine, "checkin", lambda _dbapi, record: _give_turn_back(queue, record.info))
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
