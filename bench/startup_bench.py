"""Start-up cost of the `mailroom` command (by hand): this checkout against another, interleaved.

    .venv/bin/python bench/startup_bench.py --before /tmp/before [--rounds 7]

`--before` is a checkout of the commit to compare with (`git archive <commit> | tar -x -C DIR`).
Each command runs as a new process, as a person runs it, timed from outside; one of each per
round, alternating trees, so a slow minute hurts both alike. Commands:

- `mailroom --help` and `mailroom sync --help`;
- `mailroom sync --once` on a migrated, empty SQLite store (no accounts: it answers "No IMAP
  accounts." and exits 1) — the imports and set-up every sync pays;
- `mailroom sync --once` of a one-message mailbox already synced (private Dovecot, nothing
  new): the above plus the IMAP login and one folder's check.

Reports the median wall time, peak RSS (GNU time) and how many modules the process imported
(from `-X importtime`, a separate untimed run). Children run with Python's bytecode cache as an
installed package has it (PYTHONDONTWRITEBYTECODE is dropped for them: without it every run
would compile the project's modules again, which no installed `mailroom` does).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def run(tree: Path, args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    full = dict(env, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "MAXRSS %M", sys.executable, "-m", "bot", *args],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall = time.perf_counter() - t0
    rss = next(
        (int(x.split()[1]) / 1024 for x in proc.stderr.splitlines() if x.startswith("MAXRSS")), 0.0
    )
    return {"wall": wall, "rss": rss, "rc": proc.returncode, "out": proc.stdout + proc.stderr}


def modules(tree: Path, args: list[str], env: dict[str, str], cwd: Path) -> int:
    full = dict(env, PYTHONPATH=str(tree))
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bot", *args],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return sum(1 for line in proc.stderr.splitlines() if line.startswith("import time:")) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="checkout to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    from tests.mailservers.dovecot import start_dovecot

    trees = {"after": HERE, "before": Path(args.before).resolve()}
    work = Path(tempfile.mkdtemp(prefix="mailroom-startup-"))
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base.update(MAILROOM_LOG_LEVEL="WARNING", HOME=str(work))
    say(f"work dir {work}; load {os.getloadavg()}")
    server = start_dovecot()
    try:
        user, password = server.new_user("startup")
        with server.admin(user) as imap:
            imap.append("INBOX", "()", None, b"From: a@x.test\r\nSubject: hi\r\n\r\nhello\r\n")
        envs: dict[str, dict[str, str]] = {}
        from bot.crypto import generate_key

        for name, tree in trees.items():
            for store in ("empty", "tiny"):
                env = dict(
                    base,
                    DATABASE_URL=f"sqlite:///{work}/{name}-{store}.db",
                    MAILROOM_SECRET_KEY=generate_key(),
                    MAILROOM_DATA_DIR=str(work),
                    STARTUP_PW=password,
                )
                run(tree, ["db", "upgrade"], env, work)
                if store == "tiny":
                    added = run(
                        tree,
                        [
                            "accounts",
                            "add-imap",
                            f"--email={user}@mailroom.test",
                            "--imap-host=127.0.0.1",
                            f"--imap-port={server.port}",
                            "--imap-security=plain",
                            "--smtp-port=1",
                            "--smtp-security=plain",
                            f"--username={user}",
                            "--password-env=STARTUP_PW",
                            "--no-auto-link",
                            "--skip-test",
                        ],
                        env,
                        work,
                    )
                    assert added["rc"] == 0, added["out"]
                    first = run(tree, ["sync", "--once"], env, work)  # the one message
                    assert first["rc"] == 0 and "1 new" in first["out"], first["out"]
                envs[f"{name}-{store}"] = env
        cases = {
            "`mailroom --help`": (["--help"], "empty", 0),
            "`mailroom sync --help`": (["sync", "--help"], "empty", 0),
            "`sync --once`, no accounts": (["sync", "--once"], "empty", 1),
            "`sync --once`, 1 account, nothing new": (["sync", "--once"], "tiny", 0),
        }
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for k in range(args.rounds):
            for label, (argv, store, rc) in cases.items():
                order = list(trees.items()) if k % 2 == 0 else list(trees.items())[::-1]
                for name, tree in order:
                    r = run(tree, argv, envs[f"{name}-{store}"], work)
                    assert r["rc"] == rc, (name, label, r["out"])
                    results.setdefault((label, name), []).append(r)
            say(f"round {k + 1} done")
        print(f"\nload at the end: {os.getloadavg()}; rounds: {args.rounds}")
        print(
            "| command | before: wall s | after: wall s | before: RSS MB | after: RSS MB "
            "| before: modules | after: modules |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label, (argv, store, _rc) in cases.items():
            cells = []
            for what in ("wall", "rss"):
                for name in ("before", "after"):
                    values = [r[what] for r in results[(label, name)]]
                    cells.append(
                        f"{statistics.median(values):.3f}"
                        if what == "wall"
                        else f"{max(values):.0f}"
                    )
            for name, tree in (("before", trees["before"]), ("after", trees["after"])):
                cells.append(str(modules(tree, argv, envs[f"{name}-{store}"], work)))
            print(f"| {label} | " + " | ".join(cells) + " |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
