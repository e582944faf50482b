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
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
            # Threads of about three messages (grouped search shows each thread once).
            convs = [
                {
                    "account_id": account_ids[(b + i) % 5],
                    "subject": "x",
                    "message_count": 1,
                    **triage_columns(rng, start, rows),
                }
                for i in range(max(1, n // 3))
            ]
            conv_ids = list(s.scalars(insert(Conversation).returning(Conversation.id), convs))
            msgs = []
            for i in range(n):
                k = b + i
                # 80% arrive in date order, 20% are older history imported later.
                when = (
                    start + timedelta(minutes=5 * k)
                    if rng.random() < 0.8
                    else start + timedelta(minutes=rng.randrange(5 * rows))
                )
                words = rng.choices(VOCAB, WEIGHTS, k=60)
                if rng.random() < 0.35:
                    words.append(COMMON)
                sender = rng.randrange(500)
                msgs.append(
                    {
                        "account_id": account_ids[k % 5],
                        "conversation_id": conv_ids[min(i // 3, len(conv_ids) - 1)],
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
            s.execute(insert(Message), msgs)
            index_unindexed(s)
        print(f"  loaded {b + n:>7} rows ({time.perf_counter() - t:.0f} s)", flush=True)
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


def run_queries(url: str, account_ids: list[int], runs: int) -> dict[str, tuple[float, float, str]]:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    out = {}
    for (base, q), grouped in [(item, g) for item in QUERIES.items() for g in (False, True)]:
        name = base + GROUPED if grouped else base
        times = []
        label = ""
        for i in range(runs + 2):
            with session_scope(factory) as s:
                t = time.perf_counter()
                page = search(
                    s,
                    q,
                    visible_account_ids=account_ids,
                    user_id=ME,
                    limit=20,
                    per_conversation=grouped,
                )
                elapsed = (time.perf_counter() - t) * 1000
            if i >= 2:  # warm-up runs are not counted
                times.append(elapsed)
            label = page.total_label
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        out[name] = (statistics.median(times), p95, label)
        print(
            f"  {name:<44} p50 {out[name][0]:7.1f} ms   p95 {p95:7.1f} ms   ({label})",
            flush=True,
        )
    for view in LIST_VIEWS:
        name = f"list {view}"
        times = []
        for i in range(runs + 2):
            with session_scope(factory) as s:
                t = time.perf_counter()
                rows = list_conversations(
                    s, filter=view, account_ids=account_ids, user_id=ME, limit=11
                )
                total = count_conversations(s, filter=view, account_ids=account_ids, user_id=ME)
                elapsed = (time.perf_counter() - t) * 1000
            if i >= 2:
                times.append(elapsed)
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        out[name] = (statistics.median(times), p95, f"{total:,}")
        print(
            f"  {name:<28} p50 {out[name][0]:7.1f} ms   p95 {p95:7.1f} ms   "
            f"({total:,} conversations, {len(rows)} shown)",
            flush=True,
        )
    engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000, help="messages (try 1000000)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sqlite", default="/tmp/mailroom-search-bench.db")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--keep", action="store_true", help="reuse / keep the loaded databases")
    args = ap.parse_args()
    results: dict[str, dict[str, tuple[float, float, str]]] = {}
    if not args.skip_sqlite:
        url = f"sqlite:///{args.sqlite}"
        if args.keep and Path(args.sqlite).exists():
            ids = reuse(url)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(args.sqlite + suffix).unlink(missing_ok=True)
            print(f"SQLite: loading {args.rows} rows", flush=True)
            ids = load(url, args.rows, args.seed)
        results["SQLite"] = run_queries(url, ids, args.runs)
    if not args.skip_pg:
        from bot.store.db import make_engine as mk

        admin = mk(args.pg, isolation_level="AUTOCOMMIT", pool_size=1)
        name = "mailroom_sbench_keep" if args.keep else f"mailroom_sbench_{uuid.uuid4().hex[:8]}"
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
            results["PostgreSQL"] = run_queries(url, ids, args.runs)
        finally:
            if not args.keep:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    dbs = list(results)
    print()
    print("| query | " + " | ".join(f"{d} p50 | {d} p95" for d in dbs) + " | matches |")
    print("|---|" + "---:|---:|" * len(dbs) + "---:|")
    names = [n for q in QUERIES for n in (q, q + GROUPED)]
    for q in [*names, *(f"list {v}" for v in LIST_VIEWS)]:
        cells = " | ".join(f"{results[d][q][0]:.1f} | {results[d][q][1]:.1f}" for d in dbs)
        base = q.removesuffix(GROUPED)
        shown = f"`{QUERIES[base]}`" if base in QUERIES else "list + count"
        print(f"| {q} ({shown}) | {cells} | {results[dbs[0]][q][2]} |")
    worst = {d: max(v[1] for k, v in results[d].items()) for d in dbs}
    print(f"\nworst p95 per store, ms: {worst}  (rows {args.rows:,})")


if __name__ == "__main__":
    main()
