"""Parse fetched mail in a second process while this one fetches and stores.

A full sync spends its time in three CPU-bound steps: reading the IMAP responses, parsing the
MIME, and writing the store. Threads cannot overlap them (the GIL), so for large fetches the
parsing goes to one worker process: while it parses batch N, this process stores batch N-1 and
fetches batch N+1. Small syncs (the usual incremental run) parse inline, because starting a
process costs more than it saves.

Whatever goes wrong with the worker (it cannot start, it dies, a result does not come back)
the batch is parsed inline instead: the pool can make a sync faster, never fail it. Parsing is
deterministic and `parse_message` never raises, so where a message was parsed does not change
what is stored.

Every parse has a wall-clock budget (`bot.mail.parse.PARSE_BUDGET_SECONDS`): a message over it
is stored with its headers only and marked. The worker's batch has one too, as a backstop for
a parse that stops looking at its budget: past `batch_timeout` the worker is killed (the next
batch starts a new one) and the batch is parsed here, each message within its own budget.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import TypeVar

from bot.mail.parse import PARSE_BUDGET_SECONDS, parse_message
from bot.mail.types import ParsedMessage
from bot.store.rows import EncodedParse, encode_all

log = logging.getLogger(__name__)
T = TypeVar("T")

# Below this many messages in a batch, parsing inline beats shipping bytes to a process.
MIN_BATCH = 200
# The share of each batch this process may parse itself, at most, and the step it moves by.
MAX_SHARE = 0.5
SHARE_STEP = 0.05
# Waiting longer than this for the worker's part means it is the slower side.
WAITED = 0.005
# What the fork server imports once for every worker it forks (see `_mp_context`).
PRELOAD = ["bot.sync.parse_pool", "bot.templates"]  # templates render in a child too
# A sync uses the worker only for a folder backlog at least this big: starting it cold (the
# fork server's interpreter and its imports) costs more than it saves on a small mailbox
# (bench, spawned worker: 2,000 messages synced in 1.55 s with it and 1.48 s without; 20,000
# in 9.6 s and 15.1 s).
MIN_BACKLOG = 2_500
# Once `prestart` has the fork server running, a worker is a fork: worth it from one batch
# (interleaved runs: 1,000 messages 0.96 -> 0.60 s, 2,000 messages 1.39 -> 1.06 s).
READY_MIN_BACKLOG = 500
# The worker's batch is given up after this long plus every message's parse budget: each
# message stops at its own budget, so only a parse that ignores it can get there.
BATCH_TIMEOUT_BASE = 30.0


def batch_timeout(
    count: int, *, base: float = BATCH_TIMEOUT_BASE, per_message: float = PARSE_BUDGET_SECONDS
) -> float:
    """Seconds to wait for the worker's parse of `count` messages before giving it up."""
    return base + count * per_message


_server_ready = False


@dataclass
class BatchParse:
    """One batch's parse: the parsed messages (parsed here), or, from the worker asked to
    encode for a dialect, only the rows' encoded part (bot/store/rows.py), which carries all
    the store needs: a full ParsedMessage costs three times as much to send over."""

    parsed: list[ParsedMessage] | None = None
    encoded: list[EncodedParse] | None = None

    def __len__(self) -> int:
        return len(self.encoded if self.encoded is not None else self.parsed or [])


def parse_all(raws: Sequence[bytes]) -> list[ParsedMessage]:
    return [parse_message(raw) for raw in raws]


def parse_batch(raws: Sequence[bytes], dialect: str | None) -> BatchParse:
    """The worker's job (module level so the worker process can import it)."""
    parsed = parse_all(raws)
    if dialect is None:
        return BatchParse(parsed=parsed)
    return BatchParse(encoded=encode_all(parsed, [len(r) for r in raws], dialect))


def _mp_context() -> ForkServerContext | SpawnContext:
    """How the worker process starts. Not a plain fork: this process (APScheduler, IDLE
    watchers) has threads, and a forked child of a threaded process can inherit a held lock.
    A fork server instead: a clean single-threaded process, started once, that has imported
    the parser and the row encoding (SQLAlchemy and the models) and forks each sync's worker
    ready to work. A spawned worker imports all that anew for every sync: ~0.45 s of CPU,
    and the first batch waited for it. Spawn remains where there is no fork server."""
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:  # not on this platform
        return multiprocessing.get_context("spawn")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def mp_context() -> ForkServerContext | SpawnContext:
    """The fork server's context, for other short-lived children (bot/templates.py)."""
    return _mp_context()


def prestart() -> None:
    """Start the fork server now and wait until it has loaded its modules, so the first sync's
    worker starts at once (`mailroom worker` calls this when it starts). Best effort: if it
    fails, the first worker starts the server itself, or parsing stays inline."""
    global _server_ready
    try:
        ctx = _mp_context()
        proc = ctx.Process(target=_noop)
        proc.start()  # forked by the server once its modules are loaded
        proc.join(timeout=60)
        _server_ready = proc.exitcode == 0 and ctx.get_start_method() == "forkserver"
    except Exception:
        log.warning("could not start the parse worker's fork server", exc_info=True)


def min_backlog() -> int:
    """The smallest folder backlog worth a worker now: lower once the fork server is up."""
    return READY_MIN_BACKLOG if _server_ready else MIN_BACKLOG


def _noop() -> None:
    """A process with nothing to do: its start is the proof the fork server is ready."""


