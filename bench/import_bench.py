"""Import benchmark (run by hand, not in tests).

    .venv/bin/python bench/import_bench.py [--count 20000] [--batch 500] [--pg URL] [--skip-pg]

Generates `count` messages with bot.devtools.mailgen (same bytes for every run), then measures:
1. a bare `email.message_from_bytes(raw, policy=email.policy.default)` loop over the bytes;
2. the full import (parse + ingest + search index) on SQLite and on PostgreSQL, committing every
   `batch` messages, with the peak traced memory after a quarter of the messages (5k of 20k) and at the end
   (should be flat).
Target: full import >= half the bare parse rate.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bot.devtools.mailgen import MailGen
from bot.store import migrate
from bot.store.db import make_engine, make_session_factory, session_scope
from bot.store.ingest import ingest_message
from bot.store.models import Account, Provider


def bare(raws: list[bytes]) -> float:
    t = time.perf_counter()
    for raw in raws:
        email.message_from_bytes(raw, policy=email.policy.default)
    return len(raws) / (time.perf_counter() - t)


def full_import(url: str, raws: list[bytes], batch: int) -> dict[str, float]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        account = Account(provider=Provider.IMAP, email="team@ourshop.example", config={})
        s.add(account)
        s.flush()
        account_id = account.id
    checkpoint = max(batch, (len(raws) // 4) // batch * batch)  # 5k of 20k
    tracemalloc.start()
    peaks: dict[str, float] = {}
    t0 = last = time.perf_counter()
    for start in range(0, len(raws), batch):
        with session_scope(factory) as s:
            acc = s.get(Account, account_id)
            assert acc is not None
            for raw in raws[start : start + batch]:
                ingest_message(s, acc, raw)
        done = start + batch
        now = time.perf_counter()
        print(f"  {done:>6} messages, {batch / (now - last):7.0f} msg/s (this batch)", flush=True)
        last = now
        if done == checkpoint:
            peaks["peak_mb_quarter"] = tracemalloc.get_traced_memory()[1] / 1e6
    elapsed = time.perf_counter() - t0
    peaks["peak_mb_end"] = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    engine.dispose()
    return {"rate": len(raws) / elapsed, "seconds": elapsed, **peaks}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sqlite", default="/tmp/mailroom-import-bench.db")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    args = ap.parse_args()

    print(f"generating {args.count} messages (seed {args.seed})…", flush=True)
    raws = list(MailGen(args.seed).messages(args.count))
    mb = sum(map(len, raws)) / 1e6
    print(f"  {mb:.1f} MB, {mb * 1e6 / len(raws):.0f} bytes/message")
    rate = bare(raws)
    print(f"bare message_from_bytes(policy.default): {rate:,.0f} msg/s", flush=True)
    results = {}
    if not args.skip_sqlite:
        Path(args.sqlite).unlink(missing_ok=True)
        print("full import, SQLite:", flush=True)
        results["sqlite"] = full_import(f"sqlite:///{args.sqlite}", raws, args.batch)
    if not args.skip_pg:
        admin = make_engine(args.pg, isolation_level="AUTOCOMMIT", pool_size=1)
        name = f"mailroom_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            print("full import, PostgreSQL:", flush=True)
            results["postgres"] = full_import(
                args.pg.rsplit("/", 1)[0] + "/" + name, raws, args.batch
            )
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    print()
    quarter = max(args.batch, (args.count // 4) // args.batch * args.batch)
    print(f"| run | msg/s | vs bare | seconds | peak MB @{quarter} | peak MB @{args.count} |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| bare parse (policy.default) | {rate:,.0f} | 1.00 | | | |")
    for db, r in results.items():
        print(
            f"| full import, {db} | {r['rate']:,.0f} | {r['rate'] / rate:.2f} | {r['seconds']:.0f} "
            f"| {r.get('peak_mb_quarter', float('nan')):.1f} | {r['peak_mb_end']:.1f} |"
        )


if __name__ == "__main__":
    main()
