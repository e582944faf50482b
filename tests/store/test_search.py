"""Search against the real indexes (FTS5 / tsvector): every operator, paging, access filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session

from bot.store.clients import create_client
from bot.store.db import SessionFactory, session_scope
from bot.store.ingest import ingest_message
from bot.store.models import Conversation, Message
from bot.store.search import CANDIDATE_LIMIT, COUNT_CAP, HIGHLIGHT, index_unindexed, search
from tests.store.helpers import make_account, raw_mail

ATTACH = (
    "--b\r\nContent-Type: text/plain\r\n\r\nthe quarterly numbers attached\r\n--b\r\n"
    'Content-Type: application/pdf; name="q.pdf"\r\nContent-Disposition: attachment; filename="q.pdf"\r\n'
    "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n"
)


@pytest.fixture
def corpus(session_factory: SessionFactory) -> dict[str, int]:
    with session_scope(session_factory) as s:
        a = make_account(s, "sales@ours.example")
        b = make_account(s, "support@ours.example")
        create_client(s, name="Acme Corp", domains=["acme.example"])
        ing = ingest_message
        ing(
            s,
            a,
            raw_mail(
                "m1@x",
                "Invoice 42 overdue",
                sender="Bob Stone <bob@acme.example>",
                date="Mon, 01 Jan 2024 10:00:00 +0000",
                body="Payment due next week please",
            ),
        )
        ing(
            s,
            a,
            raw_mail(
                "m2@x",
                "Re: Invoice 42 overdue",
                sender="team@ours.example",
                to="bob@acme.example",
                irt="m1@x",
                date="Tue, 02 Jan 2024 10:00:00 +0000",
                body="We will pay the invoice, the payment is due friday",
            ),
            is_read=True,
        )
        ing(
            s,
            a,
            raw_mail(
                "m3@x",
                "Quarterly report",
                sender="Ann <ann@other.example>",
                date="Wed, 10 Jan 2024 10:00:00 +0000",
                body=ATTACH,
                extra='MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"',
            ),
        )
        ing(
            s,
            b,
            raw_mail(
                "m4@x",
                "Printer broken",
                sender="Carl <carl@gmail.com>",
                date="Thu, 01 Feb 2024 10:00:00 +0000",
                body="the invoice printer jams",
            ),
        )
        conv = ing(
            s,
            b,
            raw_mail(
                "m5@x",
                "Spam offer",
                sender="spam@junk.example",
                date="Fri, 02 Feb 2024 10:00:00 +0000",
                body="cheap invoice software",
            ),
        ).conversation
        conv.archived = True
        return {"a": a.id, "b": b.id}  # fmt: skip


def ids(s: Session, query: str, visible: list[int]) -> list[str]:
    return [h.message_id for h in search(s, query, visible_account_ids=visible).hits]


def test_every_operator(session_factory: SessionFactory, corpus: dict[str, int]) -> None:
    both = [corpus["a"], corpus["b"]]
    with session_scope(session_factory) as s:
        assert ids(s, "invoice", both) == ["m5@x", "m4@x", "m2@x", "m1@x"]  # newest first
        assert ids(s, '"payment due"', both) == ["m1@x"]  # phrase, in order
        assert ids(s, "payment due", both) == ["m2@x", "m1@x"]  # words, any order
        assert ids(s, "from:bob@acme.example", both) == ["m1@x"]
        assert ids(s, "from:acme.example", both) == ["m1@x"]
        assert ids(s, "from:stone", both) == ["m1@x"]  # display name
        assert ids(s, "to:bob@acme.example", both) == ["m2@x"]
        assert ids(s, "subject:invoice", both) == ["m2@x", "m1@x"]  # not the bodies
        assert ids(s, "client:acme", both) == ["m2@x", "m1@x"]
        assert ids(s, "account:support@ours.example invoice", both) == ["m5@x", "m4@x"]
        assert ids(s, "is:unread invoice", both) == ["m5@x", "m4@x", "m1@x"]
        assert ids(s, "is:read", both) == ["m2@x"]
        assert ids(s, "is:archived", both) == ["m5@x"]
        assert ids(s, "is:linked", both) == ["m2@x", "m1@x"]
        assert ids(s, "is:unlinked invoice", both) == ["m5@x", "m4@x"]
        assert ids(s, "has:attachment", both) == ["m3@x"]
        assert ids(s, "after:2024-01-10 before:2024-02-02", both) == ["m4@x", "m3@x"]
        assert ids(s, "invoice -spam", both) == ["m4@x", "m2@x", "m1@x"]
        assert ids(s, "-invoice", both) == ["m3@x"]  # negation alone
        assert ids(s, "invoice -from:acme.example -is:archived", both) == ["m4@x", "m2@x"]
        assert ids(s, "nothingmatcheshere", both) == []


def test_access_filter_is_required_and_applied(
    session_factory: SessionFactory, corpus: dict[str, int]
) -> None:
    with session_scope(session_factory) as s:
        assert ids(s, "invoice", [corpus["a"]]) == ["m2@x", "m1@x"]
        assert ids(s, "account:support@ours.example invoice", [corpus["a"]]) == []
        assert ids(s, "invoice", []) == []
        with pytest.raises(ValueError):
            search(s, "invoice", visible_account_ids=None)


def test_hit_fields_snippet_and_paging(
    session_factory: SessionFactory, corpus: dict[str, int]
) -> None:
    with session_scope(session_factory) as s:
        page = search(s, "payment", visible_account_ids=[corpus["a"]], limit=1)
        assert page.total == 2 and not page.capped and page.total_label == "2"
        hit = page.hits[0]
        assert (hit.message_id, hit.from_email) == ("m2@x", "team@ours.example")
        assert hit.conversation_id == s.get_one(Conversation, hit.conversation_id).id
        assert f"{HIGHLIGHT[0]}payment{HIGHLIGHT[1]}" in hit.snippet
        second = search(s, "payment", visible_account_ids=[corpus["a"]], limit=1, offset=1)
        assert [h.message_id for h in second.hits] == ["m1@x"]


def test_common_term_walk_and_capped_count(session_factory: SessionFactory) -> None:
    """More matches than the candidate fetch: the date-index walk gives the newest ones and
    the count is capped. Rows are bulk-inserted (search is under test here, not ingest); ids
    run against date order on purpose, as after a history import."""
    n = CANDIDATE_LIMIT + 5
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with session_scope(session_factory) as s:
        acc = make_account(s)
        conv = Conversation(account_id=acc.id, subject="Notes")
        s.add(conv)
        s.flush()
        s.execute(
            insert(Message),
            [
                {
                    "account_id": acc.id,
                    "conversation_id": conv.id,
                    "message_id": f"c{i}@x",
                    "subject": f"Note {i}",
                    "body_text": "common word" + (" rare" if i == 7 else ""),
                    "date": start + timedelta(minutes=n - i),  # c0 is the newest
                }
                for i in range(n)
            ],
        )
        index_unindexed(s)  # ingest indexes what it inserts; a bulk load must ask
    with session_scope(session_factory) as s:
        page = search(s, "common", visible_account_ids=[acc.id], limit=3)
        assert [h.message_id for h in page.hits] == ["c0@x", "c1@x", "c2@x"]
        assert page.capped and page.total == COUNT_CAP and page.total_label == "1,000+"
        rare = search(s, "common rare", visible_account_ids=[acc.id])
        assert [h.message_id for h in rare.hits] == ["c7@x"] and rare.total == 1
        tail = search(s, "common", visible_account_ids=[acc.id], limit=2, offset=n - 2)
        assert [h.message_id for h in tail.hits] == [f"c{n - 2}@x", f"c{n - 1}@x"]
