"""IMAP sync benchmark (by hand): the engine vs a bare imapclient loop vs mbsync.

    .venv/bin/python bench/imap_sync_bench.py [--big 20000] [--small 2000] [--appends 50]

Starts a private Dovecot (tests/mailservers/dovecot.py), fills one mailbox with ``--small``
and one with ``--big`` generated messages over IMAP APPEND, then measures, in one run:
full-sync throughput of the engine (SQLite store), of a bare imapclient fetch loop and of
mbsync (isync) over the same mailboxes; the engine's peak RSS at both sizes (each
measurement runs in its own process); an incremental sync with nothing new at both sizes;
and the APPEND-to-stored delay under the worker's IDLE watcher. Prints progress as it goes
and a results table at the end. Only ratios within one run mean anything.

The mailbox is shaped like the one in ``shared/notes/imap-baseline.md`` that the throughput
target was set against (~300 MB at 20,000 messages: a tenth carry a 10-200 KB attachment).
Beside the engine it measures a floor, from what the engine stored: SQLite alone storing the
same rows in the same batches (no Python per row), and the parse alone. The gap between the
engine and those is the part our own code can still win back.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

# MAILROOM_BENCH_TREE: another checkout's code (a "before" commit, `--before`) for a child.
ROOT = Path(os.environ.get("MAILROOM_BENCH_TREE") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- mailbox generation ----------------------------------------------------------------


def generate(n: int, seed: int = 7, attachment_kb: tuple[int, int] = (10, 200)) -> list[bytes]:
    """Threads of 1-20 messages, ~500 senders in ~100 domains, plain and HTML, a tenth with an
    attachment of `attachment_kb`, utf-8 / latin-1 / quoted-printable / base64 bodies."""
    import base64

    rng = random.Random(seed)
    senders = [f"person{i}@domain{i % 100}.example" for i in range(500)]
    out: list[bytes] = []
    start = datetime(2024, 1, 1, tzinfo=UTC)
    thread_id = 0
    while len(out) < n:
        thread_id += 1
        root_mid = f"t{thread_id}.0@bench.example"
        subject = f"Order {thread_id} question {rng.randint(1000, 9999)}"
        refs: list[str] = []
        for k in range(rng.randint(1, 20)):
            if len(out) >= n:
                break
            mid = root_mid if k == 0 else f"t{thread_id}.{k}@bench.example"
            when = start + timedelta(minutes=len(out) * 7)
            headers = [
                f"From: Person <{rng.choice(senders)}>",
                "To: support@mailroom.test",
                f"Subject: {'Re: ' if k else ''}{subject}",
                f"Date: {format_datetime(when)}",
                f"Message-ID: <{mid}>",
                "MIME-Version: 1.0",
            ]
            if refs:
                headers += [
                    f"In-Reply-To: <{refs[-1]}>",
                    "References: " + " ".join(f"<{r}>" for r in refs[-10:]),
                ]
            body = "\n".join(
                f"Line {i}: the parcel number {rng.randint(10**6, 10**7)} has not arrived, café."
                for i in range(rng.randint(3, 40))
            )
            kind = rng.random()
            if kind < 0.1:
                blob = rng.randbytes(rng.randint(attachment_kb[0] * 1000, attachment_kb[1] * 1000))
                b64 = base64.encodebytes(blob).decode()
                headers.append('Content-Type: multipart/mixed; boundary="BOUND"')
                text = (
                    "--BOUND\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    "Content-Transfer-Encoding: 8bit\r\n\r\n" + body + "\r\n--BOUND\r\n"
                    'Content-Type: application/pdf; name="invoice.pdf"\r\n'
                    'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
                    "Content-Transfer-Encoding: base64\r\n\r\n" + b64 + "--BOUND--\r\n"
                )
                raw = ("\r\n".join(headers) + "\r\n\r\n" + text).encode()
            elif kind < 0.4:
                headers += [
                    "Content-Type: text/html; charset=utf-8",
                    "Content-Transfer-Encoding: 8bit",
                ]
                html = (
                    "<html><body>"
                    + "".join(f"<p>{line}</p>" for line in body.split("\n"))
                    + "</body></html>"
                )
                raw = ("\r\n".join(headers) + "\r\n\r\n" + html).encode()
            elif kind < 0.6:
                headers += [
                    "Content-Type: text/plain; charset=iso-8859-1",
                    "Content-Transfer-Encoding: quoted-printable",
                ]
                import quopri

                qp = quopri.encodestring(body.encode("latin-1")).decode()
                raw = ("\r\n".join(headers) + "\r\n\r\n" + qp).encode()
            else:
                headers += [
                    "Content-Type: text/plain; charset=utf-8",
                    "Content-Transfer-Encoding: 8bit",
                ]
                raw = ("\r\n".join(headers) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()
            out.append(raw)
            refs.append(mid)
    return out


def fill(server: Any, username: str, messages: list[bytes]) -> None:
    from imapclient import IMAPClient

    with IMAPClient(server.host, port=server.port, ssl=False) as c:
        c.login(username, server.password(username))
        for i, raw in enumerate(messages, 1):
            c.append("INBOX", raw)
            if i % 2000 == 0:
                say(f"  appended {i}/{len(messages)} to {username}")


# -- children: one measurement per process, so peak RSS belongs to it ---------------------


def key_file_for(db: str) -> Path:
    """The secret key of a bench database: beside a SQLite file, in the temp dir for a
    PostgreSQL database (named after it)."""
    if db.startswith("sqlite:///"):
        return Path(db.removeprefix("sqlite:///") + ".key")
    return Path(tempfile.gettempdir()) / f"mailroom-bench-{db.rsplit('/', 1)[-1]}.key"


def child_engine(args: argparse.Namespace) -> dict[str, Any]:
    from bot.access import AccessControl
    from bot.config import Settings
    from bot.crypto import Vault, generate_key
    from bot.providers.types import ImapSettings, SmtpSettings
    from bot.services import Services
    from bot.store import migrate
    from bot.store.db import make_engine, make_session_factory, session_scope
    from bot.sync.engine import SyncOptions, sync_account

    engine = make_engine(args.db)
    if args.create:
        migrate.upgrade(engine)
    factory = make_session_factory(engine)
    key_file = key_file_for(args.db)
    if args.create:
        key_file.write_text(generate_key())
    settings = Settings(secret_key=key_file.read_text())
    services = Services(
        settings, factory, Vault(settings.secret_key or ""), AccessControl(frozenset())
    )
    if args.create:
        from bot.accounts import create_imap_account

        with session_scope(factory) as s:
            acc = create_imap_account(
                s,
                services.vault,
                email=f"{args.user}@mailroom.test",
                imap=ImapSettings("127.0.0.1", args.port, "plain", args.user),
                smtp=SmtpSettings("127.0.0.1", 1, "plain", ""),
                imap_password=args.password,
                smtp_password=args.password,
                # A channel, as every real account has: the Slack announce decision runs (the
                # mailbox is history, appended before the account was added: nothing posts).
                channel_id="CBENCH",
            )
            account_id = acc.id
    else:
        account_id = 1
    if args.setup_only:
        return {"account_id": account_id}
    # What a running `mailroom worker` has already imported: time the sync, not the imports.
    import bot.inbox.announce
    import bot.store.ingest  # noqa: F401
    from bot.sync.parse_pool import prestart

    # ... and its parse worker's fork server, which `mailroom worker` starts when it starts.
    if not args.inline_parse:
        prestart()

    sampler = WorkerSampler()
    sampler.start()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    summary = sync_account(
        services,
        account_id,
        options=SyncOptions(batch_size=500, parse_in_worker=not args.inline_parse),
    )
    wall = time.perf_counter() - t0
    sampler.stop()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall": wall,
        # CPU seconds (user + system) of this process's threads and of its parse worker.
        "cpu_store": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2),
        "cpu_worker": round(sampler.cpu_s, 2),
        "new": summary.new,
        "status": summary.status.value,
        "problems": len(summary.problems),
        # The parse worker is this process's child: its peak, sampled, beside ours.
        "worker_rss_mb": sampler.peak_mb,
    }


class WorkerSampler:
    """The parse worker's peak RSS and its CPU seconds, sampled every 50 ms from /proc.

    The worker is forked by the fork server (bot/sync/parse_pool.py), a child of this
    process: it is this process's grandchild, so neither ru_maxrss nor RUSAGE_CHILDREN sees it.
    Every process below this one running multiprocessing's code that was not there at the
    start (the fork server was) counts; its CPU is the last sample before it ended."""

    def __init__(self) -> None:
        import threading

        self.peak_mb = 0.0
        import os

        self._cpu: dict[int, float] = {}
        self._tick = os.sysconf("SC_CLK_TCK")
        self._before = set(self._workers())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu.values())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _children(pid: int) -> list[int]:
        kids: list[int] = []
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            return kids
        for task in tasks:  # a child belongs to the thread that started it
            try:
                kids += [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
        return kids

    def _workers(self) -> list[int]:
        import os

        found: list[int] = []
        todo = self._children(os.getpid())
        while todo:
            pid = todo.pop()
            todo += self._children(pid)
            try:
                # Only once it runs multiprocessing's code: between fork and exec a spawned
                # child's RSS is this process's.
                if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                continue
        return found

    def _sample(self, pids: list[int]) -> None:
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            # The fields after the command name (which may hold spaces): utime, stime at 11, 12.
            fields = stat.rpartition(")")[2].split()
            self._cpu[pid] = (int(fields[11]) + int(fields[12])) / self._tick
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)

    def _run(self) -> None:
        # Every 50 ms the known workers' two /proc files (the last sample before a worker
        # ends is its CPU); the process tree is walked again only every half second, or
        # while no worker is known, to keep the sampler's own CPU small.
        known: list[int] = []
        ticks = 0
        while not self._stop.wait(0.05):
            if not known or ticks % 10 == 0:
                known = [p for p in self._workers() if p not in self._before]
            ticks += 1
            self._sample(known)


def child_bare(args: argparse.Namespace) -> dict[str, Any]:
    from imapclient import IMAPClient

    t0 = time.perf_counter()
    total = nbytes = 0
    with IMAPClient("127.0.0.1", port=args.port, ssl=False) as c:
        c.login(args.user, args.password)
        c.select_folder("INBOX", readonly=True)
        uids = c.search("ALL")
        for i in range(0, len(uids), 500):
            resp = c.fetch(
                uids[i : i + 500], ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY.PEEK[]"]
            )
            total += len(resp)
            nbytes += sum(len(v[b"BODY[]"]) for v in resp.values())
    return {"wall": time.perf_counter() - t0, "new": total, "bytes": nbytes}


def child_imaplib(args: argparse.Namespace) -> dict[str, Any]:
    """The floor: stdlib imaplib, the same UID FETCH in batches of 500, nothing parsed."""
    import imaplib

    t0 = time.perf_counter()
    total = nbytes = 0
    imap = imaplib.IMAP4("127.0.0.1", args.port)
    imap.login(args.user, args.password)
    imap.select("INBOX", readonly=True)
    _typ, found = imap.uid("SEARCH", "ALL")
    uids = found[0].split()
    for i in range(0, len(uids), 500):
        chunk = b",".join(uids[i : i + 500]).decode()
        _typ, data = imap.uid("FETCH", chunk, "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        bodies = [d[1] for d in data if isinstance(d, tuple)]
        total += len(bodies)
        nbytes += sum(map(len, bodies))
    imap.logout()
    return {"wall": time.perf_counter() - t0, "new": total, "bytes": nbytes}


def child_ours(args: argparse.Namespace) -> dict[str, Any]:
    """Our fetch path alone: ImapProvider.fetch_new (metadata, byte-bounded body batches, the
    response reading) over the whole folder, as a sync runs it, nothing stored."""
    from bot.providers.imap import ImapProvider
    from bot.providers.types import ImapSettings

    t0 = time.perf_counter()
    total = nbytes = 0
    settings = ImapSettings("127.0.0.1", args.port, "plain", args.user)
    with ImapProvider(settings, args.password) as provider:
        for batch in provider.fetch_new("INBOX", 0, batch_size=500):
            total += len(batch)
            nbytes += sum(len(m.raw) for m in batch)
    return {"wall": time.perf_counter() - t0, "new": total, "bytes": nbytes}


# The tables a full sync fills per message, in foreign-key order, and their message column.
_PER_MESSAGE = (
    ("messages", "id"),
    ("message_raw", "message_id"),
    ("attachments", "message_id"),
    ("message_refs", "message_id"),
    ("message_locations", "message_id"),
)


def child_floor(args: argparse.Namespace) -> dict[str, Any]:
    """Lower bounds for the engine's two heavy stages, from what its full sync stored in
    ``args.db``, so the gap to the bare loop can be split into "the work itself" and "our
    code around it":

    * store: SQLite's own work to store the same rows, in the engine's batches of 500, into a
      fresh migrated database: ``INSERT ... SELECT`` table by table, the FTS5 fill and a commit
      per batch, with the store's pragmas. No Python runs per row, so the storing thread of
      any engine on this store needs at least this long.
    * parse: ``parse_batch`` (what the parse worker runs: parse and encode rows) over the
      stored raw messages, in this process, in CPU seconds.
    """
    import sqlite3

    from bot.store import migrate
    from bot.store.db import make_engine
    from bot.store.search import FTS_FILL
    from bot.sync.parse_pool import parse_batch

    src = args.db.removeprefix("sqlite:///")
    dst = src + ".floor.db"
    for suffix in ("", "-wal", "-shm"):
        Path(dst + suffix).unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{dst}")
    migrate.upgrade(engine)
    engine.dispose()

    con = sqlite3.connect(dst, isolation_level=None)
    # The store's pragmas; the page size is the new database's own (bot/store/db.py). SQLite's
    # automatic checkpoints stay on: their work is part of storing.
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        con.execute(f"PRAGMA {pragma}")
    con.execute("ATTACH DATABASE ? AS src", (src,))
    per_message = {t for t, _ in _PER_MESSAGE}
    tables = [
        name
        for (name,) in con.execute("SELECT name FROM src.sqlite_master WHERE type = 'table'")
        if name not in per_message
        and name != "alembic_version"  # migrate.upgrade wrote it
        and not name.startswith(("message_fts", "sqlite_"))  # the index is filled per batch
    ]
    # Accounts, folders, conversations and the rest first: a few thousand rows, one statement
    # each (the engine writes conversations as it goes; they are a tenth of the messages).
    con.execute("BEGIN IMMEDIATE")
    con.execute("PRAGMA defer_foreign_keys=ON")
    for name in tables:
        con.execute(f"INSERT INTO main.{name} SELECT * FROM src.{name}")
    con.execute("COMMIT")
    ids = [i for (i,) in con.execute("SELECT id FROM src.messages ORDER BY id")]
    # The engine's batches, as id ranges (first, last).
    batches = [(ids[i], ids[min(i + 500, len(ids)) - 1]) for i in range(0, len(ids), 500)]

    parts: dict[str, float] = {}

    def timed(part: str, sql: str, *params: object) -> None:
        t = time.perf_counter()
        con.execute(sql, params)
        parts[part] = parts.get(part, 0.0) + time.perf_counter() - t

    t0 = time.perf_counter()
    for lo, hi in batches:
        con.execute("BEGIN IMMEDIATE")
        for name, column in _PER_MESSAGE:
            timed(
                name,
                f"INSERT INTO main.{name} SELECT * FROM src.{name} WHERE {column} BETWEEN ? AND ?",
                lo,
                hi,
            )
        timed("fts", FTS_FILL + "id BETWEEN ? AND ?", lo, hi)
        timed("commit", "COMMIT")
    store_wall = time.perf_counter() - t0
    con.close()

    reader = sqlite3.connect(src)
    parse_cpu = 0.0
    for lo, hi in batches:
        raws = [
            bytes(r)
            for (r,) in reader.execute(
                "SELECT raw FROM message_raw WHERE message_id BETWEEN ? AND ? ORDER BY message_id",
                (lo, hi),
            )
        ]
        c0 = time.process_time()
        parse_batch(raws, "sqlite+pysqlite")
        parse_cpu += time.process_time() - c0
    reader.close()
    for suffix in ("", "-wal", "-shm"):
        Path(dst + suffix).unlink(missing_ok=True)
    return {
        "store_wall": store_wall,
        "store_parts": {k: round(v, 3) for k, v in parts.items()},
        "parse_cpu": parse_cpu,
        "n": len(ids),
    }


def peak_rss_mb() -> float:
    """This process's own peak RSS. Not ru_maxrss: Linux carries it across execve, so a
    child would report the parent's peak at fork time (the generated mailbox)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    run = {
        "engine": child_engine,
        "bare": child_bare,
        "floor": child_floor,
        "imaplib": child_imaplib,
        "ours": child_ours,
    }[args.child]
    result = run(args)
    result["maxrss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


def run_child(
    kind: str,
    server: Any,
    user: str,
    db: str = "",
    create: bool = False,
    inline: bool = False,
    tree: Path | None = None,
) -> dict[str, Any]:
    cmd = (
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--port",
            str(server.port),
            "--user",
            user,
            f"--password={server.password(user)}",  # may start with "-"
            f"--db={db}",
        ]
        + (["--create"] if create else [])
        + (["--inline-parse"] if inline else [])
    )
    env = dict(os.environ, MAILROOM_BENCH_TREE=str(tree)) if tree is not None else None
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"{kind} child failed: {out.stderr[-2000:]}")


