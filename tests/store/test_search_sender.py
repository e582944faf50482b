"""`from:address` with a common text: the sender's emails walked newest first with the text
checked on each (SQLite, a sender over FEW_ROWS), and the text as a row check past the
candidate fetch (PostgreSQL). Pages, order, per-conversation match counts and counts are
compared with answers computed in Python from the rows inserted, on both stores, with dates out
of id order, equal dates (the walk's keyset) and emails without a date."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from bot.store import search as search_mod
from bot.store.db import SessionFactory, session_scope
from bot.store.models import Conversation, Message
from bot.store.search import search
from tests.store.helpers import make_account

START = datetime(2024, 1, 1, tzinfo=UTC)
N = 900
SENDER = "ann@acme.example"


@dataclass
class Rows:
    accounts: list[int]
    data: list[dict[str, Any]]  # with "id" filled after the insert
    pg: bool


@pytest.fixture
def rows(session_factory: SessionFactory) -> Rows:
    rng = random.Random(11)
    with session_scope(session_factory) as s:
        pg = s.get_bind().dialect.name == "postgresql"
        a, b = make_account(s, "a@ours.example"), make_account(s, "b@ours.example")
        convs = []
        for k in range(N // 3):
            c = Conversation(account_id=(a.id if k % 3 else b.id), subject="x")
            s.add(c)
            convs.append(c)
        s.flush()
        data: list[dict[str, Any]] = []
        for i in range(N):
            conv = convs[rng.randrange(len(convs))]
            words = ["common"]
            if rng.random() < 0.4:
                words.append(f"alpha{rng.randrange(30)}")  # `alpha` as a prefix: 40 %
            if rng.random() < 0.5:
                words.append("beta")
            # Minutes shuffled and halved: dates out of id order, and pairs of equal dates.
            when = START + timedelta(minutes=rng.randrange(N // 2))
            data.append(
                {
                    "account_id": conv.account_id,
                    "conversation_id": conv.id,
                    "message_id": f"s{i}@x",
                    "subject": "hello",
                    "from_email": SENDER if i % 3 else f"other{i % 7}@acme.example",
                    "from_name": "Ann",
                    "body_text": " ".join(words),
                    "date": None if i % 97 == 5 else when,
                    "is_read": i % 4 == 0,
                    "deleted": i % 53 == 7,
                }
            )
        s.execute(insert(Message), data)
        search_mod.index_unindexed(s)
        ids = {m: i for m, i in s.execute(select(Message.message_id, Message.id))}
        for r in data:
            r["id"] = ids[r["message_id"]]
        return Rows([a.id, b.id], data, pg)


def _order(rows: Rows, chosen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`ORDER BY date DESC, id DESC` as each store sorts a NULL date: first on PostgreSQL,
    last on SQLite."""
    dated = sorted(
        (r for r in chosen if r["date"] is not None),
        key=lambda r: (r["date"], r["id"]),
        reverse=True,
    )
    undated = sorted((r for r in chosen if r["date"] is None), key=lambda r: r["id"], reverse=True)
    return undated + dated if rows.pg else dated + undated


CASES = [
    # query, which rows match (beyond not deleted and the visible accounts)
    (f"from:{SENDER} alpha", lambda r: r["from_email"] == SENDER and "alpha" in r["body_text"]),
    (f"from:{SENDER} common", lambda r: r["from_email"] == SENDER),
    (
        # The last word is the prefix (as you type); `-beta` a whole word.
        f"from:{SENDER} is:unread -beta alpha",
        lambda r: (
            r["from_email"] == SENDER
            and not r["is_read"]
            and "alpha" in r["body_text"]
            and "beta" not in r["body_text"]
        ),
    ),
    (f"from:{SENDER} zzz", lambda r: False),
]


@pytest.mark.parametrize(
    ("few_rows", "candidate_limit", "dense_share"),
    [(300, 2000, 2.0), (5, 20, 0.05), (5, 20, 2.0)],
)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_sender_with_common_text_pages_and_counts(
    session_factory: SessionFactory,
    rows: Rows,
    monkeypatch: pytest.MonkeyPatch,
    few_rows: int,
    candidate_limit: int,
    dense_share: float,
    case: int,
) -> None:
    """(300, 2000): every match known (the exact paths); (5, 20): the text is "common" and
    the sender has more than FEW_ROWS emails — the sender walk (SQLite) and, on PostgreSQL,
    past the candidate fetch: the text checked row by row without any candidate fetch when
    dense (share 0.05 of the newest emails), as `@@` after it when not (share 2.0: never)."""
    monkeypatch.setattr(search_mod, "FEW_ROWS", few_rows)
    monkeypatch.setattr(search_mod, "CANDIDATE_LIMIT", candidate_limit)
    monkeypatch.setattr(search_mod, "DENSE_SHARE", dense_share)
    query, keep = CASES[case]
    for visible in (rows.accounts, rows.accounts[1:]):
        chosen = [r for r in rows.data if r["account_id"] in visible and not r["deleted"]]
        want = _order(rows, [r for r in chosen if keep(r)])
        want_ids = [r["message_id"] for r in want]
        with session_scope(session_factory) as s:
            for offset, limit in ((0, 20), (20, 20), (0, 7), (len(want) - 3, 10)):
                offset = max(offset, 0)
                page = search(s, query, visible_account_ids=visible, limit=limit, offset=offset)
                assert [h.message_id for h in page.hits] == want_ids[offset : offset + limit]
                if page.capped:  # a true lower bound, at least one past the page
                    assert min(len(want), offset + limit + 1) <= page.total <= len(want)
                else:
                    assert page.total == len(want)
                # One per conversation, its newest matching email, with how many match.
                firsts: dict[int, str] = {}
                counts: dict[int, int] = {}
                for r in want:
                    firsts.setdefault(r["conversation_id"], r["message_id"])
                    counts[r["conversation_id"]] = counts.get(r["conversation_id"], 0) + 1
                g_off = min(offset, len(firsts))
                grouped = search(
                    s,
                    query,
                    visible_account_ids=visible,
                    limit=limit,
                    offset=g_off,
                    per_conversation=True,
                )
                want_g = list(firsts.items())[g_off : g_off + limit]
                assert [(h.conversation_id, h.message_id) for h in grouped.hits] == want_g
                assert [h.matches for h in grouped.hits] == [counts[c] for c, _m in want_g]
                if grouped.capped:
                    assert min(len(firsts), g_off + limit + 1) <= grouped.total <= len(firsts)
                else:
                    assert grouped.total == len(firsts)
