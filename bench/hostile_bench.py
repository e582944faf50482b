"""Poison-email benchmark (run by hand, not in tests).

    .venv/bin/python bench/hostile_bench.py [--pg URL] [--skip-pg] [SHAPE ...]

Stores every shape of bot/devtools/hostile.py through the real ingest path (parse and encode
outside the transaction, then `ingest_batch`), each in a fresh child process, on a fresh SQLite
file and on a fresh PostgreSQL database, and prints per shape: raw size, CPU seconds to parse,
CPU and wall seconds to parse and store, the child's peak RSS, and what was kept. The summary
line gives the shapes tried, the maximum time per message and the maximum RSS. "Slack render" is the
parent and thread post built from the stored rows, as the outbox builds them.
Target (issue #15): each poison shape stored within 2 s of CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bot.devtools.hostile import SHAPES
from bot.store import migrate
from bot.store.db import make_engine

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _child(shape: str, url: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "bot.devtools.hostile", "store", shape, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {"shape": shape, "error": proc.stderr.strip().splitlines()[-1:]}
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _run(label: str, url: str, shapes: list[str]) -> list[dict[str, object]]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    rows = [_child(shape, url) for shape in shapes]
    print(f"\n## {label}\n")
    print(
        "| shape | raw MB | parse CPU s | store CPU s | wall s | Slack render CPU s "
        "| peak RSS MB | kept |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['shape']} | | | | | | | FAILED {r['error']} |")
            continue
        defects = r.get("defects") or []
        assert isinstance(defects, list)
        kept = "; ".join(str(d) for d in defects[:2])[:90] or "-"
        raw_mb = int(str(r["raw_bytes"])) / 1e6
        print(
            f"| {r['shape']} | {raw_mb:.1f} | {r['parse_cpu_s']} | {r['cpu_s']} | "
            f"{r['wall_s']} | {r['render_cpu_s']} | {r['maxrss_mb']} | {kept} |"
        )
    ok = [r for r in rows if "error" not in r]
    worst = max(ok, key=lambda r: float(str(r["cpu_s"])))
    print(
        f"\n{label}: {len(rows)} shapes tried, {len(rows) - len(ok)} failed; max CPU per message "
        f"{worst['cpu_s']} s ({worst['shape']}), max wall "
        f"{max(float(str(r['wall_s'])) for r in ok)} s, max peak RSS "
        f"{max(float(str(r['maxrss_mb'])) for r in ok)} MB, max Slack render CPU "
        f"{max(float(str(r['render_cpu_s'])) for r in ok)} s"
    )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default=PG_ADMIN)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("shapes", nargs="*")
    args = ap.parse_args()
    shapes = args.shapes or list(SHAPES)
    with tempfile.TemporaryDirectory() as tmp:
        _run("SQLite", f"sqlite:///{tmp}/hostile.db", shapes)
    if not args.skip_pg:
        admin = make_engine(args.pg, isolation_level="AUTOCOMMIT", pool_size=1)
        name = f"mailroom_hostile_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            _run("PostgreSQL", args.pg.rsplit("/", 1)[0] + "/" + name, shapes)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
