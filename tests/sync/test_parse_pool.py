"""The parse worker process gives exactly what inline parsing gives, and never fails a sync."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
from psycopg.types.json import Jsonb

from bot.mail.parse import parse_message
from bot.store.rows import EncodedParse, RowCodec
from bot.sync import parse_pool
from bot.sync.parse_pool import ParsePool

CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"

MALFORMED = [
    b"",
    b"no headers at all, just text",
    b"Subject: =?utf-8?B?broken\r\nContent-Type: multipart/mixed\r\n\r\nno boundary",
    b"From: \xff\xfe <bad@x>\r\nSubject: latin \xe9\r\nMessage-ID: <a@b>\r\n\r\nbody \x00 nul",
    b"Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\nContent-Type: text/plain; "
    b"charset=no-such-charset\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64\r\n",
]


def _sample() -> list[bytes]:
    raws = list(MALFORMED)
    if CORPORA.is_dir():
        for path in sorted(CORPORA.rglob("*.eml"))[:150]:
            raws.append(path.read_bytes())
    raws += [
        f"From: a{i}@x.example\r\nSubject: n{i}\r\nMessage-ID: <{i}@x>\r\n\r\nhi {i}\r\n".encode()
        for i in range(60)
    ]
    return raws


def test_worker_parse_equals_inline_parse_including_malformed_mail() -> None:
    raws = _sample()
    with ParsePool(min_batch=1) as pool:
        batch = pool.submit(raws)
        got = batch.result()
        assert pool.used == 1
    assert got.parsed == [parse_message(r) for r in raws]
    assert got.encoded is None  # no dialect asked for: the store encodes for itself


@pytest.mark.parametrize("dialect", ["sqlite+pysqlite", "postgresql+psycopg"])
def test_worker_encodes_the_rows_as_the_store_would(dialect: str) -> None:
    raws = _sample()
    with ParsePool(min_batch=1) as pool:
        got = pool.submit(raws, dialect=dialect).result()
        assert pool.used == 1
    codec = RowCodec.for_key(dialect)
    want = [codec.encode(parse_message(r), len(r)) for r in raws]
    assert [_comparable(e) for e in got.encoded or []] == [_comparable(e) for e in want]
    assert {e.dialect for e in got.encoded or []} == {dialect}
    assert got.parsed is None  # the encoded rows carry all the store needs


def _comparable(e: EncodedParse) -> EncodedParse:
    # psycopg's Jsonb wrappers (PostgreSQL's JSONB bind processor) do not compare by value.
    def plain(v: object) -> object:
        return ("jsonb", v.obj) if isinstance(v, Jsonb) else v

    return replace(
        e,
        values=tuple(map(plain, e.values)),
        defects_bound=plain(e.defects_bound),
        attachments=tuple(tuple(map(plain, a)) for a in e.attachments),
    )


def test_small_batches_are_parsed_inline() -> None:
    with ParsePool(min_batch=10) as pool:
        got = pool.submit([b"Subject: x\r\n\r\nhi"] * 9).result().parsed or []
        assert pool.used == 0 and pool._executor is None  # no process was started
    assert got[0].subject == "x"


def test_a_worker_that_cannot_start_means_inline_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise OSError("no processes for you")

    monkeypatch.setattr(parse_pool, "ProcessPoolExecutor", refuse)
    raws = [b"Subject: one\r\n\r\n1", b"Subject: two\r\n\r\n2"]
    with ParsePool(min_batch=1) as pool:
        assert [p.subject for p in pool.submit(raws).result().parsed or []] == ["one", "two"]
        assert not pool.enabled  # and it does not keep trying
        assert [p.subject for p in pool.submit(raws).result().parsed or []] == ["one", "two"]


def test_a_worker_killed_mid_sync_means_inline_parsing_for_that_batch() -> None:
    raws = [f"Subject: s{i}\r\n\r\nbody".encode() for i in range(5)]
    with ParsePool(min_batch=1) as pool:
        assert (pool.submit(raws).result().parsed or [])[0].subject == "s0"
        executor = pool._executor
        assert executor is not None
        for pid in list(executor._processes):  # the worker dies (OOM killer, kill -9)
            os.kill(pid, signal.SIGKILL)
        got = pool.submit(raws, dialect="sqlite+pysqlite").result()  # BrokenProcessPool inside:
    assert [p.subject for p in got.parsed or []] == [f"s{i}" for i in range(5)]  # parsed here
    assert got.encoded is None  # and the store encodes


def test_warm_starts_the_worker_only_for_a_big_enough_backlog() -> None:
    with ParsePool(min_batch=50) as pool:
        pool.warm(49, dialect="sqlite+pysqlite")
        assert pool._executor is None  # an incremental run: no process
        pool.warm(5000, dialect="sqlite+pysqlite")
        executor = pool._executor
        assert executor is not None and len(executor._processes) == 1  # started before a batch
        assert pool.used == 0
        raws = [f"Subject: w{i}\r\n\r\nbody".encode() for i in range(50)]
        got = pool.submit(raws, dialect="sqlite+pysqlite").result()
        assert pool._executor is executor and pool.used == 1  # the same worker parses
    assert [e.subject for e in got.encoded or []][:2] == ["w0", "w1"]


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def _worker_pid(pool: ParsePool) -> int:
    executor = pool._executor
    assert executor is not None
    [pid] = list(executor._processes)
    return int(pid)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_each_sync_forks_its_worker_from_one_loaded_fork_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker is not a new interpreter importing the parser and SQLAlchemy for every
    sync: it is forked, ready, by a fork server that `prestart` started once and that outlives
    each sync's pool. Its parse is the same as ever. With the server up, a smaller backlog is
    worth a worker."""
    monkeypatch.setattr(parse_pool, "_server_ready", False)  # restored after the test
    assert parse_pool.min_backlog() == parse_pool.MIN_BACKLOG
    parse_pool.prestart()
    assert parse_pool.min_backlog() == parse_pool.READY_MIN_BACKLOG < parse_pool.MIN_BACKLOG
    raws = [f"Subject: f{i}\r\nMessage-ID: <f{i}@x>\r\n\r\nbody".encode() for i in range(60)]
    parents = []
    for _sync in range(2):
        with ParsePool(min_batch=50) as pool:
            pool.warm(5000, dialect="sqlite+pysqlite")
            worker = _worker_pid(pool)
            parents.append(_parent_of(worker))
            got = pool.submit(raws, dialect="sqlite+pysqlite").result()
            assert [e.message_id for e in got.encoded or []] == [f"f{i}@x" for i in range(60)]
    server = parents[0]
    assert server != os.getpid() and _parent_of(server) == os.getpid()
    assert parents == [server, server]
    assert b"forkserver" in Path(f"/proc/{server}/cmdline").read_bytes()