def _warm(dialect: str | None) -> None:
    """Run in the worker as soon as it starts: the imports and the codec are ready before the
    first batch arrives."""
    if dialect is not None:
        encode_all([], [], dialect)


def next_share(share: float, waited: float) -> float:
    """The share of the next batch to parse here, after waiting `waited` seconds for the
    worker's part of this one: more when this process waited (the worker is the slower side),
    less when it did not (this process is; it also stores and fetches)."""
    if waited > WAITED:
        return min(MAX_SHARE, share + SHARE_STEP)
    return max(0.0, share - SHARE_STEP)


class ParsedBatch:
    """The parse of one batch: in flight in the worker, or done inline, or split: the worker
    parses the head of the batch while this process parses the tail."""

    def __init__(
        self,
        raws: Sequence[bytes],
        future: Future[BatchParse] | None,
        *,
        here: int = 0,
        dialect: str | None = None,
        pool: ParsePool | None = None,
    ) -> None:
        self._raws = raws
        self._future = future
        self._here = here if future is not None else 0  # the tail parsed in this process
        self._dialect = dialect
        self._pool = pool

    def result(self) -> BatchParse:
        if self._future is None:
            # Inline: parsed (and encoded, with a dialect) here and now, which the sync does
            # before it opens the store's transaction (security-review #1).
            return parse_batch(self._raws, self._dialect)
        cut = len(self._raws) - self._here
        # This process's part first: the worker's is being parsed meanwhile.
        tail = parse_batch(self._raws[cut:], self._dialect) if self._here else None
        try:
            started = time.perf_counter()
            pool = self._pool
            timeout = (
                batch_timeout(cut, base=pool.timeout_base, per_message=pool.timeout_per_message)
                if pool is not None
                else batch_timeout(cut)
            )
            try:
                done = self._future.result(timeout=timeout)
            except TimeoutError:
                log.warning("parse worker over its budget for %d messages; restarting it", cut)
                if self._pool is not None:
                    self._pool.kill()
                return BatchParse(parsed=parse_all(self._raws))
            if self._pool is not None:
                self._pool.share = next_share(self._pool.share, time.perf_counter() - started)
            if len(done) != cut:
                log.warning("parse worker returned %d of %d", len(done), cut)
            elif tail is None:
                return done
            elif done.encoded is not None and tail.encoded is not None:
                return BatchParse(encoded=done.encoded + tail.encoded)
            elif done.parsed is not None and tail.parsed is not None:
                return BatchParse(parsed=done.parsed + tail.parsed)
        except Exception:
            log.warning("parse worker failed; parsing this batch here", exc_info=True)
        return BatchParse(parsed=parse_all(self._raws))


class ParsePool:
    """At most one worker process, started on the first batch big enough to need it."""

    def __init__(
        self, *, min_batch: int = MIN_BATCH, enabled: bool = True, min_backlog: int = 0
    ) -> None:
        self.min_batch = min_batch
        self.enabled = enabled
        # With min_backlog, no process starts until `warm` announced a backlog that big.
        self.min_backlog = min_backlog
        self._backlog = 0
        self._executor: ProcessPoolExecutor | None = None
        self.used = 0  # batches sent to the worker, for tests and the bench
        # The share of each batch parsed here rather than in the worker (`next_share`): this
        # process waits for the worker whenever the worker is the slower side, and both
        # cores are busy only if the two sides take about as long.
        self.share = 0.0
        self.timeout_base = BATCH_TIMEOUT_BASE  # see batch_timeout
        self.timeout_per_message = PARSE_BUDGET_SECONDS
        self.killed = 0  # workers killed for running over their batch's budget

    def warm(self, expected: int, *, dialect: str | None = None) -> None:
        """`expected` messages are about to come: if that is enough for the worker, start it
        now, so its start (a new interpreter and its imports, ~0.4 s) overlaps the first
        fetch instead of delaying the first batch."""
        self._backlog = expected
        big_enough = expected >= max(self.min_batch, self.min_backlog)
        if self.enabled and self._executor is None and big_enough:
            self._submit(_warm, dialect)

    def submit(self, raws: Sequence[bytes], *, dialect: str | None = None) -> ParsedBatch:
        """Parse `raws`; with `dialect` (a `dialect_key`) also encode the rows for it."""
        if not self.enabled or len(raws) < self.min_batch:
            return ParsedBatch(raws, None, dialect=dialect)
        if self._executor is None and self._backlog < self.min_backlog:
            # A small sync: not worth starting the process.
            return ParsedBatch(raws, None, dialect=dialect)
        here = int(len(raws) * self.share)
        future = self._submit(parse_batch, list(raws[: len(raws) - here]), dialect)
        if future is None:
            return ParsedBatch(raws, None, dialect=dialect)
        self.used += 1
        return ParsedBatch(raws, future, here=here, dialect=dialect, pool=self)

    def _submit(self, fn: Callable[..., T], *args: object) -> Future[T] | None:
        try:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(max_workers=1, mp_context=_mp_context())
            return self._executor.submit(fn, *args)
        except Exception:
            log.warning("parse worker unavailable; parsing inline", exc_info=True)
            self.enabled = False
            self.close()
            return None

    def kill(self) -> None:
        """Stop the worker now, whatever it is doing (a parse over every budget); the next
        batch big enough starts a new one."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        self.killed += 1
        # The executor cannot cancel a running call: end its process.
        processes = getattr(executor, "_processes", None) or {}
        for proc in list(processes.values()):
            with contextlib.suppress(Exception):
                proc.kill()
        with contextlib.suppress(Exception):
            executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
