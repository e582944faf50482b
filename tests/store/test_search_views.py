"""Search with the triage views (is:mine, is:unassigned, is:waiting, is:snoozed,
is:unanswered), alone and with text, per email and per conversation, on SQLite and
PostgreSQL: every path (a small view read from the conversation side, a large one walked
newest first, text past the candidate fetch) gives exactly the rows, order, counts and
per-conversation match counts computed here in Python from the rows inserted."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from bot.store import search as search_mod
from bot.store.conversations import count_conversations, list_conversations
from bot.store.db import SessionFactory, session_scope
from bot.store.models import Conversation, Message
from bot.store.search import search
from tests.store.helpers import make_account

START = datetime(2024, 1, 1, tzinfo=UTC)
ME = "U1"
VIEWS = ("mine", "unassigned", "waiting", "snoozed", "unanswered")
Row = dict[str, Any]


@dataclass
class World:
    a: int
    b: int
    convs: dict[int, Row]  # id -> triage columns and account
    msgs: list[Row]  # with "id" and "conversation_id"


def in_view(c: Row, view: str) -> bool:
    """The views' meaning, written out (bot/store/triage.py view_conditions)."""
    not_done = not c["archived"] and c["status"] != "done"
    awake = c["snoozed_until"] is None
    if view == "mine":
        return c["assignee"] == ME and not_done and awake
    if view == "unassigned":
        return c["assignee"] is None and not_done and awake
    if view == "waiting":
        return c["status"] == "waiting" and not c["archived"] and awake
    if view == "snoozed":
        return c["snoozed_until"] is not None and not_done
    return c["waiting_since"] is not None and not_done and awake


@pytest.fixture
def world(session_factory: SessionFactory) -> World:
    """240 conversations of 1 to 5 emails over two accounts, random triage state; email dates
    are a shuffle (id order says nothing of date order); some emails deleted; "common" in
    every body, "zeta" in about a third."""
    rng = random.Random(11)
    with session_scope(session_factory) as s:
        a, b = make_account(s, "a@ours.example"), make_account(s, "b@ours.example")
        convs: dict[int, Row] = {}
        sizes = [rng.randint(1, 5) for _ in range(240)]
        minutes = list(range(sum(sizes)))
        rng.shuffle(minutes)
        msgs: list[Row] = []
        k = 0
        for n, size in enumerate(sizes):
            status = rng.choice(["open", "open", "waiting", "done"])
            row = {
                "account_id": a.id if n % 5 else b.id,
                "subject": f"case {n}",
                "assignee": rng.choice([None, None, ME, "U2"]),
                "status": status,
                # Archived and done together, and a few archived with another status.
                "archived": status == "done" or rng.random() < 0.05,
                "waiting_since": START if status == "open" and rng.random() < 0.7 else None,
                "snoozed_until": START + timedelta(days=400) if rng.random() < 0.15 else None,
            }
            cid = s.scalars(insert(Conversation).returning(Conversation.id), [row]).one()
            convs[cid] = row
            batch = []
            for _ in range(size):
                batch.append(
                    {
                        "account_id": row["account_id"],
                        "conversation_id": cid,
                        "message_id": f"m{k}@x",
                        "subject": f"case {n}",
                        "body_text": "common" + (" zeta" if k % 3 == 0 else ""),
                        "date": START + timedelta(minutes=minutes[k]),
                        "deleted": k % 17 == 0,
                    }
                )
                k += 1
            ids = s.scalars(insert(Message).returning(Message.id), batch).all()
            for m, i in zip(batch, ids, strict=True):
                msgs.append({**m, "id": i})
        search_mod.index_unindexed(s)
        return World(a.id, b.id, convs, msgs)


def _matching(world: World, keep: Callable[[Row], bool], accounts: list[int]) -> list[Row]:
    rows = [m for m in world.msgs if m["account_id"] in accounts and not m["deleted"] and keep(m)]
    rows.sort(key=lambda m: (m["date"], m["id"]), reverse=True)
    return rows


def _check_per_email(page: search_mod.SearchPage, want: list[Row], limit: int) -> None:
    assert [h.message_id for h in page.hits] == [m["message_id"] for m in want[:limit]]
    cap = search_mod.COUNT_CAP
    assert (page.total, page.capped) == (min(len(want), cap), len(want) > cap)


def _check_grouped(page: search_mod.SearchPage, want: list[Row], limit: int) -> None:
    order: list[int] = []
    counts: dict[int, int] = {}
    for m in want:  # newest first: a conversation's first email is its newest match
        if m["conversation_id"] not in counts:
            order.append(m["conversation_id"])
        counts[m["conversation_id"]] = counts.get(m["conversation_id"], 0) + 1
    newest = {c: next(m for m in want if m["conversation_id"] == c) for c in order[:limit]}
    assert [h.conversation_id for h in page.hits] == order[:limit]
    assert [h.message_id for h in page.hits] == [newest[c]["message_id"] for c in order[:limit]]
    assert [h.matches for h in page.hits] == [counts[c] for c in order[:limit]]
    if page.capped:  # a lower bound: at least one past the page when there are more
        assert min(len(order), limit + 1) <= page.total <= len(order)
    else:
        assert page.total == len(order)


