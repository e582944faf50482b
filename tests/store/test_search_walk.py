"""Search past the candidate fetch: the newest-first date walk, its scan cap and the
PostgreSQL weight pre-filter, on rows whose ids run out of date order (as after a history
import). Expected answers are computed in Python from the rows inserted, not hard-coded."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from bot.search.query import Term, parse_query, term_words, tsquery_text
from bot.store import search as search_mod
from bot.store.db import SessionFactory, session_scope
from bot.store.models import Conversation, Message
from bot.store.search import CANDIDATE_LIMIT, COUNT_CAP, search
from tests.store.helpers import make_account

N = CANDIDATE_LIMIT + 400  # every row says "common": more than the candidate fetch
START = datetime(2024, 1, 1, tzinfo=UTC)
Row = dict[str, Any]


@dataclass
class Rows:
    a: int
    b: int
    data: list[Row]


def _body(i: int) -> str:
    # "alpha beta" as a phrase in every third row, the words apart (not a phrase) in others.
    words = ["common"]
    if i % 3 == 0:
        words += ["alpha", "beta"]
    elif i % 3 == 1:
        words += ["beta", "x", "alpha"]
    return " ".join(words)


@pytest.fixture
def rows(session_factory: SessionFactory) -> Rows:
    """N rows over two accounts; the dates are a shuffle of the ids, so id order says nothing
    about date order. Returns what the tests need to compute expected answers."""
    rng = random.Random(5)
    minutes = list(range(N))
    rng.shuffle(minutes)
    with session_scope(session_factory) as s:
        a, b = make_account(s, "a@ours.example"), make_account(s, "b@ours.example")
        conv = {}
        for account in (a, b):
            c = Conversation(account_id=account.id, subject="x")
            s.add(c)
            s.flush()
            conv[account.id] = c.id
        data: list[Row] = []
        for i in range(N):
            acc = a.id if i % 4 else b.id  # a quarter of the rows are b's
            data.append(
                {
                    "account_id": acc,
                    "conversation_id": conv[acc],
                    "message_id": f"r{i}@x",
                    # "topic" in a few subjects, and in every body: only the subject counts
                    # for subject:topic.
                    "subject": "topic" if i % 97 == 0 else f"note {i}",
                    "body_text": _body(i) + " topic",
                    "date": START + timedelta(minutes=minutes[i]),
                    "is_read": i % 5 == 0,
                }
            )
        s.execute(insert(Message), data)
        search_mod.index_unindexed(s)  # ingest indexes what it inserts; a bulk load must ask
        return Rows(a.id, b.id, data)


def _expected(rows: Rows, keep: Callable[[Row], bool], accounts: list[int]) -> list[str]:
    chosen = [r for r in rows.data if r["account_id"] in accounts and keep(r)]
    chosen.sort(key=lambda r: r["date"], reverse=True)
    return [r["message_id"] for r in chosen]


def _ids(page: search_mod.SearchPage) -> list[str]:
    return [h.message_id for h in page.hits]


def test_walk_is_newest_first_with_ids_out_of_date_order(
    session_factory: SessionFactory, rows: Rows
) -> None:
    both = [rows.a, rows.b]
    with session_scope(session_factory) as s:
        want = _expected(rows, lambda r: True, both)
        page = search(s, "common", visible_account_ids=both, limit=30)
        assert _ids(page) == want[:30]
        assert page.capped and page.total == COUNT_CAP and not page.partial
        assert page.total_label == "1,000+"
        deep = search(s, "common", visible_account_ids=both, limit=5, offset=1500)
        assert _ids(deep) == want[1500:1505]
        # Only the visible account's rows, still newest first.
        only_b = search(s, "common", visible_account_ids=[rows.b], limit=25)
        assert _ids(only_b) == _expected(rows, lambda r: True, [rows.b])[:25]


@pytest.mark.parametrize(
    ("candidate_limit", "dense_share"), [(CANDIDATE_LIMIT, 2.0), (50, 2.0), (50, 0.05)]
)
def test_walk_checks_phrases_and_filters_exactly(
    session_factory: SessionFactory,
    rows: Rows,
    monkeypatch: pytest.MonkeyPatch,
    candidate_limit: int,
    dense_share: float,
) -> None:
    """Both paths: all candidates known (default), and the date walk (a small fetch limit);
    PostgreSQL's dense texts (0.05) skip the candidate fetch and are checked row by row."""
    monkeypatch.setattr(search_mod, "CANDIDATE_LIMIT", candidate_limit)
    monkeypatch.setattr(search_mod, "DENSE_SHARE", dense_share)
    both = [rows.a, rows.b]
    with session_scope(session_factory) as s:
        phrase = search(s, '"alpha beta"', visible_account_ids=both, limit=40)
        want = _expected(rows, lambda r: "alpha beta" in r["body_text"], both)
        assert _ids(phrase) == want[:40]
        assert phrase.total == min(len(want), COUNT_CAP)
        words = search(s, "common beta alpha", visible_account_ids=both, limit=40)
        assert _ids(words) == _expected(rows, lambda r: "alpha" in r["body_text"], both)[:40]
        unread = search(s, "is:unread common -beta", visible_account_ids=both, limit=40)
        want_unread = _expected(
            rows,
            lambda r: not r["is_read"] and "beta" not in r["body_text"],
            both,
        )
        assert _ids(unread) == want_unread[:40]
        assert unread.total == min(len(want_unread), COUNT_CAP)


