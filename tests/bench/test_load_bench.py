"""bench/load_bench.py stays runnable: its pure helpers on small data, and the two things it
reads from the app (the `mailroom accounts list` lines, the Reply modal) as the app makes them.
No timing here: the bench itself measures."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select

from bot.blocks import compose as cb
from bot.blocks.compose import ComposeForm, compose_view
from bot.crypto import generate_key
from bot.store.db import make_engine, make_session_factory, session_scope
from bot.store.models import Account
from bot.sync.status import record_success
from tests.slackfake.payloads import state_values

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_bench", ROOT / "bench" / "load_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_bench"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_signed_headers_pass_slacks_own_verifier(bench: ModuleType) -> None:
    body = "token=x&command=%2Finbox&text=list"
    headers = bench.signed_headers("s3cret", body)
    ts, sig = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    assert SignatureVerifier("s3cret").is_valid(body, ts, sig)
    assert not SignatureVerifier("other").is_valid(body, ts, sig)
    assert not SignatureVerifier("s3cret").is_valid(body + "&x=1", ts, sig)
    # A fixed timestamp signs reproducibly; an old one is refused as a replay.
    old = bench.signed_headers("s3cret", body, timestamp=1_000_000_000)
    assert old == bench.signed_headers("s3cret", body, timestamp=1_000_000_000)
    assert not SignatureVerifier("s3cret").is_valid(
        body, old["X-Slack-Request-Timestamp"], old["X-Slack-Signature"]
    )


def test_percentile_is_nearest_rank(bench: ModuleType) -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 … 1, unsorted on purpose
    assert [bench.percentile(values, q) for q in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert bench.percentile([7.0], 99) == 7.0
    assert bench.percentile([1.0, 2.0, 3.0], 0) == 1.0
    assert math.isnan(bench.percentile([], 50))
    # Of 300, p99 is the 297th: three slow requests stay above it, a fourth does not.
    slow3 = [0.01] * 297 + [5.0] * 3
    assert bench.percentile(slow3, 99) == 0.01
    assert bench.percentile([0.01] * 296 + [5.0] * 4, 99) == 5.0


def test_summarize_counts_failures_and_late_answers(bench: ModuleType) -> None:
    samples = [bench.Sample("home", float(i), 0.010 * (i + 1), 200) for i in range(10)]
    samples.append(bench.Sample("home", 10.0, 3.5, 200))  # answered, after Slack gave up
    samples.append(bench.Sample("list", 11.0, 0.02, 500))
    samples.append(bench.Sample("open", 12.0, 10.0, 0, "TimeoutError"))
    s = bench.summarize(samples)
    assert s["n"] == 13
    assert (s["failed"], s["over_limit"]) == (2, 2)
    assert s["max_ms"] == 10_000.0
    assert s["p50_ms"] == pytest.approx(60.0)
    assert s["errors"] == ["0 TimeoutError", "500"]
    assert not bench.meets_targets(s)
    assert bench.meets_targets(bench.summarize(samples[:10]))


def _cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_accounts_list_as_the_cli_prints_it(bench: ModuleType, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'mailroom.db'}"
    key = generate_key()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": db_url,
        "MAILROOM_SECRET_KEY": key,
        "MAILROOM_DATA_DIR": str(tmp_path),
        "PW": "pw",
    }
    for email in ("new@mailroom.test", "done@mailroom.test"):
        _cli(
            env,
            tmp_path,
            "accounts",
            "add-imap",
            f"--email={email}",
            "--imap-host=127.0.0.1",
            "--imap-security=plain",
            "--password-env=PW",
            "--channel=C1",
            "--skip-test",
        )
    engine = make_engine(db_url)
    with session_scope(make_session_factory(engine)) as s:
        acc = s.scalars(select(Account).where(Account.email == "done@mailroom.test")).one()
        record_success(s, acc)  # what the worker records after a first sync
    engine.dispose()
    listed = bench.parse_accounts_list(_cli(env, tmp_path, "accounts", "list"))
    assert listed["new@mailroom.test"]["synced"] is False
    assert listed["done@mailroom.test"]["synced"] is True
    assert listed["done@mailroom.test"]["status"] == "active"


def test_the_reply_modal_is_filled_as_a_person_would(bench: ModuleType) -> None:
    view = compose_view(
        ComposeForm(mode="reply", metadata={}, to="casey@client.test", subject="Re: Parcel")
    )
    values = bench.fill_compose(view)
    assert values[cb.TO_BLOCK] == {cb.VALUE: "casey@client.test"}
    assert values[cb.subject_block(0)] == {cb.VALUE: "Re: Parcel"}
    assert values[cb.body_block(0)] == {cb.VALUE: bench.REPLY_TEXT}
    assert values[cb.QUOTE_BLOCK] == {cb.VALUE: [cb.QUOTE_OPTION]}
    assert cb.CC_BLOCK not in values and cb.FILES_BLOCK not in values
    state_values(view, values)  # every value names an input of the view (LookupError if not)
