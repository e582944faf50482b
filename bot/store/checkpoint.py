"""SQLite's WAL checkpoints, run beside the writers instead of inside their commits.

In WAL mode a commit appends pages to the ``-wal`` file, and a checkpoint copies them into the
database file; with ``synchronous=NORMAL`` it fsyncs both files. By default SQLite runs that
checkpoint inside the commit that takes the log past 1,000 pages, so the writer waits for the
copy and the two fsyncs. A history sync writes hundreds of MB of raw mail: in the benchmark's
floor (``bench/imap_sync_bench.py``, docs/sync.md) those checkpoints were about half of
SQLite's own time to store a mailbox.

SQLite's documented alternative is to checkpoint from another thread. Each SQLite file engine
gets a `Checkpointer`: a commit wakes it, its thread runs a PASSIVE checkpoint (which never
blocks readers or writers) every few milliseconds while commits keep coming, and the thread
ends after a quiet spell. The writers keep an automatic checkpoint at a larger log as a
backstop (`BACKSTOP_BYTES`), for when this thread falls behind.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

log = logging.getLogger(__name__)

# The writers' own automatic checkpoint, in bytes of log: 64 MB, where SQLite's default is
# 1,000 pages (4 MB at 4 KB pages). Reached only if the background checkpoints fall behind.
BACKSTOP_BYTES = 64 * 1024 * 1024


class Checkpointer:
    """Checkpoints the WAL of the database at `path` from a thread of its own.

    `wake()` is cheap and called after every commit. The thread checkpoints every `interval`
    seconds and stops `idle_after` seconds after the last wake; the next wake starts a new one.
    """

    def __init__(self, path: str, *, interval: float = 0.02, idle_after: float = 2.0) -> None:
        self.path = path
        self.interval = interval
        self.idle_after = idle_after
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_wake = 0.0
        self._stopped = threading.Event()
        # For tests and diagnostics: checkpoints run, and frames copied, since the start.
        self.runs = 0
        self.frames_copied = 0
        self._ran = threading.Condition(self._lock)

    def wake(self) -> None:
        with self._lock:
            self._last_wake = time.monotonic()
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="sqlite-checkpoint", daemon=True
                )
                self._thread.start()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def wait_for_run(self, after: int, timeout: float = 5.0) -> bool:
        """Wait until more than `after` checkpoints have run; False on timeout."""
        with self._ran:
            return self._ran.wait_for(lambda: self.runs > after, timeout)

    def close(self) -> None:
        """Stop the thread (after its current checkpoint) and start no new one."""
        self._stopped.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        try:
            # timeout=0: a checkpoint that finds the database busy skips this round instead of
            # waiting; the next one catches up.
            con = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint thread could not open the database: %s", exc)
            with self._lock:
                self._thread = None
            return
        try:
            while not self._stopped.wait(self.interval):
                try:
                    row = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    row = None  # locked or busy this round; the writers' backstop still holds
                with self._ran:
                    self.runs += 1
                    if row is not None:
                        self.frames_copied += max(int(row[2]), 0)
                    self._ran.notify_all()
                    if time.monotonic() - self._last_wake > self.idle_after:
                        self._thread = None
                        return
        finally:
            con.close()
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