@pytest.mark.parametrize("few_rows", [0, 1000])
def test_selective_filter_over_a_common_text(
    session_factory: SessionFactory, rows: Rows, monkeypatch: pytest.MonkeyPatch, few_rows: int
) -> None:
    """SQLite checks the text row by row when the filters leave at most FEW_ROWS rows (1000:
    the 480 read rows), else streams the matches (0): the same answer either way."""
    monkeypatch.setattr(search_mod, "FEW_ROWS", few_rows)
    both = [rows.a, rows.b]
    with session_scope(session_factory) as s:
        page = search(s, "is:read common", visible_account_ids=both, limit=15, offset=5)
        want = _expected(rows, lambda r: r["is_read"], both)
        assert _ids(page) == want[5:20] and page.total == len(want) and not page.capped


def test_subject_term_common_in_bodies(session_factory: SessionFactory, rows: Rows) -> None:
    """`topic` is in every body but few subjects: PostgreSQL pre-filters on the GIN without
    the subject weight and must still return only subject matches."""
    both = [rows.a, rows.b]
    with session_scope(session_factory) as s:
        page = search(s, "subject:topic", visible_account_ids=both, limit=50)
        want = _expected(rows, lambda r: r["subject"] == "topic", both)
        assert _ids(page) == want[:50] and page.total == len(want) and not page.capped
        # Negated: every body has "topic", only the subject counts.
        rest = search(s, "common -subject:topic", visible_account_ids=both, limit=30)
        assert _ids(rest) == _expected(rows, lambda r: r["subject"] != "topic", both)[:30]
        # A subject phrase: the words in order, in the subject.
        none = search(s, 'subject:"topic note"', visible_account_ids=both)
        assert none.hits == [] and none.total == 0


