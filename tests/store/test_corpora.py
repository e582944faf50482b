"""Public corpora through ingest_message: never raises, and the stored conversations are the
partition the pure threader (bot/mail/thread.py) computes, with the thread counts that the
corpora's THREADS.md lists (notmuch exactly; fedora differs from Mailman by the one subject
case THREADS.md documents)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.cli.mail_import import iter_source
from bot.mail.parse import parse_message
from bot.mail.thread import ThreadInput, thread
from bot.mail.types import ParsedMessage
from bot.store.db import SessionFactory, session_scope
from bot.store.ingest import ingest_message
from bot.store.models import Message
from tests.store.helpers import make_account

CORPORA = Path(__file__).resolve().parents[3] / "shared" / "corpora"
if not CORPORA.is_dir():
    CORPORA = Path("/work/shared/corpora")
pytestmark = pytest.mark.skipif(
    not (CORPORA / "notmuch").is_dir(), reason=f"email corpora not present at {CORPORA}"
)


def _expected_threads(md: Path, section: str | None) -> int:
    text = md.read_text()
    if section:
        text = text.split(f"# `{section}/`")[1].split("\n# ")[0]
    return len(re.findall(r"^## [TF]\d+", text, re.M))


def _pure_partition(raws: list[bytes], subject_fallback: bool) -> list[list[str]]:
    parsed: dict[str, ParsedMessage] = {}
    for raw in raws:
        p = parse_message(raw)
        parsed.setdefault(p.message_id, p)  # first copy of a Message-ID wins, as in ingest
    inputs = [ThreadInput.of(p, k, k) for k, p in parsed.items()]
    return sorted(sorted(t.keys) for t in thread(inputs, subject_fallback=subject_fallback))


def _ingest_all(factory: SessionFactory, name: str, raws: list[bytes]) -> list[list[str]]:
    with session_scope(factory) as s:
        account = make_account(s, f"{name}@corpora.example")
        for raw in raws:
            ingest_message(s, account, raw)
        rows = s.execute(
            select(Message.message_id, Message.conversation_id).where(
                Message.account_id == account.id
            )
        ).all()
    groups: dict[int, list[str]] = {}
    for mid, cid in rows:
        groups.setdefault(cid, []).append(mid)
    return sorted(sorted(g) for g in groups.values())


@pytest.mark.parametrize("folder", ["default", "threading", "broken", "duplicate", "lkml"])
def test_notmuch_corpus(session_factory: SessionFactory, folder: str) -> None:
    raws = [item.raw for item in iter_source(CORPORA / "notmuch" / folder) if item.raw]
    ours = _ingest_all(session_factory, folder, raws)
    assert len(ours) == _expected_threads(CORPORA / "notmuch" / "THREADS.md", folder)
    assert ours == _pure_partition(raws, subject_fallback=False)


def test_fedora_mbox(session_factory: SessionFactory, tmp_path: Path) -> None:
    base = CORPORA / "fedora-devel-2010-01"
    if not base.is_dir():
        pytest.skip(f"fedora corpus not present at {base}")
    mbox = tmp_path / "fedora.mbox"
    mbox.write_bytes(gzip.decompress((base / "2010-January.txt.gz").read_bytes()))
    raws = [item.raw for item in iter_source(mbox) if item.raw]
    assert len(raws) == 292
    ours = _ingest_all(session_factory, "fedora", raws)
    assert ours == _pure_partition(raws, subject_fallback=True)
    # Mailman shows 60 threads; headers alone give 62 and subject fallback joins one pair.
    assert len(ours) == _expected_threads(base / "THREADS.md", None) + 1
    assert len(_pure_partition(raws, subject_fallback=False)) == len(ours) + 1