# count_cap 1000: every view here has fewer emails, so it is read from the conversation
# side; 15: more than that, so the newest-first walk pages it and the count is capped.
@pytest.mark.parametrize("count_cap", [1000, 15])
@pytest.mark.parametrize("view", VIEWS)
def test_a_view_alone_per_email_and_per_conversation(
    session_factory: SessionFactory,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    view: str,
    count_cap: int,
) -> None:
    monkeypatch.setattr(search_mod, "COUNT_CAP", count_cap)
    both = [world.a, world.b]
    with session_scope(session_factory) as s:
        for accounts in (both, [world.a]):
            want = _matching(
                world, lambda m: in_view(world.convs[m["conversation_id"]], view), accounts
            )
            assert want, view  # the world has emails in every view
            page = search(s, f"is:{view}", visible_account_ids=accounts, user_id=ME, limit=12)
            _check_per_email(page, want, 12)
            deeper = search(
                s, f"is:{view}", visible_account_ids=accounts, user_id=ME, limit=7, offset=5
            )
            assert [h.message_id for h in deeper.hits] == [m["message_id"] for m in want[5:12]]
            grouped = search(
                s,
                f"is:{view}",
                visible_account_ids=accounts,
                user_id=ME,
                limit=9,
                per_conversation=True,
            )
            _check_grouped(grouped, want, 9)


@pytest.mark.parametrize(
    ("candidate_limit", "few_rows", "view_walk"),
    [(2000, 300, 1000), (10, 300, 1000), (10, 0, 1000), (10, 0, 0)],
)
@pytest.mark.parametrize("view", ["unanswered", "mine", "snoozed"])
def test_a_view_with_text(
    session_factory: SessionFactory,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    view: str,
    candidate_limit: int,
    few_rows: int,
    view_walk: int,
) -> None:
    """Text and a view: every match known (candidates), past the candidate fetch with the
    rows checked one by one (SQLite, few rows in the view) or the matches streamed;
    PostgreSQL past the candidate fetch with the view listed (a small view) or checked on
    each row of the date walk (view_walk 0: every view is "big")."""
    monkeypatch.setattr(search_mod, "CANDIDATE_LIMIT", candidate_limit)
    monkeypatch.setattr(search_mod, "FEW_ROWS", few_rows)
    monkeypatch.setattr(search_mod, "VIEW_WALK", view_walk)
    both = [world.a, world.b]
    with session_scope(session_factory) as s:
        for text in ("common", "zeta"):

            def keep(m: Row, text: str = text) -> bool:
                return text in m["body_text"] and in_view(world.convs[m["conversation_id"]], view)

            want = _matching(world, keep, both)
            q = f"is:{view} {text}"
            page = search(s, q, visible_account_ids=both, user_id=ME, limit=10)
            assert [h.message_id for h in page.hits] == [m["message_id"] for m in want[:10]]
            assert page.total == min(len(want), search_mod.COUNT_CAP) or page.partial
            grouped = search(
                s, q, visible_account_ids=both, user_id=ME, limit=8, per_conversation=True
            )
            _check_grouped(grouped, want, 8)


def test_negated_and_combined_views(session_factory: SessionFactory, world: World) -> None:
    both = [world.a, world.b]
    with session_scope(session_factory) as s:
        want = _matching(
            world,
            lambda m: (
                in_view(world.convs[m["conversation_id"]], "unassigned")
                and not in_view(world.convs[m["conversation_id"]], "unanswered")
            ),
            both,
        )
        page = search(s, "is:unassigned -is:unanswered", visible_account_ids=both, user_id=ME)
        _check_per_email(page, want, 20)
        both_views = _matching(
            world,
            lambda m: (
                in_view(world.convs[m["conversation_id"]], "mine")
                and in_view(world.convs[m["conversation_id"]], "unanswered")
            ),
            both,
        )
        page = search(s, "is:mine is:unanswered", visible_account_ids=both, user_id=ME)
        _check_per_email(page, both_views, 20)
        # Without a person, is:mine matches nothing.
        assert search(s, "is:mine", visible_account_ids=both).hits == []


@pytest.mark.parametrize("view", VIEWS)
def test_lists_and_counts_of_each_view(
    session_factory: SessionFactory, world: World, view: str
) -> None:
    """The lists read the views' partial index: the same conversations, newest activity
    first, and the exact count."""
    with session_scope(session_factory) as s:
        # Ingest keeps last_message_at; the bulk load above did not: set it like ingest.
        for cid in world.convs:
            dates = [m["date"] for m in world.msgs if m["conversation_id"] == cid]
            s.get_one(Conversation, cid).last_message_at = max(dates)
        s.flush()
        want = sorted(
            (
                c
                for c, row in world.convs.items()
                if in_view(row, view) and row["account_id"] == world.a
            ),
            key=lambda c: (max(m["date"] for m in world.msgs if m["conversation_id"] == c), c),
            reverse=True,
        )
        got = list_conversations(s, filter=view, account_ids=[world.a], user_id=ME, limit=500)
        assert [c.id for c in got] == want
        assert count_conversations(s, filter=view, account_ids=[world.a], user_id=ME) == len(want)