def test_scan_cap_stops_the_stream_and_says_more_may_exist(
    session_factory: SessionFactory, rows: Rows, monkeypatch: pytest.MonkeyPatch, engine: Engine
) -> None:
    """SQLite reads text matches by rowid up to SCAN_CAP; past it the page is still the
    newest (rows newer than the page's last are checked one by one) but the count is only a
    lower bound, labelled "N+"."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no scan cap: one planned query, counted up to COUNT_CAP")
    monkeypatch.setattr(search_mod, "CANDIDATE_LIMIT", 50)
    monkeypatch.setattr(search_mod, "SCAN_CAP", 300)
    both = [rows.a, rows.b]
    with session_scope(session_factory) as s:
        page = search(s, '"alpha beta"', visible_account_ids=both, limit=10)
        want = _expected(rows, lambda r: "alpha beta" in r["body_text"], both)
        assert _ids(page) == want[:10]
        assert page.partial and page.capped and 300 <= page.total < len(want)
        assert page.total_label == f"{page.total}+"


def test_loose_tsquery_drops_weights_and_negated_subjects() -> None:
    q = parse_query("subject:deal invoice -spam -subject:old")
    assert tsquery_text(q) == "('deal':A) & ('invoice') & !('spam') & !('old':A)"
    assert tsquery_text(q, weights=False) == "('deal') & ('invoice') & !('spam')"
    assert term_words(Term("re: foo-bar_baz 42")) == ["re", "foo", "bar", "baz", "42"]


def test_subject_only_query_with_negated_words(session_factory: SessionFactory, rows: Rows) -> None:
    """Only subject: terms: PostgreSQL finds them by the subject index alone and checks the
    negated free words on those rows; a negated word must still exclude body matches."""
    both = [rows.a, rows.b]
    with session_scope(session_factory) as s:
        page = search(s, "subject:topic -alpha", visible_account_ids=both, limit=50)
        want = _expected(
            rows, lambda r: r["subject"] == "topic" and "alpha" not in r["body_text"], both
        )
        assert want and _ids(page) == want[:50] and page.total == len(want)
        grouped = search(s, "subject:topic -alpha", visible_account_ids=both, per_conversation=True)
        assert grouped.hits and grouped.hits[0].message_id == want[0]
        # One conversation per account in the fixture: its matches are its account's rows.
        first = next(r for r in rows.data if r["message_id"] == want[0])
        same = [
            m
            for m in want
            if m in {r["message_id"] for r in rows.data if r["account_id"] == first["account_id"]}
        ]
        assert grouped.hits[0].matches == len(same) and len(grouped.hits) == 2


@pytest.mark.parametrize("prefix", ["comm", "co"])
def test_long_prefix_past_the_candidate_fetch(
    session_factory: SessionFactory, rows: Rows, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    """A prefix longer than FTS5's prefix indexes ("comm") is checked on a range of ids in
    one pass on SQLite, a short one ("co") by seeks: the same newest page and match counts."""
    monkeypatch.setattr(search_mod, "CANDIDATE_LIMIT", 50)
    both = [rows.a, rows.b]
    with session_scope(session_factory) as s:
        page = search(s, f"alpha {prefix}", visible_account_ids=both, limit=30)
        want = _expected(rows, lambda r: "alpha" in r["body_text"], both)
        assert _ids(page) == want[:30]
        grouped = search(s, f"alpha {prefix}", visible_account_ids=[rows.b], per_conversation=True)
        only_b = _expected(rows, lambda r: "alpha" in r["body_text"], [rows.b])
        assert [h.message_id for h in grouped.hits] == only_b[:1]
        assert grouped.hits[0].matches == len(only_b)


@pytest.mark.parametrize("candidate_limit", [CANDIDATE_LIMIT, 5])
def test_subject_only_past_the_candidate_fetch_counts_the_visible_accounts(
    session_factory: SessionFactory,
    rows: Rows,
    monkeypatch: pytest.MonkeyPatch,
    candidate_limit: int,
) -> None:
    """`subject:` alone past the candidate fetch (5): the page and the capped count hold only
    the visible accounts' rows (PostgreSQL counts with the accounts written as a filter)."""
    monkeypatch.setattr(search_mod, "CANDIDATE_LIMIT", candidate_limit)
    monkeypatch.setattr(search_mod, "COUNT_CAP", 8)
    with session_scope(session_factory) as s:
        for visible in ([rows.a, rows.b], [rows.b], [rows.a]):
            want = _expected(rows, lambda r: r["subject"] == "topic", visible)
            assert len(want) > 1
            page = search(s, "subject:topic", visible_account_ids=visible, limit=3)
            assert _ids(page) == want[:3]
            assert (page.total, page.capped) == (min(len(want), 8), len(want) > 8)