def run_mbsync(server: Any, user: str, work: Path) -> dict[str, Any]:
    store = work / f"mbsync-{user}"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    cfg = work / f"mbsyncrc-{user}"
    cfg.write_text(
        f"""# Like the Dovecot under test (mail_fsync = never) and notes/imap-baseline.md: no fsync.
# (A global option: it must come before the first section.)
FSync no

IMAPAccount bench
Host 127.0.0.1
Port {server.port}
User {user}
Pass {server.password(user)}
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account bench

MaildirStore local
Path {store}/
Inbox {store}/INBOX

Channel bench
Far :remote:
Near :local:
Patterns INBOX
Create Near
SyncState *
"""
    )
    cfg.chmod(0o600)
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "MAXRSS %M", "mbsync", "-q", "-c", str(cfg), "bench"],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"mbsync failed: {proc.stderr[-1000:]}")
    rss = next(
        (int(x.split()[1]) / 1024 for x in proc.stderr.splitlines() if x.startswith("MAXRSS")), 0.0
    )
    return {"wall": wall, "maxrss_mb": rss}


# -- IDLE latency -------------------------------------------------------------------------


def idle_latency(server: Any, user: str, db: str, appends: int) -> list[float]:
    from sqlalchemy import select

    from bot.access import AccessControl
    from bot.config import Settings
    from bot.crypto import Vault
    from bot.services import Services
    from bot.store.db import make_engine, make_session_factory, session_scope
    from bot.store.models import Account, Message
    from bot.sync.scheduler import SyncScheduler

    factory = make_session_factory(make_engine(db))
    key = Path(db.removeprefix("sqlite:///") + ".key").read_text()
    services = Services(Settings(secret_key=key), factory, Vault(key), AccessControl(frozenset()))
    with session_scope(factory) as s:
        s.get_one(Account, 1).next_sync_at = datetime.now(UTC) + timedelta(hours=1)
    sched = SyncScheduler(services, tick_seconds=3600, max_workers=2)
    sched.start()
    delays: list[float] = []
    try:
        sched.reconcile_watchers()
        time.sleep(3)
        from imapclient import IMAPClient

        with IMAPClient(server.host, port=server.port, ssl=False) as c:
            c.login(user, server.password(user))
            for i in range(appends):
                mid = f"idle{i}.{time.time()}@bench.example"
                raw = (
                    f"From: a@b.example\r\nTo: {user}@mailroom.test\r\nSubject: idle {i}\r\n"
                    f"Message-ID: <{mid}>\r\nDate: {format_datetime(datetime.now(UTC))}\r\n\r\nhi\r\n"
                ).encode()
                t0 = time.perf_counter()
                c.append("INBOX", raw)
                while time.perf_counter() - t0 < 30:
                    with session_scope(factory) as s:
                        if s.scalar(select(Message.id).where(Message.message_id == mid)):
                            break
                    time.sleep(0.01)
                delays.append(time.perf_counter() - t0)
                time.sleep(0.3)
    finally:
        sched.stop()
    return delays


