"""Search as you type (issue 19): the last word is a prefix; results one per conversation.

Both stores (FTS5 with its prefix index, PostgreSQL `:*` tsquery), on the selective path
(every match known) and on the walk a common text takes (CANDIDATE_LIMIT lowered so three
emails are "common")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

import bot.store.search as store_search
from bot.search.query import fts5_match, parse_query, tsquery_text
from bot.store.db import SessionFactory, session_scope
from bot.store.ingest import ingest_message
from bot.store.models import Conversation
from bot.store.search import search
from tests.store.helpers import make_account, raw_mail


@pytest.fixture
def mail(session_factory: SessionFactory) -> dict[str, int]:
    """A thread of three emails that all say "invoice", one lone invoice email, and one
    about something else; in two accounts."""
    with session_scope(session_factory) as s:
        a = make_account(s, "sales@ours.example")
        b = make_account(s, "support@ours.example")
        thread = [
            ("t1@x", None, "Invoice 42", "Please find the invoice attached", 1),
            ("t2@x", "t1@x", "Re: Invoice 42", "Which invoice? The invoices are many", 2),
            ("t3@x", "t2@x", "Re: Invoice 42", "The invoice for March, paid", 3),
            ("t4@x", "t3@x", "All settled", "Thanks", 4),
        ]
        for mid, irt, subject, body, day in thread:
            ingest_message(
                s,
                a,
                raw_mail(
                    mid,
                    subject,
                    irt=irt,
                    refs=[irt] if irt else [],
                    date=f"Mon, 0{day} Jan 2024 10:00:00 +0000",
                    body=body,
                ),
            )
        ingest_message(
            s,
            b,
            raw_mail(
                "lone@x",
                "Printer",
                sender="Carl <carl@example.org>",
                date="Mon, 08 Jan 2024 10:00:00 +0000",
                body="invoicing software offer",
            ),
        )
        ingest_message(
            s,
            b,
            raw_mail(
                "other@x",
                "Lunch",
                date="Mon, 09 Jan 2024 10:00:00 +0000",
                body="pizza on friday",
            ),
        )
        return {"a": a.id, "b": b.id}


def _ids(s: object, query: str, visible: list[int]) -> list[str]:
    page = search(s, query, visible_account_ids=visible)  # type: ignore[arg-type]
    return [h.message_id for h in page.hits]


def _grouped(s: object, query: str, visible: list[int], **kw: object) -> list[tuple[str, int]]:
    page = search(s, query, visible_account_ids=visible, per_conversation=True, **kw)  # type: ignore[arg-type]
    return [(h.message_id, h.matches) for h in page.hits]


@pytest.fixture(params=["selective", "walk"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "walk":
        # Three matches are already "common": the newest-first walk, not the candidate sort.
        monkeypatch.setattr(store_search, "CANDIDATE_LIMIT", 2)
        monkeypatch.setattr(store_search, "FEW_ROWS", 0)
    return str(request.param)


def test_last_word_is_a_prefix(
    session_factory: SessionFactory, mail: dict[str, int], path: str
) -> None:
    both = [mail["a"], mail["b"]]
    with session_scope(session_factory) as s:
        assert _ids(s, "inv", both) == ["lone@x", "t3@x", "t2@x", "t1@x"]
        assert _ids(s, "invoic", both) == ["lone@x", "t3@x", "t2@x", "t1@x"]
        assert _ids(s, "march pai", both) == ["t3@x"]
        # Only the last word: "inv" before another word is whole (no such word).
        assert _ids(s, "inv march", both) == []
        # A quoted word and a word ended by a space are whole words.
        assert _ids(s, '"inv"', both) == []
        assert _ids(s, "inv ", both) == []
        assert _ids(s, "invoice", both) == ["t3@x", "t2@x", "t1@x"]  # prefix of "invoices" too
        assert _ids(s, "subject:inv", both) == ["t3@x", "t2@x", "t1@x"]
        assert _ids(s, "from:carl@example.org inv", both) == ["lone@x"]
        assert _ids(s, "account:sales@ours.example inv", both) == ["t3@x", "t2@x", "t1@x"]
        # The last part is "-march" (negated: whole), so "inv" is a whole word here.
        assert _ids(s, "inv -march", both) == []
        assert _ids(s, "invoice -march", both) == ["t2@x", "t1@x"]
        # A negated last word stays whole: no email has the word "inv".
        assert _ids(s, "-inv", both) == ["other@x", "lone@x", "t4@x", "t3@x", "t2@x", "t1@x"]
        assert _ids(s, "after:2024-01-03 inv", both) == ["lone@x", "t3@x"]


def test_one_row_per_conversation_with_its_matching_emails(
    session_factory: SessionFactory, mail: dict[str, int], path: str
) -> None:
    both = [mail["a"], mail["b"]]
    with session_scope(session_factory) as s:
        # The thread shows once: its newest matching email, and 3 of its emails match.
        assert _grouped(s, "inv", both) == [("lone@x", 1), ("t3@x", 3)]
        page = search(s, "inv", visible_account_ids=both, per_conversation=True)
        assert (page.total, page.capped) == (2, False)
        assert _grouped(s, "invoice", both) == [("t3@x", 3)]
        assert _grouped(s, "invoices", both) == [("t2@x", 1)]
        assert _grouped(s, "-march invoice", both) == [("t2@x", 2)]
        assert _grouped(s, "from:bob@acme.example", both) == [("other@x", 1), ("t4@x", 4)]
        # Paging counts conversations.
        assert _grouped(s, "inv", both, limit=1) == [("lone@x", 1)]
        assert _grouped(s, "inv", both, limit=1, offset=1) == [("t3@x", 3)]
        assert _grouped(s, "inv", [mail["b"]]) == [("lone@x", 1)]  # access still applies


def test_triage_filters_with_prefix_and_grouping(
    session_factory: SessionFactory, mail: dict[str, int], path: str
) -> None:
    both = [mail["a"], mail["b"]]
    with session_scope(session_factory) as s:
        thread = s.scalars(select(Conversation).where(Conversation.subject.like("%42%"))).one()
        thread.assignee = "U1"
        s.flush()
        assert _grouped(s, "is:mine inv", both) == []  # no person: nobody's
        page = search(
            s, "is:mine inv", visible_account_ids=both, user_id="U1", per_conversation=True
        )
        assert [(h.message_id, h.matches) for h in page.hits] == [("t3@x", 3)]
        assert _grouped(s, "is:unassigned inv", both) == [("lone@x", 1)]
        assert _grouped(s, "-is:unassigned inv", both) == [("t3@x", 3)]
        thread.snoozed_until = datetime.now(UTC) + timedelta(days=1)
        s.flush()
        assert _grouped(s, "is:snoozed inv", both) == [("t3@x", 3)]
        assert _grouped(s, "is:unread inv", both) == [("lone@x", 1), ("t3@x", 3)]


HOSTILE = [
    '"',
    '""',
    '"inv',
    "inv*",
    "*",
    "**inv",
    "inv'",
    "'",
    "\\",
    "inv\\",
    "NEAR(inv march)",
    "NEAR",
    "inv NEAR march",
    "inv AND",
    "OR inv",
    "NOT",
    ":",
    "::",
    "inv:",
    "subject:",
    "subject:*",
    "body:inv",
    "inv\x00oice",
    "\x00",
    "-",
    "- -inv",
    "^inv",
    "inv:*",
    "in(v",
    "in)v",
    "!inv",
    "inv & march | x",
    "inv <-> march",
    "é",
    "invö",
    "{inv}",
    "+inv",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_never_raise(
    session_factory: SessionFactory, mail: dict[str, int], query: str
) -> None:
    both = [mail["a"], mail["b"]]
    with session_scope(session_factory) as s:
        for grouped in (False, True):
            page = search(s, query, visible_account_ids=both, per_conversation=grouped)
            assert page.total >= len(page.hits) >= 0


def test_prefix_rendering_is_escaped() -> None:
    q = parse_query('from:x "a b" inv\'*')
    assert q.terms[-1].prefix and not q.terms[0].prefix
    assert fts5_match(q) == '"a b" AND "inv\'*"*'
    assert tsquery_text(q) == "('a b') & ('inv''*':*)"
    assert not parse_query("i").terms[0].prefix  # one letter: whole
    assert not parse_query("-inv").terms[0].prefix
    assert parse_query("subject:inv").terms[0].prefix
    assert not parse_query("inv is:unread").terms[0].prefix  # not the last part
