"""SQLite file databases: WAL checkpoints run in the engine's own thread, not in the writers'
commits, and keep the log short; new databases use 16 KB pages."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import Engine, text

from bot.store import migrate
from bot.store.checkpoint import BACKSTOP_BYTES, Checkpointer
from bot.store.db import PAGE_SIZE, checkpointer_of, make_engine

BLOB = 256 * 1024  # per commit: like a batch of raw mail, far below the writers' backstop


def _wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def _write_blobs(engine: Engine, commits: int, after_each: object = None) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, b BLOB)"))
    for n in range(commits):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO blobs (b) VALUES (:b)"), {"b": bytes([n % 256]) * BLOB})
        if callable(after_each):
            after_each()


def test_checkpoints_run_beside_the_writer_and_keep_the_log_short(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    engine = make_engine(f"sqlite:///{path}")
    checkpointer = checkpointer_of(engine)
    assert checkpointer is not None

    def settle() -> None:
        # The commit woke the thread; wait for a checkpoint that surely started after it.
        assert checkpointer.wait_for_run(checkpointer.runs + 1, timeout=5)

    _write_blobs(engine, 40, after_each=settle)  # ~10 MB of pages in all
    # The writer's own automatic checkpoint only starts at the backstop (64 MB of log)...
    with engine.connect() as conn:
        pages = conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one()
        page_size = conn.execute(text("PRAGMA page_size")).scalar_one()
    assert pages * page_size == BACKSTOP_BYTES
    # ...so what keeps the log to about one commit's pages is the thread: it copied them all
    # into the database file, and each next commit could start the log over.
    assert checkpointer.frames_copied * page_size >= 40 * BLOB
    assert _wal_bytes(path) < 4 * BLOB
    # Everything is in the database file itself, readable with the log gone.
    engine.dispose()
    checkpointer.close()
    Path(f"{path}-wal").unlink(missing_ok=True)
    Path(f"{path}-shm").unlink(missing_ok=True)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT count(*), sum(length(b)) FROM blobs").fetchone() == (40, 40 * BLOB)
    raw.close()


def test_without_the_thread_the_log_grows_to_the_backstop(tmp_path: Path) -> None:
    """The control for the test above: the same writes with the thread stopped leave every
    page in the log, since the writers' backstop is far away."""
    path = tmp_path / "store.db"
    engine = make_engine(f"sqlite:///{path}")
    checkpointer = checkpointer_of(engine)
    assert checkpointer is not None
    checkpointer.close()
    _write_blobs(engine, 40)
    assert _wal_bytes(path) >= 40 * BLOB
    engine.dispose()


def test_the_thread_ends_when_commits_stop_and_comes_back(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    engine = make_engine(f"sqlite:///{path}")
    checkpointer = checkpointer_of(engine)
    assert checkpointer is not None
    checkpointer.idle_after = 0.2
    _write_blobs(engine, 1)
    assert checkpointer.running
    deadline = time.monotonic() + 5
    while checkpointer.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not checkpointer.running
    _write_blobs(engine, 1)  # the next commit starts it again
    assert checkpointer.running
    checkpointer.close()
    assert not checkpointer.running
    engine.dispose()


def test_a_missing_database_directory_does_not_break_the_thread(tmp_path: Path) -> None:
    checkpointer = Checkpointer(str(tmp_path / "gone" / "store.db"), interval=0.01)
    checkpointer.wake()
    deadline = time.monotonic() + 5
    while checkpointer.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not checkpointer.running  # it logged and gave up; the writers' backstop remains


def test_memory_databases_have_no_thread() -> None:
    assert checkpointer_of(make_engine("sqlite://")) is None


def test_new_databases_use_large_pages_and_old_ones_keep_theirs(tmp_path: Path) -> None:
    new = tmp_path / "new.db"
    engine = make_engine(f"sqlite:///{new}")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA page_size")).scalar_one() == PAGE_SIZE
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    engine.dispose()

    old = tmp_path / "old.db"
    raw = sqlite3.connect(old)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("CREATE TABLE t (x)")
    raw.close()
    engine = make_engine(f"sqlite:///{old}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA page_size")).scalar_one() == 4096
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
    engine.dispose()
