"""Start-up behaviour a new admin meets first: clear errors, encrypted secrets, config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from bot.crypto import Vault, generate_key, load_vault

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_without_tokens_names_what_is_missing_and_exits_2(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = _run(["serve"], env, tmp_path)
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN" in result.stderr
    assert "SLACK_APP_TOKEN" in result.stderr and "SLACK_SIGNING_SECRET" in result.stderr
    assert "manifest" in result.stderr


def test_serve_names_only_what_is_still_missing(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": "xoxb-1",
    }
    result = _run(["serve"], env, tmp_path)
    assert result.returncode == 2
    assert "- SLACK_BOT_TOKEN" not in result.stderr
    assert "SLACK_SIGNING_SECRET" in result.stderr


def test_help_lists_the_commands(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = _run(["--help"], env, tmp_path)
    assert result.returncode == 0
    for command in ("serve", "worker", "db", "secret-key"):
        assert command in result.stdout


def test_default_database_is_sqlite_in_the_data_folder() -> None:
    settings = load_settings({"MAILROOM_DATA_DIR": "/srv/mr"})
    assert settings.database_url == "sqlite:////srv/mr/mailroom.db"
    pg = load_settings({"DATABASE_URL": "postgres://u@h/db"})
    assert pg.database_url == "postgresql+psycopg://u@h/db"
    assert load_settings({"MAILROOM_ADMINS": "U1, U2,"}).admins == {"U1", "U2"}


def test_credentials_are_encrypted_and_the_key_is_generated_once(tmp_path: Path) -> None:
    settings = load_settings({"MAILROOM_DATA_DIR": str(tmp_path)})
    vault = load_vault(settings)
    token = vault.encrypt({"imap_password": "hunter2"})
    assert b"hunter2" not in token
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0  # readable by the owner only
    assert load_vault(settings).decrypt(token) == {"imap_password": "hunter2"}
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        Vault(generate_key()).decrypt(token)


def test_postgres_requires_an_explicit_key() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://u@h/db"})
    with pytest.raises(ConfigError, match="MAILROOM_SECRET_KEY is required"):
        load_vault(settings)


# Modules that cost most of a cold start; `mailroom --help` must load none of them.
HEAVY = ("sqlalchemy", "alembic", "slack_bolt", "slack_sdk", "bot.store.models", "bot.app")

_HELP_PROBE = """
import sys, time
t0 = time.perf_counter()
from bot.cli import cli
try:
    cli(["--help"], prog_name="mailroom")
except SystemExit:
    pass
took = time.perf_counter() - t0
print("HEAVY=" + ",".join(m for m in sys.argv[1:] if m in sys.modules))
print(f"TOOK={took:.3f}")
"""


def test_help_in_a_fresh_interpreter_loads_no_database_or_slack_code(tmp_path: Path) -> None:
    """`mailroom --help` (and every group's help) is answered from click alone: the commands
    import SQLAlchemy, Alembic and Bolt when they run. Timed too, for the record; the time is
    reported, not asserted (machines here are noisy; the import check is what can't flake)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _HELP_PROBE, *HEAVY],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: mailroom" in result.stdout and "serve" in result.stdout
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert lines["HEAVY"] == "", f"--help loaded {lines['HEAVY']} (took {lines['TOOK']} s)"
    print(f"mailroom --help in a fresh interpreter: {lines['TOOK']} s")


_HEAP_PROBE = """
import sys
from bot.cli.common import bound_heap
bounded = bound_heap() if sys.argv[1] == "bound" else False
def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) // 1024
big = b"x" * (16 << 20)  # one big block freed: glibc would now carve blocks up to 16 MiB
del big                  # from the heap
base = rss_mb()
held = [b"x" * 150_000 for _ in range(150)]  # 22 MB of messages with attachments
peak = rss_mb()
del held
print(f"BOUNDED={bounded} HELD={peak - base} KEPT={rss_mb() - base}")
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_bound_heap_gives_freed_messages_back_to_the_system(tmp_path: Path) -> None:
    """`sync --once` calls bound_heap(): after a batch of big messages is freed, the process
    is back where it was (issue 19: peak RSS flat in mailbox size). Without it, glibc keeps
    them, which is what the first run shows (so the probe can tell the two apart)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}

    def probe(mode: str) -> dict[str, str]:
        result = subprocess.run(
            [sys.executable, "-c", _HEAP_PROBE, mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return dict(kv.split("=") for kv in result.stdout.split())

    bounded = probe("bound")
    if bounded["BOUNDED"] != "True":
        pytest.skip("not glibc: bound_heap() has nothing to set")
    plain = probe("plain")
    assert int(plain["HELD"]) >= 20 and int(bounded["HELD"]) >= 20  # the messages were there
    assert int(plain["KEPT"]) >= 15  # glibc's default keeps them
    assert int(bounded["KEPT"]) <= 3  # bounded: returned
