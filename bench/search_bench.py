"""Search benchmark (run by hand, not in tests).

    .venv/bin/python bench/search_bench.py [--rows 100000] [--runs 30] [--skip-pg] [--skip-sqlite]
        [--keep]   # reuse (or create and keep) the SQLite file and the `mailroom_sbench_keep`
                   # PostgreSQL database instead of loading fresh ones: quicker repeat runs
    .venv/bin/python bench/search_bench.py --rows 1000000 --runs 20   # the issue-19 target size

Bulk-inserts `rows` generated messages (Zipf vocabulary, 5 accounts, 500 senders, one year,
ids NOT in date order for a fifth of them, as after a history import) straight into the tables
(no MIME parse: that is the import bench's job), then times bot.store.search.search() end to
end (query, filters, count, snippets) for a set of query shapes, each per email and grouped
per conversation (`per_conversation=True`, what the search modal and `/inbox search` run;
messages come in threads of about three). Targets (issue 19): p95 < 20 ms at 100,000 rows and
< 50 ms at 1,000,000, prefix queries (the last word typed so far) included.
Conversations carry team-triage state (owner, status, waiting since, snooze): the `is:mine`…
queries and the `list …` rows time the triage views (issue 16) as the person U1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# `--code DIR` (the child process of --before): import the application from DIR instead.
sys.path.insert(
    0,
    sys.argv[sys.argv.index("--code") + 1]
    if "--code" in sys.argv
    else str(Path(__file__).resolve().parents[1]),
)

from sqlalchemy import insert, text

from bot.store import migrate
from bot.store.conversations import count_conversations, list_conversations
from bot.store.db import make_engine, make_session_factory, session_scope
from bot.store.models import Account, Conversation, Message, Provider
from bot.store.search import index_unindexed, search

VOCAB = [f"w{i}" for i in range(20_000)]
COMMON = "w0"  # in about a third of the rows
MEDIUM = "w40"
RARE = "w15000"
WEIGHTS = [1 / (i + 1) for i in range(len(VOCAB))]
# Given once: `choices(weights=...)` would add up all 20,000 weights again for every message
# (most of the load's time); the same cumulative weights draw the same words.
CUM_WEIGHTS = list(itertools.accumulate(WEIGHTS))

QUERIES = {
    "rare term": RARE,
    "common term": COMMON,
    "medium AND common": f"{MEDIUM} {COMMON}",
    "phrase of two words": f'"{COMMON} w1"',
    "from:address + term": f"from:sender7@dom7.example {MEDIUM}",
    "is:unread + account + term": f"is:unread account:acc2@ours.example {COMMON}",
    "subject: term": f"subject:{MEDIUM}",
    "term -negation": f"{MEDIUM} -{COMMON}",
    "has:attachment + after:": "has:attachment after:2024-06-01",
    "no match": "zzzznotthere",
    # Search as you type (issue 19): the last word is a prefix. Every word is w<number>, so
    # "w1" is the prefix of w1, w10…w19, w100…w199, w1000…w1999, w10000…w19999.
    "prefix, 2 chars (w1…)": "w1",
    "prefix, 3 chars (w15…)": "w15",
    "prefix of a rare word (w1500…)": "w1500",
    "word + prefix": f"{MEDIUM} w15",
    "from:address + prefix": "from:sender7@dom7.example w4",
    # Team triage views (issue 16), as the person U1.
    "is:mine": "is:mine",
    "is:unassigned": "is:unassigned",
    "is:waiting": "is:waiting",
    "is:snoozed": "is:snoozed",
    "is:unanswered": "is:unanswered",
    "is:unanswered + term": f"is:unanswered {MEDIUM}",
}
# The same views as conversation lists with their count (`/inbox list`, App Home, filters).
LIST_VIEWS = ("mine", "unassigned", "waiting", "snoozed", "unanswered")
ME = "U1"
GROUPED = " [per conversation]"
AGENTS = [None, None, None, "U1", "U2", "U3", "U4", "U5"]


def triage_columns(rng: random.Random, start: datetime, rows: int) -> dict[str, object]:
    """A plausible team inbox: most done, some waiting on the customer, a few snoozed."""
    status = rng.choices(["done", "waiting", "open"], [70, 15, 15])[0]
    waiting = start + timedelta(minutes=rng.randrange(5 * rows))
    return {
        "assignee": rng.choice(AGENTS),
        "status": status,
        "archived": status == "done",
        "waiting_since": waiting if status == "open" and rng.random() < 0.7 else None,
        "snoozed_until": start + timedelta(days=400) if rng.random() < 0.03 else None,
    }


def load(url: str, rows: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    engine = make_engine(url)
    migrate.upgrade(engine)
    factory = make_session_factory(engine)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with session_scope(factory) as s:
        accounts = [
            Account(provider=Provider.IMAP, email=f"acc{i}@ours.example", config={})
            for i in range(5)
        ]
        s.add_all(accounts)
        s.flush()
        account_ids = [a.id for a in accounts]
    t = time.perf_counter()
    batch = 5000
    for b in range(0, rows, batch):
        n = min(batch, rows - b)
        with session_scope(factory) as s:
            msgs = []
            for i in range(n):
                k = b + i
                # 80% arrive in date order, 20% are older history imported later.
                when = (
                    start + timedelta(minutes=5 * k)
                    if rng.random() < 0.8
                    else start + timedelta(minutes=rng.randrange(5 * rows))
                )
                words = rng.choices(VOCAB, cum_weights=CUM_WEIGHTS, k=60)
                if rng.random() < 0.35:
                    words.append(COMMON)
                sender = rng.randrange(500)
                msgs.append(
                    {
                        "message_id": f"{k}.{uuid.uuid4().hex[:8]}@bench",
                        "subject": " ".join(rng.choices(VOCAB[:2000], k=5)),
                        "from_email": f"sender{sender}@dom{sender % 100}.example",
                        "from_name": f"Sender {sender}",
                        "body_text": " ".join(words),
                        "snippet": " ".join(words[:20]),
                        "date": when,
                        "is_read": rng.random() < 0.7,
                        "has_attachments": rng.random() < 0.1,
                    }
                )
            # Threads of about three messages (grouped search shows each thread once), with
            # the dates ingest keeps on the conversation (first / last message, count).
            n_convs = max(1, n // 3)
            members: list[list[dict[str, object]]] = [[] for _ in range(n_convs)]
            for i, m in enumerate(msgs):
                members[min(i // 3, n_convs - 1)].append(m)
            convs = []
            for j, group in enumerate(members):
                dates = [m["date"] for m in group]
                convs.append(
                    {
                        "account_id": account_ids[(b + j) % 5],
                        "subject": "x",
                        "message_count": len(group),
                        "first_message_at": min(dates),  # type: ignore[type-var]
                        "last_message_at": max(dates),  # type: ignore[type-var]
                        **triage_columns(rng, start, rows),
                    }
                )
            conv_ids = list(s.scalars(insert(Conversation).returning(Conversation.id), convs))
            for cid, conv, group in zip(conv_ids, convs, members, strict=True):
                for m in group:
                    # A thread lives in one mailbox (the conversation's account).
                    m["conversation_id"] = cid
                    m["account_id"] = conv["account_id"]
            s.execute(insert(Message), msgs)
            index_unindexed(s)
        print(f"  loaded {b + n:>7} rows ({time.perf_counter() - t:.0f} s)", flush=True)
    if engine.dialect.name == "postgresql":
        # What autovacuum does to a live database after a bulk load: statistics, and the
        # visibility map that lets counts be index-only scans (a fresh load has none).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as c:
            c.execute(text("ANALYZE"))
    engine.dispose()
    return account_ids


def reuse(url: str) -> list[int]:
    """An already loaded database (--keep): bring it to the newest schema, return account ids."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as c:
        c.execute(text("ANALYZE"))
        ids = [r[0] for r in c.execute(text("SELECT id FROM accounts ORDER BY id"))]
    engine.dispose()
    print(f"{url.split(':')[0]}: reusing the loaded database", flush=True)
    return ids