# -- main ---------------------------------------------------------------------------------


def median_of(fn: Any, n: int = 3) -> float:
    return statistics.median(fn()["wall"] for _ in range(n))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--big", type=int, default=20_000)
    p.add_argument("--small", type=int, default=2_000)
    p.add_argument("--appends", type=int, default=50)
    p.add_argument("--child", choices=["engine", "bare", "floor", "imaplib", "ours"])
    p.add_argument("--port", type=int)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--db", default="")
    p.add_argument("--create", action="store_true")
    p.add_argument("--inline-parse", action="store_true", help="engine child: no parse worker")
    p.add_argument("--setup-only", action="store_true", help="engine child: create, do not sync")
    p.add_argument(
        "--whole",
        action="store_true",
        help="the issue-19 table: bare imapclient, mbsync and `mailroom sync --once` as a whole "
        "process on SQLite and PostgreSQL, interleaved, --rounds times each",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--before",
        default="",
        help="--whole: also run `mailroom sync --once` from this checkout (e.g. a `git archive` "
        "of the commit before a change), interleaved: the same-run baseline",
    )
    p.add_argument(
        "--pg",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="--whole: a PostgreSQL URL whose server may CREATE DATABASE (one per run)",
    )
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if args.whole:
        main_whole(args)
        return

    from tests.mailservers.dovecot import start_dovecot

    work = Path(tempfile.mkdtemp(prefix="mailroom-bench-"))
    say(f"work dir {work}; starting Dovecot")
    server = start_dovecot()
    try:
        say(f"generating {args.big} messages")
        msgs = generate(args.big)
        size_mb = sum(map(len, msgs)) / 1e6
        users = {}
        for n in (args.small, args.big):
            name, _ = server.new_user(f"bench{n}-")
            say(f"APPENDing {n} messages to {name}")
            t0 = time.perf_counter()
            fill(server, name, msgs[:n])
            say(f"  done in {time.perf_counter() - t0:.1f}s")
            users[n] = name
        results: dict[str, Any] = {"mailbox_mb_big": round(size_mb, 1)}
        for n, user in users.items():
            say(f"[{n}] warm-up + bare imapclient fetch loop")
            run_child("bare", server, user)
            bare = [run_child("bare", server, user) for _ in range(3)]
            say(f"[{n}] mbsync full sync")
            mb = [run_mbsync(server, user, work) for _ in range(3 if n == args.small else 1)]
            say(f"[{n}] engine full sync into SQLite (3 runs, each into a new database)")
            fulls = []
            for k in range(3):
                db = f"sqlite:///{work}/engine-{n}-{k}.db"
                fulls.append(run_child("engine", server, user, db, create=True))
                say(f"[{n}]   {fulls[-1]}")
            full = sorted(fulls, key=lambda r: r["wall"])[1]  # the median run, whole
            say(f"[{n}] floor: SQLite storing the same rows alone; the parse alone")
            floor = run_child("floor", server, user, db)
            say(f"[{n}]   {floor}")
            say(f"[{n}] engine full sync, parsing inline (no parse worker), for comparison")
            inline = run_child(
                "engine", server, user, f"sqlite:///{work}/inline-{n}.db", create=True, inline=True
            )
            say(f"[{n}]   {inline}")
            say(
                f"[{n}] engine incremental sync, nothing new (7 runs: each is ~0.1 s, mostly Dovecot opening the mailbox)"
            )
            inc = [run_child("engine", server, user, db) for _ in range(7)]
            results[str(n)] = {
                "bare_wall": statistics.median(r["wall"] for r in bare),
                "bare_rss": max(r["maxrss_mb"] for r in bare),
                "mbsync_wall": statistics.median(r["wall"] for r in mb),
                "mbsync_rss": max(r["maxrss_mb"] for r in mb),
                "engine_wall": full["wall"],
                "engine_walls": [r["wall"] for r in fulls],
                "engine_cpu_store": full["cpu_store"],
                "engine_cpu_worker": full["cpu_worker"],
                "floor_store_wall": floor["store_wall"],
                "floor_store_parts": floor["store_parts"],
                "floor_parse_cpu": floor["parse_cpu"],
                "engine_rss": full["maxrss_mb"],
                "engine_worker_rss": full["worker_rss_mb"],
                "engine_inline_wall": inline["wall"],
                "engine_new": full["new"],
                "engine_status": full["status"],
                "engine_problems": full["problems"],
                "incremental_wall": statistics.median(r["wall"] for r in inc),
                "incremental_rss": max(r["maxrss_mb"] for r in inc),
            }
            say(f"[{n}] {json.dumps(results[str(n)])}")
        say(f"IDLE: {args.appends} APPENDs into the {args.small}-message mailbox")
        delays = idle_latency(
            server, users[args.small], f"sqlite:///{work}/engine-{args.small}-2.db", args.appends
        )
        q = statistics.quantiles(delays, n=20)
        results["idle"] = {
            "p50": statistics.median(delays),
            "p95": q[18],
            "max": max(delays),
            "n": len(delays),
        }
        print_table(args, results)
        (work / "results.json").write_text(json.dumps(results, indent=2))
        say(f"results in {work / 'results.json'}")
    finally:
        server.stop()


