"""Run a parsed search query against PostgreSQL (tsvector + GIN) or SQLite (FTS5).

Shape (search-baseline.md): first fetch up to CANDIDATE_LIMIT matches from the text index;
when that is all of them, filter and sort just those (rare terms stay fast). Only when a term
is common, walk each visible account's (account_id, date) index newest first and stop at the
page (common terms stay fast). Counts are capped at COUNT_CAP ("1,000+"); snippets are built
for the page only. User text reaches the engines only as escaped literals (bot/search/query.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import (
    Text,
    bindparam,
    cast,
    column,
    func,
    literal_column,
    not_,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bot.search.query import (
    SearchQuery,
    fts5_match,
    fts5_negatives,
    parse_query,
    tsquery_negatives,
    tsquery_text,
)
from bot.store.models import (
    Account,
    Client,
    ClientAddress,
    Conversation,
    ConversationLink,
    Message,
)

_FTS = table("message_fts", column("rowid"))
CANDIDATE_LIMIT = 2000
COUNT_CAP = 1000
SCAN_CAP = 20_000  # rows walked newest first before a search stops and says "more may exist"
FIRST_CHUNK = 500  # rows in the walk's first chunk; each next chunk is twice as big
HIGHLIGHT = ("«", "»")
_WS = re.compile(r"\s+")


@dataclass
class SearchHit:
    id: int
    message_id: str
    subject: str
    from_email: str
    from_name: str
    date: datetime | None
    conversation_id: int
    account_id: int
    snippet: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "message_id": self.message_id,
            "subject": self.subject,
            "from": self.from_email,
            "from_name": self.from_name,
            "date": self.date.isoformat() if self.date else None,
            "conversation_id": self.conversation_id,
            "account_id": self.account_id,
            "snippet": self.snippet,
        }


@dataclass
class SearchPage:
    hits: list[SearchHit]
    total: int  # exact when not capped, else a lower bound (at most COUNT_CAP)
    capped: bool  # total is a lower bound: show total_label ("1,000+", or "37+" if partial)
    # The walk stopped after the newest SCAN_CAP rows: more (older) results may exist.
    partial: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def total_label(self) -> str:
        return f"{self.total:,}+" if self.capped else f"{self.total:,}"


def _pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(col: Any, value: str) -> ColumnElement[bool]:
    return func.lower(col).like("%" + _like_escape(value.lower()) + "%", escape="\\")


def _from_condition(value: str) -> ColumnElement[bool]:
    v = value.strip().lower()
    if v.startswith("@"):
        return Message.from_email.like("%" + _like_escape(v), escape="\\")
    if "@" in v:
        return Message.from_email == v  # uses ix_messages_from_email
    if "." in v:  # a domain
        return or_(
            Message.from_email.like("%@" + _like_escape(v), escape="\\"),
            Message.from_email.like("%." + _like_escape(v), escape="\\"),
        )
    return or_(_contains(Message.from_email, v), _contains(Message.from_name, v))


def _to_condition(value: str) -> ColumnElement[bool]:
    # Recipients are JSON lists of {name, email}; a substring of their text is enough here.
    return or_(
        _contains(cast(Message.to, Text), value),
        _contains(cast(Message.cc, Text), value),
    )


def _client_condition(value: str) -> ColumnElement[bool]:
    v = value.strip()
    clients = select(Client.id).where(
        or_(
            _contains(Client.name, v),
            _contains(Client.company, v),
            Client.id.in_(select(ClientAddress.client_id).where(ClientAddress.email == v.lower())),
            *([Client.id == int(v)] if v.isdigit() else []),
        )
    )
    return Message.conversation_id.in_(
        select(ConversationLink.conversation_id).where(ConversationLink.client_id.in_(clients))
    )


def _is_condition(value: str) -> ColumnElement[bool]:
    if value == "unread":
        return Message.is_read.is_(False)
    if value == "read":
        return Message.is_read.is_(True)
    linked = select(ConversationLink.conversation_id)
    if value == "linked":
        return Message.conversation_id.in_(linked)
    if value == "unlinked":
        return Message.conversation_id.not_in(linked)
    return Message.conversation_id.in_(select(Conversation.id).where(Conversation.archived))


def _structured(q: SearchQuery) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [Message.deleted.is_(False)]
    for f in q.filters:
        cond: ColumnElement[bool] | None = None
        if f.field == "from":
            cond = _from_condition(f.value)
        elif f.field == "to":
            cond = _to_condition(f.value)
        elif f.field == "client":
            cond = _client_condition(f.value)
        elif f.field == "is":
            cond = _is_condition(f.value)
        elif f.field == "has":
            cond = Message.has_attachments.is_(True)
        if cond is not None:
            conds.append(not_(cond) if f.negated else cond)
    if q.after is not None:
        conds.append(Message.date >= datetime.combine(q.after, time(), UTC))
    if q.before is not None:
        conds.append(Message.date < datetime.combine(q.before, time(), UTC))
    return conds


def _accounts(session: Session, q: SearchQuery, visible: Collection[int]) -> list[int]:
    ids = set(visible)
    for value, negated in [(v, False) for v in q.values("account")] + [
        (v, True) for v in q.values("account", negated=True)
    ]:
        v = value.strip().lower()
        matched = set(
            session.scalars(
                select(Account.id).where(
                    or_(
                        func.lower(Account.email) == v,
                        *([Account.id == int(v)] if v.isdigit() else []),
                    )
                )
            )
        )
        ids = ids - matched if negated else ids & matched
    return sorted(ids)


class _Engine:
    """The dialect-specific text pieces."""

    def __init__(self, session: Session, q: SearchQuery) -> None:
        self.pg = _pg(session)
        self.prefilter: str | None = None  # PG: a looser query the GIN answers exactly
        if self.pg:
            self.positive = tsquery_text(q)
            self.negative = None if self.positive else tsquery_negatives(q)
            loose = tsquery_text(q, weights=False)
            self.prefilter = loose if loose != self.positive else None
        else:
            self.positive = fts5_match(q)
            self.negative = None if self.positive else fts5_negatives(q)

    def condition(self, expr: str) -> ColumnElement[bool]:
        """The text condition as the planner sees it (PostgreSQL: may use the GIN index)."""
        if self.pg:
            return literal_column("messages.search_vector").op("@@")(
                func.to_tsquery("simple", expr)
            )
        # SQLite: a correlated per-row check (FTS5 seeks the rowid in the term's doclist).
        return (
            select(literal_column("1"))
            .select_from(_FTS)
            .where(literal_column("message_fts").op("MATCH")(expr), _FTS.c.rowid == Message.id)
            .exists()
        )

    def row_check(self, expr: str) -> ColumnElement[bool]:
        """The text condition checked on each row. PostgreSQL: the function form of `@@` so
        the planner cannot turn it into a GIN scan over every match of a common word."""
        if self.pg:
            return func.ts_match_vq(
                literal_column("messages.search_vector"), func.to_tsquery("simple", expr)
            )
        return self.condition(expr)

    def extra_conditions(self) -> list[ColumnElement[bool]]:
        return [not_(self.row_check(self.negative))] if self.negative else []

    def candidates(self, session: Session) -> list[int]:
        """Up to CANDIDATE_LIMIT + 1 ids matching the text (PostgreSQL: the looser pre-filter
        when the query has weights; `exact()` narrows them)."""
        assert self.positive is not None
        if self.pg:
            expr = self.prefilter or self.positive
            stmt = select(Message.id).where(self.condition(expr)).limit(CANDIDATE_LIMIT + 1)
            return list(session.scalars(stmt))
        rows = session.execute(
            text(
                "SELECT rowid FROM message_fts WHERE message_fts MATCH :fts "
                "ORDER BY rowid DESC LIMIT :n"
            ),
            {"fts": self.positive, "n": CANDIDATE_LIMIT + 1},
        )
        return [r[0] for r in rows]

    def exact(self) -> list[ColumnElement[bool]]:
        """What the candidates still need checking against (the weights the GIN cannot see)."""
        assert self.positive is not None
        return [self.row_check(self.positive)] if self.prefilter else []

    def matching(self, session: Session, ids: Sequence[int]) -> set[int]:
        """Which of `ids` match the positive text: one set-based check of a bounded chunk."""
        assert self.positive is not None
        if not ids:
            return set()
        if self.pg:
            stmt = text(
                "SELECT id FROM messages WHERE id = ANY(:ids) "
                "AND ts_match_vq(search_vector, to_tsquery('simple', :q))"
            )
            return set(session.scalars(stmt, {"ids": list(ids), "q": self.positive}))
        stmt = text(
            "SELECT rowid FROM message_fts WHERE message_fts MATCH :fts "
            "AND rowid IN (SELECT value FROM json_each(:ids))"
        )
        return set(session.scalars(stmt, {"fts": self.positive, "ids": json.dumps(list(ids))}))

    def snippets(self, session: Session, ids: Sequence[int]) -> dict[int, str]:
        if not ids or self.positive is None:
            return {}
        start, stop = HIGHLIGHT
        if self.pg:
            options = (
                f"MaxFragments=1, MaxWords=24, MinWords=8, StartSel={start}, StopSel={stop}, "
                'FragmentDelimiter=" … "'
            )
            stmt = text(
                "SELECT id, ts_headline('simple', left(body_text, 20000), "
                "to_tsquery('simple', :q), :opts) FROM messages WHERE id IN :ids"
            ).bindparams(bindparam("ids", expanding=True))
            rows = session.execute(stmt, {"q": self.positive, "opts": options, "ids": list(ids)})
        else:
            stmt = text(
                "SELECT rowid, snippet(message_fts, 2, :a, :b, '…', 16) FROM message_fts "
                "WHERE message_fts MATCH :fts AND rowid IN :ids"
            ).bindparams(bindparam("ids", expanding=True))
            rows = session.execute(
                stmt, {"a": start, "b": stop, "fts": self.positive, "ids": list(ids)}
            )
        return {r[0]: _WS.sub(" ", r[1] or "").strip() for r in rows}


def search(
    session: Session,
    query: str | SearchQuery,
    *,
    visible_account_ids: Collection[int] | None,
    limit: int = 20,
    offset: int = 0,
) -> SearchPage:
    """Messages matching `query`, newest first. `visible_account_ids` is the access filter:
    the accounts this person may see (required on purpose; pass every id for the CLI). None
    is refused rather than read as "all"."""
    if visible_account_ids is None:
        raise ValueError("visible_account_ids is required (pass the accounts the person may see)")
    q = parse_query(query) if isinstance(query, str) else query
    limit, offset = max(1, min(limit, 500)), max(0, offset)
    accounts = _accounts(session, q, visible_account_ids)
    if not accounts:
        return SearchPage(hits=[], total=0, capped=False, errors=q.errors)
    engine = _Engine(session, q)
    conds = [Message.account_id.in_(accounts), *_structured(q), *engine.extra_conditions()]

    if engine.positive is not None:
        candidates = engine.candidates(session)
        if len(candidates) <= CANDIDATE_LIMIT:
            # Every match is known: filter and sort them all (at most 2,000 small rows).
            if not candidates:
                return SearchPage(hits=[], total=0, capped=False, errors=q.errors)
            rows = session.execute(
                select(Message.id)
                .where(Message.id.in_(candidates), *conds, *engine.exact())
                .order_by(Message.date.desc(), Message.id.desc())
            ).all()
            ids = [r[0] for r in rows]
            page_ids = ids[offset : offset + limit]
            total, capped = min(len(ids), COUNT_CAP), len(ids) > COUNT_CAP
            return _page(session, engine, page_ids, total, capped, False, q.errors)

    found, partial = _walk(session, engine, conds, max(offset + limit, COUNT_CAP + 1))
    total = min(len(found), COUNT_CAP)
    capped = len(found) > COUNT_CAP or partial
    return _page(session, engine, found[offset : offset + limit], total, capped, partial, q.errors)


def _walk(
    session: Session, engine: _Engine, conds: Sequence[ColumnElement[bool]], want: int
) -> tuple[list[int], bool]:
    """The newest `want` matching ids, and whether the walk stopped at SCAN_CAP rows.

    Walks the (date, id) index newest first over every visible account at once, in chunks
    that double (FIRST_CHUNK, then twice that, and so on): each chunk is the next rows that pass the structured
    filters, and the text is checked on the whole chunk in one set-based query, so the cost
    is about `want / selectivity` cheap row checks, bounded by SCAN_CAP. Rows whose ids are
    out of date order (history imports) are ordered by date like any other."""
    found: list[int] = []
    scanned, size = 0, FIRST_CHUNK
    while scanned < SCAN_CAP:
        size = min(size, SCAN_CAP - scanned)
        chunk = list(
            session.scalars(
                select(Message.id)
                .where(*conds)
                .order_by(Message.date.desc(), Message.id.desc())
                .offset(scanned)
                .limit(size)
            )
        )
        scanned += len(chunk)
        if engine.positive is not None:
            hits = engine.matching(session, chunk)
            found.extend(i for i in chunk if i in hits)
        else:
            found.extend(chunk)
        if len(found) >= want:
            return found[:want], False
        if len(chunk) < size:
            return found, False  # every row was seen
        size *= 2
    return found, True


def _page(
    session: Session,
    engine: _Engine,
    ids: Sequence[int],
    total: int,
    capped: bool,
    partial: bool,
    errors: list[str],
) -> SearchPage:
    if not ids:
        return SearchPage(hits=[], total=total, capped=capped, partial=partial, errors=errors)
    rows = {
        m.id: m
        for m in session.execute(
            select(
                Message.id,
                Message.message_id,
                Message.subject,
                Message.from_email,
                Message.from_name,
                Message.date,
                Message.conversation_id,
                Message.account_id,
                Message.snippet,
            ).where(Message.id.in_(list(ids)))
        )
    }
    snippets = engine.snippets(session, ids)
    hits = []
    for i in ids:
        r = rows[i]
        hits.append(
            SearchHit(
                id=r.id,
                message_id=r.message_id,
                subject=r.subject,
                from_email=r.from_email,
                from_name=r.from_name,
                date=r.date,
                conversation_id=r.conversation_id,
                account_id=r.account_id,
                snippet=snippets.get(i) or r.snippet,
            )
        )
    return SearchPage(hits=hits, total=total, capped=capped, partial=partial, errors=errors)


def all_account_ids(session: Session) -> list[int]:
    """Every account id: what the CLI (an operator on the host) may see."""
    return list(session.scalars(select(Account.id).order_by(Account.id)))


__all__ = [
    "CANDIDATE_LIMIT",
    "COUNT_CAP",
    "HIGHLIGHT",
    "SCAN_CAP",
    "SearchHit",
    "SearchPage",
    "all_account_ids",
    "search",
]