# shape -> (timed runs in ms, the count shown, CPU ms of each run: this process and, on
# PostgreSQL, its server process; unlike wall time, it barely moves with the machine's load)
Times = dict[str, tuple[list[float], str, list[float]]]
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_clock(session: Any) -> Callable[[], float]:
    """CPU seconds used so far by this process and the session's PostgreSQL backend."""
    pid = None
    if session.get_bind().dialect.name == "postgresql":
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar()

    def now() -> float:
        used = time.process_time()
        if pid is not None:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            used += (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
        return used

    return now


def run_queries(url: str, account_ids: list[int], runs: int, tag: str = "") -> Times:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    out: Times = {}

    def done(name: str, times: list[float], label: str, cpu: list[float], extra: str = "") -> None:
        out[name] = (times, label, cpu)
        p50, p95 = stats(times)
        print(
            f"  {tag}{name:<44} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   "
            f"cpu {statistics.mean(cpu):6.1f} ms   ({label}{extra})"
        )
        sys.stdout.flush()

    def timed(call: Callable[[Any], Any]) -> tuple[list[float], list[float], Any]:
        times: list[float] = []
        cpu: list[float] = []
        result = None
        for i in range(runs + 2):
            with session_scope(factory) as s:
                clock = _cpu_clock(s)
                c0 = clock()
                t = time.perf_counter()
                result = call(s)
                elapsed = (time.perf_counter() - t) * 1000
                used = (clock() - c0) * 1000
            if i >= 2:  # warm-up runs are not counted
                times.append(elapsed)
                cpu.append(used)
        return times, cpu, result

    for (base, q), grouped in [(item, g) for item in QUERIES.items() for g in (False, True)]:
        name = base + GROUPED if grouped else base

        def one(s: Any, q: str = q, grouped: bool = grouped) -> Any:
            return search(
                s,
                q,
                visible_account_ids=account_ids,
                user_id=ME,
                limit=20,
                per_conversation=grouped,
            )

        times, cpu, page = timed(one)
        done(name, times, page.total_label, cpu)
    for view in LIST_VIEWS:
        name = f"list {view}"

        def listed(s: Any, view: str = view) -> Any:
            rows = list_conversations(s, filter=view, account_ids=account_ids, user_id=ME, limit=11)
            return rows, count_conversations(s, filter=view, account_ids=account_ids, user_id=ME)

        times, cpu, (rows, total) = timed(listed)
        done(name, times, f"{total:,}", cpu, f" conversations, {len(rows)} shown")
    engine.dispose()
    return out


def stats(times: list[float]) -> tuple[float, float]:
    """(p50, p95) in ms."""
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def account_ids_of(url: str) -> list[int]:
    engine = make_engine(url)
    with engine.connect() as c:
        ids = [r[0] for r in c.execute(text("SELECT id FROM accounts ORDER BY id"))]
    engine.dispose()
    return ids


def time_before(before: str, url: str, runs: int) -> Times:
    """The same shapes timed with the code in `before` (a `git archive` of an older commit)
    on the same database, in a child process that imports that code (no migration run)."""
    cmd = [sys.executable, __file__, "--code", before, "--time-only", url, "--runs", str(runs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    print(proc.stdout.rsplit("RESULT ", 1)[0], end="", flush=True)
    raw = json.loads(proc.stdout.rsplit("RESULT ", 1)[1])
    return {k: (v[0], v[1], v[2]) for k, v in raw.items()}


def measure(url: str, ids: list[int], args: argparse.Namespace) -> dict[str, Times]:
    """This code's times, and with --before the older code's, interleaved round by round
    (`--rounds`) so that the machine's load hits both alike; runs pooled across rounds."""
    out: dict[str, Times] = {}
    for r in range(args.rounds):
        sides = [("after", None), ("before", args.before)] if args.before else [("after", None)]
        if r % 2 == 1:
            sides.reverse()
        for side, code in sides:
            print(f"  -- round {r + 1}, {side}, load {load_average()}", flush=True)
            got = time_before(code, url, args.runs) if code else run_queries(url, ids, args.runs)
            for k, (times, label, cpu) in got.items():
                prev, _label, prev_cpu = out.setdefault(side, {}).get(k, ([], label, []))
                out[side][k] = (prev + times, label, prev_cpu + cpu)
    return out


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000, help="messages (try 1000000)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sqlite", default="/tmp/mailroom-search-bench.db")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--pg-name", default="mailroom_sbench_keep", help="the kept PostgreSQL db")
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--keep", action="store_true", help="reuse / keep the loaded databases")
    ap.add_argument(
        "--before",
        metavar="DIR",
        help="also time the code in DIR (`git archive <commit> | tar -x -C DIR`) on the same "
        "databases, interleaved with this code's runs",
    )
    ap.add_argument("--load-only", action="store_true", help="with --keep: load, time nothing")
    ap.add_argument("--rounds", type=int, default=1, help="with --before: alternate N times")
    ap.add_argument("--code", help=argparse.SUPPRESS)  # the child of --before: import from here
    ap.add_argument("--time-only", metavar="URL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.time_only:
        got = run_queries(args.time_only, account_ids_of(args.time_only), args.runs)
        print("RESULT " + json.dumps(got), flush=True)
        return
    results: dict[str, Times] = {}
    if not args.skip_sqlite:
        url = f"sqlite:///{args.sqlite}"
        if args.keep and Path(args.sqlite).exists():
            ids = reuse(url)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(args.sqlite + suffix).unlink(missing_ok=True)
            print(f"SQLite: loading {args.rows} rows", flush=True)
            ids = load(url, args.rows, args.seed)
        for side, times in ({} if args.load_only else measure(url, ids, args)).items():
            results["SQLite" + ("" if side == "after" else " before")] = times
    if not args.skip_pg:
        from bot.store.db import make_engine as mk

        admin = mk(args.pg, isolation_level="AUTOCOMMIT", pool_size=1)
        name = args.pg_name if args.keep else f"mailroom_sbench_{uuid.uuid4().hex[:8]}"
        url = args.pg.rsplit("/", 1)[0] + "/" + name
        with admin.connect() as c:
            exists = c.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not exists:
                c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            if exists:
                ids = reuse(url)
            else:
                print(f"PostgreSQL: loading {args.rows} rows", flush=True)
                ids = load(url, args.rows, args.seed)
            for side, times in ({} if args.load_only else measure(url, ids, args)).items():
                results["PostgreSQL" + ("" if side == "after" else " before")] = times
        finally:
            if not args.keep:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    dbs = list(results)
    if not dbs:
        return
    print()
    print("| query | " + " | ".join(f"{d} p50 | {d} p95 | {d} CPU" for d in dbs) + " | matches |")
    print("|---|" + "---:|---:|---:|" * len(dbs) + "---:|")
    names = [n for q in QUERIES for n in (q, q + GROUPED)]
    for q in [*names, *(f"list {v}" for v in LIST_VIEWS)]:
        cells = " | ".join(
            "{:.1f} | {:.1f} | {:.1f}".format(
                *stats(results[d][q][0]), statistics.mean(results[d][q][2])
            )
            for d in dbs
        )
        base = q.removesuffix(GROUPED)
        shown = f"`{QUERIES[base]}`" if base in QUERIES else "list + count"
        print(f"| {q} ({shown}) | {cells} | {results[dbs[0]][q][1]} |")
    worst = {d: max(stats(v[0])[1] for v in results[d].values()) for d in dbs}
    print(f"\nworst p95 per store, ms: {worst}  (rows {args.rows:,}, load {load_average()})")


if __name__ == "__main__":
    main()