# -- whole processes, both stores, interleaved (issue 19) -----------------------------------


def machine_load() -> dict[str, Any]:
    import os

    one, five, _fifteen = os.getloadavg()
    return {"load1": round(one, 2), "load5": round(five, 2), "cpus": os.cpu_count()}


def run_cli_sync(db: str, key: str, work: Path, tree: Path = ROOT) -> dict[str, Any]:
    """`mailroom sync --once` as a person runs it: a new process, its start-up included,
    timed from outside; peak RSS of the process tree's largest (GNU time: the CLI itself)."""
    import os

    env = dict(os.environ)
    env.update(
        DATABASE_URL=db,
        MAILROOM_SECRET_KEY=key,
        MAILROOM_DATA_DIR=str(work),
        PYTHONPATH=str(tree),
        MAILROOM_LOG_LEVEL="WARNING",
    )
    server = ServerCpu(db.rsplit("/", 1)[-1] if db.startswith("postgresql") else None)
    t0 = time.perf_counter()
    popen = subprocess.Popen(
        [
            "/usr/bin/time",
            "-f",
            "MAXRSS %M\nCPU %U %S",
            sys.executable,
            "-m",
            "bot",
            "sync",
            "--once",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(work),
    )
    tree_cpu = TreeCpu(popen.pid)
    stdout, stderr = popen.communicate(timeout=3600)
    wall = time.perf_counter() - t0
    tree_cpu.stop()
    server_cpu = server.stop()
    proc = subprocess.CompletedProcess(popen.args, popen.returncode, stdout, stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"mailroom sync failed: {proc.stdout[-800:]} {proc.stderr[-1500:]}")
    rss = next(
        (int(x.split()[1]) / 1024 for x in proc.stderr.splitlines() if x.startswith("MAXRSS")), 0.0
    )
    cpu = next((x.split()[1:] for x in proc.stderr.splitlines() if x.startswith("CPU ")), [])
    new = next((ln.strip() for ln in proc.stdout.splitlines() if "new" in ln), "")
    return {
        "wall": wall,
        "maxrss_mb": rss,
        # CPU s of the process and the children it waited for (GNU time), and of every
        # PostgreSQL server process meanwhile (the backend's tsvector, TOAST, WAL work).
        "cpu_cli": round(sum(float(c) for c in cpu), 2),
        # ... and of its whole process tree: the CLI, the fork server and the parse worker
        # (a grandchild, which GNU time does not count), sampled from /proc every 100 ms.
        "cpu_tree": round(tree_cpu.total, 2),
        "cpu_postgres": round(server_cpu, 2),
        # Only the backends connected to this run's database: other work on the shared
        # server (and its WAL writer, checkpointer) left out.
        "cpu_postgres_own": round(server.own, 2),
        "summary": new,
    }


def postgres_cpu(database: str | None = None) -> dict[int, float]:
    """CPU seconds used so far by each process named postgres (readable in /proc); with
    `database`, only the backends connected to it (their title names it)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            if database is not None:
                title = (
                    (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
                if f" {database} " not in title:
                    continue
            fields = (proc / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out[int(proc.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far, itself only; None if gone."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (from /proc/*/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in (Path("/proc") / str(p) / "task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return out


class TreeCpu:
    """The CPU seconds of a process tree (a command, its children and theirs: the parse
    worker is the CLI's grandchild), sampled every 100 ms: each process's last sample."""

    def __init__(self, pid: int) -> None:
        import threading

        self.pid = pid
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        for p in descendants(self.pid):
            cpu = process_cpu(p)
            if cpu is not None:
                self._last[p] = cpu

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def total(self) -> float:
        return sum(self._last.values())


class ServerCpu:
    """PostgreSQL's CPU seconds during a run, sampled every 100 ms: a backend ends with its
    connection (and its /proc entry with it), so its last sample is what it used. `own`: the
    backends of `database` alone."""

    def __init__(self, database: str | None = None) -> None:
        import threading

        self._database = database
        self._first = postgres_cpu()
        self._last = dict(self._first)
        self._own: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def _sample(self) -> None:
        self._last.update(postgres_cpu())
        if self._database is not None:
            self._own.update(postgres_cpu(self._database))

    @property
    def own(self) -> float:
        return sum(v - self._first.get(pid, 0.0) for pid, v in self._own.items())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(v - self._first.get(pid, 0.0) for pid, v in self._last.items())


def fresh_database(kind: str, work: Path, admin_url: str, tag: str) -> str:
    """A new, empty store: a SQLite file, or a PostgreSQL database made for this run."""
    if kind == "sqlite":
        return f"sqlite:///{work}/whole-{tag}.db"
    from sqlalchemy import text

    from bot.store.db import make_engine

    name = f"mailroom_bench_{tag}".replace("-", "_")
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(db: str, admin_url: str) -> None:
    key_file_for(db).unlink(missing_ok=True)  # the store's secret key goes with it
    if not db.startswith("postgresql"):
        return
    from sqlalchemy import text

    from bot.store.db import make_engine

    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{db.rsplit("/", 1)[-1]}" WITH (FORCE)'))
    admin.dispose()


def setup_store(server: Any, user: str, db: str, tree: Path = ROOT) -> str:
    """Migrate a fresh store with `tree`'s migrations and add the account (untimed); its
    secret key."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "engine",
        "--setup-only",
        "--create",
        "--port",
        str(server.port),
        "--user",
        user,
        f"--password={server.password(user)}",
        f"--db={db}",
    ]
    env = dict(os.environ, MAILROOM_BENCH_TREE=str(tree))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if "RESULT " not in out.stdout:
        raise RuntimeError(f"setup failed: {out.stderr[-2000:]}")
    return key_file_for(db).read_text().strip()


def main_whole(args: argparse.Namespace) -> None:
    from tests.mailservers.dovecot import start_dovecot

    work = Path(tempfile.mkdtemp(prefix="mailroom-bench-whole-"))
    say(f"work dir {work}; starting Dovecot; load {machine_load()}")
    server = start_dovecot()
    results: dict[str, Any] = {"load_start": machine_load(), "rounds": args.rounds}
    try:
        msgs = generate(args.big)
        users = {}
        for n in (args.small, args.big):
            name, _ = server.new_user(f"whole{n}-")
            say(f"APPENDing {n} messages to {name}")
            fill(server, name, msgs[:n])
            users[n] = name
        results["mailbox_mb"] = {
            str(n): round(sum(map(len, msgs[:n])) / 1e6, 1) for n in (args.small, args.big)
        }
        for n, user in users.items():
            say(f"[{n}] warm-up: bare fetch loop")
            run_child("bare", server, user)
            runs: dict[str, list[dict[str, Any]]] = {
                "imaplib": [],
                "bare": [],
                "ours": [],
                "mbsync": [],
                "sqlite": [],
                "postgresql": [],
            }
            trees = [("", ROOT)]
            if args.before:
                trees.append(("before ", Path(args.before).resolve()))
                runs.update({"before ours": [], "before sqlite": [], "before postgresql": []})
            for k in range(args.rounds):
                # Interleaved: one of each per round, so a slow minute hurts all alike.
                runs["imaplib"].append(run_child("imaplib", server, user))
                runs["bare"].append(run_child("bare", server, user))
                for label, tree in trees:  # our fetch path alone, nothing stored
                    runs[label + "ours"].append(run_child("ours", server, user, tree=tree))
                runs["mbsync"].append(run_mbsync(server, user, work))
                for (label, tree), kind in [
                    (t, kd) for t in trees for kd in ("sqlite", "postgresql")
                ]:
                    tag = f"{n}_{k}_{'b' if label else 'a'}"
                    db = fresh_database(kind, work, args.pg, tag)
                    key = setup_store(server, user, db, tree)
                    try:
                        runs[label + kind].append(run_cli_sync(db, key, work, tree))
                    finally:
                        drop_database(db, args.pg)
                say(f"[{n}] round {k + 1}: " + json.dumps({t: r[-1] for t, r in runs.items()}))
            results[str(n)] = {
                t: {
                    "wall": statistics.median(r["wall"] for r in rs),
                    "walls": [round(r["wall"], 2) for r in rs],
                    "maxrss_mb": max(r["maxrss_mb"] for r in rs),
                    "cpu_cli": statistics.median(r.get("cpu_cli", 0.0) for r in rs),
                    "cpu_tree": statistics.median(r.get("cpu_tree", 0.0) for r in rs),
                    "cpu_postgres": statistics.median(r.get("cpu_postgres", 0.0) for r in rs),
                    "cpu_postgres_own": statistics.median(
                        r.get("cpu_postgres_own", 0.0) for r in rs
                    ),
                }
                for t, rs in runs.items()
            }
            results[str(n)]["load"] = machine_load()
        results["load_end"] = machine_load()
        print_whole(args, results)
        (work / "results-whole.json").write_text(json.dumps(results, indent=2))
        say(f"results in {work / 'results-whole.json'}")
    finally:
        server.stop()


def print_whole(args: argparse.Namespace, r: dict[str, Any]) -> None:
    print(f"\nmachine: {r['load_start']} at the start, {r['load_end']} at the end")
    print(
        "| tool | msgs | wall s (median) | runs | msgs/s | speed vs mbsync | peak RSS MB "
        "| CPU s: process / PostgreSQL | CPU s: process tree / own PostgreSQL backends |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    labels = {
        "imaplib": "stdlib imaplib bare fetch",
        "bare": "imapclient bare fetch",
        "ours": "our fetch path alone (`ImapProvider.fetch_new`)",
        "before ours": "before (`--before`), our fetch path alone",
        "mbsync": "mbsync → Maildir",
        "sqlite": "`mailroom sync --once`, SQLite",
        "postgresql": "`mailroom sync --once`, PostgreSQL",
        "before sqlite": "before (`--before`), SQLite",
        "before postgresql": "before (`--before`), PostgreSQL",
    }
    for n in (args.small, args.big):
        d = r[str(n)]
        for t, label in labels.items():
            if t not in d:
                continue
            w = d[t]["wall"]
            ratio = d["mbsync"]["wall"] / w
            print(
                f"| {label} | {n:,} | {w:.2f} | {d[t]['walls']} | {n / w:,.0f} | "
                f"{ratio:.2f} | {d[t]['maxrss_mb']:.0f} | "
                + (
                    f"{d[t]['cpu_cli']:.1f} / {d[t]['cpu_postgres']:.1f} | "
                    f"{d[t].get('cpu_tree', 0.0):.1f} / {d[t].get('cpu_postgres_own', 0.0):.1f} |"
                    if "sqlite" in t or "postgresql" in t
                    else "| |"
                )
            )


def print_table(args: argparse.Namespace, r: dict[str, Any]) -> None:
    print(f"\nmailbox of {args.big}: {r['mailbox_mb_big']} MB")
    print(f"| measurement | {args.small} msgs | {args.big} msgs |")
    print("|---|---:|---:|")
    s, b = r[str(args.small)], r[str(args.big)]
    for label, key, fmt in (
        ("bare imapclient fetch loop, s", "bare_wall", "{:.2f}"),
        ("mbsync full sync, s", "mbsync_wall", "{:.2f}"),
        ("engine full sync (SQLite), s", "engine_wall", "{:.2f}"),
        ("  its storing process, CPU s", "engine_cpu_store", "{:.2f}"),
        ("  its parse worker, CPU s", "engine_cpu_worker", "{:.2f}"),
        ("floor: SQLite alone storing the same rows, s", "floor_store_wall", "{:.2f}"),
        ("floor: parse + encode alone, CPU s", "floor_parse_cpu", "{:.2f}"),
        ("engine full sync, parsing inline, s", "engine_inline_wall", "{:.2f}"),
        ("engine incremental, nothing new, s", "incremental_wall", "{:.3f}"),
        ("engine peak RSS, MB", "engine_rss", "{:.0f}"),
        ("engine's parse worker peak RSS, MB", "engine_worker_rss", "{:.0f}"),
        ("bare imapclient peak RSS, MB", "bare_rss", "{:.0f}"),
        ("mbsync peak RSS, MB", "mbsync_rss", "{:.1f}"),
    ):
        print(f"| {label} | {fmt.format(s[key])} | {fmt.format(b[key])} |")
    for n, d in ((args.small, s), (args.big, b)):
        rate_e, rate_b, rate_m = n / d["engine_wall"], n / d["bare_wall"], n / d["mbsync_wall"]
        print(
            f"\n{n}: engine {rate_e:.0f} msg/s, bare imapclient {rate_b:.0f} msg/s, mbsync {rate_m:.0f} msg/s; "
            f"engine/bare = {rate_e / rate_b:.2f} (target >= 0.5)"
        )
    print(f"\n{args.big}: SQLite's own storing time by part, s: {b['floor_store_parts']}")
    print(
        f"incremental {args.big}/{args.small} = {b['incremental_wall'] / s['incremental_wall']:.2f} (target < 1.5)"
    )
    i = r["idle"]
    print(
        f"IDLE APPEND->stored over {i['n']}: p50 {i['p50']:.3f}s, p95 {i['p95']:.3f}s, max {i['max']:.3f}s (target p95 < 2 s)"
    )


if __name__ == "__main__":
    main()
