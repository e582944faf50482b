"""Every poison email is parsed and stored through the real ingest path, on SQLite and on
PostgreSQL, and its Slack parent and thread post are built, in a child process with an address-space and a CPU-time limit: a shape that went
quadratic again, or held hundreds of MB, kills the child and fails its test. Nothing here
measures time (bench/hostile_bench.py reports the figures); the limits bound it by construction.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from bot.devtools.hostile import SHAPES
from bot.mail.parse import HEADER_ONLY_DEFECT, MAX_ADDRESSES, MAX_ATTACHMENTS
from bot.store.db import make_session_factory, session_scope
from bot.store.models import Message
from bot.store.rows import MAX_STORED_REFS

pytestmark = pytest.mark.hostile

ROOT = Path(__file__).resolve().parents[2]
# Generous: the child imports SQLAlchemy and a driver, builds the shape (up to ~6 MB), parses
# and stores it. A quadratic step or a copy per part would need far more.
ADDRESS_SPACE = 768 * 1024 * 1024
CPU_SECONDS = 60


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def store_in_child(shape: str, url: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bot.devtools.hostile", "store", shape, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        preexec_fn=_limits,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"{shape}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# What each shape must leave behind, beyond "stored, from its sender, within the limits".
HEADER_ONLY = {"deep_mime", "deep_mime_unclosed", "nested_rfc822_2000"}
EXPECT: dict[str, dict[str, Any]] = {
    "references_2mb": {"max_refs": MAX_STORED_REFS, "defect": "References: longer than"},
    "references_one_line_2mb": {"max_refs": MAX_STORED_REFS, "defect": "References: "},
    "in_reply_to_many": {"max_refs": MAX_STORED_REFS, "defect": "In-Reply-To: "},
    "references_control_chars": {"refs": 2},
    "to_quote_then_commas": {"defect": "To: longer than"},
    "to_quoted_names_20k": {"to_count": MAX_ADDRESSES, "defect": "To: longer than"},
    "cc_comments_2mb": {"defect": "Cc: longer than"},
    "subject_encoded_words": {"defect": "Subject: longer than"},
    "subject_huge_plain": {"defect": "Subject: longer than", "subject_len": 16_000},
    "attachments_2000": {"attachments": MAX_ATTACHMENTS, "defect": "attachments: more than"},
    "parts_50k": {"defect": "MIME: more than 1,000 parts"},
    "filename_encoded_words": {"attachments": 1, "defect": "filename: longer than"},
    "bad_charset_8bit_label": {"body": "body text", "defect": "part 0: unknown charset"},
    "bad_charset_unknown": {"defect": "part 0: unknown charset"},
    "html_empty_text": {"body": ""},
    "html_nested_links_2mb": {"body": "t (https://e.example/)"},
    "blank_lines_body": {"body": "the text"},
    "quoted_history_flood": {"body": "top"},
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_poison_email_is_stored_within_bounds(shape: str, db_url: str, engine: Engine) -> None:
    got = store_in_child(shape, db_url)
    want = EXPECT.get(shape, {})
    assert got["render_chars"] > 0  # the Slack parent and thread post were built from it
    with session_scope(make_session_factory(engine)) as s:
        m = s.scalar(select(Message).where(Message.message_id == got["message_id"]))
        assert m is not None, "not stored"
        defects = list(m.parse_defects or [])
        if shape != "no_header_end":
            assert m.from_email == "mallory@evil.example"
        assert "\x00" not in (m.subject or "") + (m.body_text or "") + (m.from_name or "")
        if shape in HEADER_ONLY:
            assert defects[0] == HEADER_ONLY_DEFECT
            assert m.subject == "poison" and m.body_text == ""
        else:
            assert HEADER_ONLY_DEFECT not in defects, defects
        assert not any(d.startswith("parser failure") for d in defects), defects
        if "defect" in want:
            assert any(d.startswith(want["defect"]) for d in defects), defects
        if "body" in want:
            assert (m.body_text or "").strip().startswith(want["body"])
    if "max_refs" in want:
        assert 0 < got["refs"] <= want["max_refs"]
    for key in ("refs", "to_count", "attachments", "subject_len"):
        if key in want:
            assert got[key] == want[key], (key, got)