def test_warm_is_a_no_op_when_the_worker_is_off() -> None:
    with ParsePool(enabled=False) as pool:
        pool.warm(10_000)
        assert pool._executor is None


def test_a_small_sync_backlog_never_starts_the_worker() -> None:
    raws = [f"Subject: s{i}\r\n\r\nbody".encode() for i in range(20)]
    with ParsePool(min_batch=10, min_backlog=1000) as pool:
        pool.warm(999, dialect="sqlite+pysqlite")
        got = pool.submit(raws, dialect="sqlite+pysqlite").result()
        assert pool._executor is None and pool.used == 0  # parsed here
        # Parsed here, and encoded here too: the store's transaction gets driver-ready rows.
        assert (got.encoded or [])[0].subject == "s0" and got.parsed is None
        pool.warm(1000, dialect="sqlite+pysqlite")  # the next folder is big
        assert pool._executor is not None
        assert pool.submit(raws, dialect="sqlite+pysqlite").result().encoded is not None
        assert pool.used == 1


def test_the_share_parsed_here_moves_toward_the_slower_side() -> None:
    share = 0.0
    for _ in range(20):  # this process keeps waiting for the worker: it takes more, up to half
        share = parse_pool.next_share(share, waited=0.2)
    assert share == parse_pool.MAX_SHARE
    share = parse_pool.next_share(share, waited=0.0)  # it did not wait: it gives some back
    assert share == pytest.approx(parse_pool.MAX_SHARE - parse_pool.SHARE_STEP)
    for _ in range(20):
        share = parse_pool.next_share(share, waited=0.0)
    assert share == 0.0


@pytest.mark.parametrize("dialect", [None, "sqlite+pysqlite"])
def test_a_batch_split_between_worker_and_here_comes_back_whole_and_in_order(
    dialect: str | None,
) -> None:
    raws = _sample()
    with ParsePool(min_batch=1) as pool:
        pool.share = 0.4
        batch = pool.submit(raws, dialect=dialect)
        assert batch._here == int(len(raws) * 0.4) > 0  # the tail is parsed here
        got = batch.result()
        assert pool.used == 1
    if dialect is None:
        assert got.parsed == [parse_message(r) for r in raws]
    else:
        codec = RowCodec.for_key(dialect)
        want = [codec.encode(parse_message(r), len(r)) for r in raws]
        assert [_comparable(e) for e in got.encoded or []] == [_comparable(e) for e in want]


def test_a_split_batch_whose_worker_dies_is_parsed_here_whole() -> None:
    raws = [f"Subject: s{i}\r\n\r\nbody".encode() for i in range(10)]
    with ParsePool(min_batch=1) as pool:
        assert pool.submit(raws[:1]).result().parsed  # the worker is up
        executor = pool._executor
        assert executor is not None
        for pid in list(executor._processes):
            os.kill(pid, signal.SIGKILL)
        pool.share = 0.3
        got = pool.submit(raws, dialect="sqlite+pysqlite").result()
    assert [p.subject for p in got.parsed or []] == [f"s{i}" for i in range(10)]
