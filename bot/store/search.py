"""Run a parsed search query against PostgreSQL (tsvector + GIN) or SQLite (FTS5).

Shape (search-baseline.md, docs/benchmarks.md): first fetch up to CANDIDATE_LIMIT matches
from the text index; when that is all of them, filter and sort just those (rare terms stay
fast). Past that (a common text):
- PostgreSQL: one query over every visible account; the planner walks the (date, id) index
  newest first and stops at the page. `subject:` terms are searched without the weight (GIN
  answers that exactly) and checked on the subject text of those rows only.
- SQLite: FTS5 streams matches by rowid cheaply, so read them highest rowid first in batches,
  filter each batch in one query, then add the few unread rows newer than the page (ids out of
  date order); stop after SCAN_CAP matches and say "more may exist" (SearchPage.partial).
Counts are capped at COUNT_CAP ("1,000+"); snippets are built for the page only. User text
reaches the engines only as escaped literals (bot/search/query.py).
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
    and_,
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
    Term,
    fts5_match,
    fts5_negatives,
    parse_query,
    term_words,
    ts_operand,
    tsquery_negatives,
    tsquery_text,
)
from bot.store.lists import one_of
from bot.store.models import (
    Account,
    Client,
    ClientAddress,
    Conversation,
    ConversationLink,
    ConversationNote,
    Message,
)

_FTS = table("message_fts", column("rowid"))
CANDIDATE_LIMIT = 2000
COUNT_CAP = 1000
SCAN_CAP = 20_000  # SQLite: text matches read before a search stops, saying "more may exist"
# SQLite: when the filters alone leave at most this many rows, check the text on each of them
# (an FTS5 rowid seek costs ~75 µs: 300 of them stay under 25 ms).
FEW_ROWS = 300
# Grouped per conversation: matching emails read newest first, at most, to fill a page of
# conversations (a page of long threads whose every email matches stops here: "more may exist").
GROUP_SCAN_CAP = 5000
# PostgreSQL, a triage view with a common text: past this many conversations the view is
# checked on each row of the newest-first walk instead of listing its emails and sorting them.
VIEW_WALK = 1000
# PostgreSQL: a text in at least this share of the newest DENSE_SAMPLE emails skips the
# candidate fetch (Engine.dense).
DENSE_SAMPLE = 1000
DENSE_SHARE = 0.05
HIGHLIGHT = ("«", "»")
# PostgreSQL: the subject's own tsvector, exactly as ix_messages_subject_tsv indexes it.
SUBJECT_TSV = "to_tsvector('simple', coalesce(messages.subject, ''))"
_WS = re.compile(r"\s+")


# Fills the SQLite FTS5 index from the messages; callers add the WHERE condition.
FTS_FILL = (
    "INSERT INTO message_fts(rowid, subject, sender, body) "
    "SELECT id, subject, from_name || ' ' || from_email, body_text FROM messages WHERE "
)


def index_messages(session: Session, ids: Sequence[int]) -> None:
    """Add newly inserted messages to the SQLite FTS5 index (migration 0003: one statement
    per batch instead of a per-row trigger). PostgreSQL indexes by itself: a no-op there."""
    if session.get_bind().dialect.name != "sqlite" or not ids:
        return
    # One JSON parameter, not an expanded IN list (bot/store/lists.py).
    session.execute(
        text(FTS_FILL + "id IN (SELECT value FROM json_each(:ids))"),
        {"ids": json.dumps(list(ids))},
    )


def index_unindexed(session: Session) -> None:
    """SQLite: index every message missing from FTS5 (after a bulk load that bypassed
    ingest, as the search tests and bench do). PostgreSQL: a no-op."""
    if session.get_bind().dialect.name != "sqlite":
        return
    # The index's own list of what it holds (its _docsize table): the rowids of the table
    # itself come from its content, every message (migration 0004).
    session.execute(text(FTS_FILL + "id NOT IN (SELECT id FROM message_fts_docsize)"))


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
    # Grouped per conversation: how many of the conversation's emails match (this one is
    # the newest of them). 1 for a per-email search.
    matches: int = 1

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
            "matches": self.matches,
        }


@dataclass
class SearchPage:
    hits: list[SearchHit]
    total: int  # exact when not capped, else a lower bound (at most COUNT_CAP)
    capped: bool  # total is a lower bound: show total_label ("1,000+", or "37+" if partial)
    # SQLite stopped after SCAN_CAP text matches: the page is still the newest, but the
    # count is a lower bound and more results may exist.
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


def _is_condition(value: str, user_id: str | None = None, pg: bool = False) -> ColumnElement[bool]:
    from bot.store import triage

    if value in triage.VIEWS and pg:
        # PostgreSQL: the view's conversations as a hashed list, read from the partial index
        # of 0017 (the status a constant lets it prove the index's WHERE); measured the
        # cheaper shape there at 100,000 and 1,000,000 messages.
        listed = Message.conversation_id.in_(
            select(Conversation.id).where(*triage.view_conditions(value, user_id))
        )
        # The same as a check of each row's conversation by its key, for a page walk over a
        # common text (_walk): `OFFSET 0` keeps it a per-row subplan, so the planner cannot
        # turn it back into a join from every conversation of the view (it under-estimates
        # a view: 310 conversations for 3,410) that reads and sorts all their emails.
        listed.mailroom_view_rows = (  # type: ignore[attr-defined]
            select(literal_column("1"))
            .where(
                Conversation.id == Message.conversation_id,
                *triage.view_conditions(value, user_id),
            )
            .correlate(Message)
            .offset(0)
            .exists()
        )
        listed.mailroom_view = triage.view_conditions(value, user_id)  # type: ignore[attr-defined]
        return listed
    if value in triage.VIEWS:
        # SQLite: the message's conversation is in the view, checked row by row (one
        # primary-key lookup): as an IN list SQLite drove the query from every conversation
        # of the view and sorted all their emails. Small views are read from the
        # conversation side instead (_view_rows).
        check = (
            select(literal_column("1"))
            .where(
                Conversation.id == Message.conversation_id,
                *triage.view_conditions(value, user_id),
            )
            .correlate(Message)  # its own conversations row, also under _view_rows's join
            .exists()
        )
        # Marked: _view_rows joins the view instead and leaves these out (a negated view is a
        # new element around this one and stays a row check everywhere).
        check.mailroom_view_check = True  # type: ignore[attr-defined]
        return check
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


def _view_conditions(q: SearchQuery, user_id: str | None) -> list[ColumnElement[bool]]:
    """Conditions on `Conversation` of the query's positive triage views (is:mine …): the
    conversations whose emails may match. Empty when the query has none."""
    from bot.store import triage

    out: list[ColumnElement[bool]] = []
    for f in q.filters:
        if f.field == "is" and f.value in triage.VIEWS and not f.negated:
            out.extend(triage.view_conditions(f.value, user_id))
    return out


def _structured(
    q: SearchQuery, user_id: str | None = None, pg: bool = False
) -> list[ColumnElement[bool]]:
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
            cond = _is_condition(f.value, user_id, pg)
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


def _subject(term: Term) -> ColumnElement[bool]:
    """PostgreSQL: the term in the subject, i.e. `'word':A` on search_vector (the subject is
    its only weight-A part), checked on the subject text: a substring test of each word first,
    so the parse runs only on rows that can match."""
    words = [func.strpos(func.lower(Message.subject), func.lower(w)) > 0 for w in term_words(term)]
    # Written as the expression of the GIN index ix_messages_subject_tsv (migration 0012),
    # constants inline, so the planner can intersect it with the whole-message index.
    vector: ColumnElement[Any] = literal_column(SUBJECT_TSV)
    cond = and_(*words, vector.op("@@")(func.to_tsquery("simple", ts_operand(term))))
    return not_(cond) if term.negated else cond


class _Engine:
    """The dialect-specific text pieces."""

    def __init__(self, session: Session, q: SearchQuery) -> None:
        self.pg = _pg(session)
        # PostgreSQL: subject: terms as row checks on the subject alone (see _subject).
        self.subject: list[ColumnElement[bool]] = []
        self.text: list[ColumnElement[bool]] = []  # PostgreSQL, below
        self.common_text: list[ColumnElement[bool]] = []
        if self.pg:
            # The GIN index answers a query without weights exactly; with the subject's
            # weight it rechecks every row that has the word anywhere (325 ms measured).
            self.positive = tsquery_text(q, weights=False)
            self.negative = None if self.positive else tsquery_negatives(q)
            if self.positive:
                self.subject = [_subject(t) for t in q.terms if t.field == "subject"]
            # The whole-message text conditions. When every positive term is a subject: term,
            # the subject index alone finds the rows (a subject word is in the message's
            # vector too, so asking that GIN as well only adds work: for `subject:w40` it read
            # 36,000 entries of w40* anywhere to intersect with 2,800 subjects), and negated
            # free words are checked on those rows.
            if self.positive:
                if any(t.field != "subject" for t in q.positive_terms):
                    self.text = [self.condition(self.positive)]
                    # Past the candidate fetch (a text with thousands of matches), the same
                    # text as a check on each row the other conditions or the date walk
                    # reach: a GIN bitmap is built whole before any LIMIT applies (36,598
                    # entries for `w40*` at 100,000 messages: 10 ms to count 76 emails of
                    # one sender; 0.5 ms checked on the sender's 183 rows).
                    self.common_text = [self.row_check(self.positive)]
                else:
                    rest = SearchQuery(terms=[t for t in q.negative_terms if t.field != "subject"])
                    others = tsquery_negatives(rest)
                    self.text = [not_(self.row_check(others))] if others else []
        else:
            self.positive = fts5_match(q)
            self.negative = None if self.positive else fts5_negatives(q)
        # `from:` an exact address: that sender's emails can be walked newest first by the
        # (from_email, date, id) index of 0018 (_sender_walk).
        self.sender = next(
            (
                v
                for v in (f.strip().lower() for f in q.values("from"))
                if "@" in v and not v.startswith("@")
            ),
            None,
        )
        # SQLite: a prefix longer than the FTS5 prefix indexes (2 and 3 characters, 0012)
        # merges the doclists of every word it starts, again for each single-rowid seek.
        self.merged_prefix = any(
            t.prefix and len(term_words(t)[-1]) > 3 for t in q.positive_terms if term_words(t)
        )

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

    def dense(self, session: Session) -> bool:
        """PostgreSQL: whether the text matches at least DENSE_SHARE of the newest
        DENSE_SAMPLE emails (checked row by row by the date index: ~1-2 ms). Such a text has
        thousands of matches in any mailbox big enough to matter, and its candidate fetch can
        cost more than the search: the planner builds the GIN bitmap of every match (91 ms
        for `w40 w15` at 1,000,000 messages) when it under-estimates the text. Only a guess
        about cost: the date walk and its capped count are exact whatever the answer."""
        if not self.pg or not self.common_text:
            return False
        newest = (
            select(literal_column("messages.search_vector").label("v"))
            .select_from(Message)
            .order_by(Message.date.desc(), Message.id.desc())
            .limit(DENSE_SAMPLE)
            .subquery()
        )
        hits = session.scalar(
            select(func.count())
            .select_from(newest)
            .where(func.ts_match_vq(newest.c.v, func.to_tsquery("simple", self.positive)))
        )
        return (hits or 0) >= DENSE_SHARE * DENSE_SAMPLE

    def candidates(self, session: Session) -> list[int]:
        """Up to CANDIDATE_LIMIT + 1 ids matching the text. PostgreSQL: the GIN finds the
        words anywhere and the subject checks narrow them (no ORDER BY: a bitmap scan)."""
        assert self.positive is not None
        if self.pg:
            stmt = select(Message.id).where(*self.text, *self.subject).limit(CANDIDATE_LIMIT + 1)
            return list(session.scalars(stmt))
        return self.fts_newest(session, CANDIDATE_LIMIT + 1)

    def fts_newest(self, session: Session, n: int, below: int | None = None) -> list[int]:
        """SQLite: the next `n` matching rowids under `below`, highest first. FTS5 streams its
        doclists in rowid order cheaply (~1 µs a row) but seeks single rowids slowly."""
        sql = (
            "SELECT rowid FROM message_fts WHERE message_fts MATCH ? "
            + ("AND rowid < ? " if below is not None else "")
            + "ORDER BY rowid DESC LIMIT ?"
        )
        params = (self.positive, *([below] if below is not None else []), n)
        # The driver's fetchall: thousands of plain ints, without a Row object for each.
        return [r[0] for r in session.connection().exec_driver_sql(sql, params).cursor.fetchall()]

    def matching(self, session: Session, ids: Sequence[int]) -> set[int]:
        """SQLite: which of `ids` match the positive text (FTS5 seeks each one: keep it few)."""
        assert self.positive is not None and not self.pg
        if not ids:
            return set()
        if self.merged_prefix and len(ids) > 1:
            # One pass over the id range instead: the merge once (1 s → tens of ms for 20
            # seeks of w1500* at 1,000,000 messages, measured).
            sql = (
                "SELECT rowid FROM message_fts WHERE message_fts MATCH ? "
                "AND rowid >= ? AND rowid <= ?"
            )
            params = (self.positive, min(ids), max(ids))
            rows = session.connection().exec_driver_sql(sql, params).cursor.fetchall()
            wanted = set(ids)
            return {r[0] for r in rows if r[0] in wanted}
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
    user_id: str | None = None,
    per_conversation: bool = False,
) -> SearchPage:
    """Messages matching `query`, newest first. `visible_account_ids` is the access filter:
    the accounts this person may see (required on purpose; pass every id for the CLI). None
    is refused rather than read as "all".

    `per_conversation`: one hit per conversation (its newest matching email, with the number
    of its emails that match in `matches`), conversations ordered by that email; `limit`,
    `offset` and `total` then count conversations."""
    if visible_account_ids is None:
        raise ValueError("visible_account_ids is required (pass the accounts the person may see)")
    q = parse_query(query) if isinstance(query, str) else query
    limit, offset = max(1, min(limit, 500)), max(0, offset)
    accounts = _accounts(session, q, visible_account_ids)
    if not accounts:
        return SearchPage(hits=[], total=0, capped=False, errors=q.errors)
    engine = _Engine(session, q)
    if engine.pg:
        # Every query here reads a page: parallel workers cost more to start (15 ms measured
        # on two busy cores) than they save. For this transaction only.
        session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    account_cond = Message.account_id.in_(accounts)
    if engine.pg and engine.subject and all(t.field == "subject" for t in q.positive_terms):
        # PostgreSQL, `subject:` alone: for the capped count the planner intersected the
        # subject index with a bitmap of every visible account's rows (1,000,000 entries,
        # 48 of 69 ms for `subject:w40` after VACUUM ANALYZE). `+ 0` keeps the accounts a
        # filter on the rows the subject index finds. The count only: the page walk,
        # written so, left the date index (1 → 120 ms).
        account_cond.mailroom_count_form = (  # type: ignore[attr-defined]
            (Message.account_id + 0).in_(accounts)
        )
    conds = [
        account_cond,
        *_structured(q, user_id, engine.pg),  # user_id: whose is:mine
        *engine.extra_conditions(),
    ]
    # SQLite: the views' emails can be read from the conversation side (_walk).
    views = [] if engine.pg else _view_conditions(q, user_id)
    if per_conversation:
        return _grouped(session, engine, conds, q, limit, offset, views)
    w = _walk(session, engine, conds, offset + limit, views=views)
    page_ids = w.ids[offset : offset + limit]
    return _page(session, engine, page_ids, w.total, w.capped, w.partial, q.errors)


@dataclass
class _Walk:
    ids: list[int]  # the newest `want` matches, newest first
    total: int  # matching emails, at most COUNT_CAP
    capped: bool
    partial: bool = False
    # Every match, newest first, when the walk knows them all (a selective text).
    every: list[int] | None = None
    # SQLite streaming: every match with an id >= `known_from` is in `known` (the rest of
    # that id range does not match): no text check needed for those ids.
    known: set[int] = field(default_factory=set)
    known_from: int | None = None


def _walk(
    session: Session,
    engine: _Engine,
    conds: list[ColumnElement[bool]],
    want: int,
    count: bool = True,
    views: Sequence[ColumnElement[bool]] = (),
) -> _Walk:
    """The newest `want` emails matching the text and `conds`, with a capped count
    (`count=False`: no count query, and SQLite reads no matches past the page; fewer than
    `want` ids is then all). `views`: the conditions on Conversation of the query's triage
    views (also in `conds`, as a check on each row)."""
    if views and engine.positive is None:
        # A triage view without text: its emails from the conversation side, while there are
        # few (a partial index lists the view's conversations; 0017) — then every match is
        # known; else the view is a good part of the mail, and the newest-first walk below
        # meets a page of its emails soon, checking each row's conversation by its key.
        few = _view_rows(session, views, conds, COUNT_CAP + 1)
        if len(few) <= COUNT_CAP:
            ids = [i for _d, i in _newest(session, few, len(few))]
            return _Walk(ids[:want], len(ids), False, every=ids)
        ids = list(
            session.scalars(
                select(Message.id)
                .where(*conds)
                .order_by(Message.date.desc(), Message.id.desc())
                .limit(want)
            )
        )
        return _Walk(ids, COUNT_CAP, True)
    dense = engine.positive is not None and engine.dense(session)
    if engine.positive is not None and not dense:
        candidates = engine.candidates(session)
        if len(candidates) <= CANDIDATE_LIMIT:
            # Every match is known (PostgreSQL: subject checks included): filter and sort
            # them all (at most 2,000 small rows).
            if not candidates:
                return _Walk([], 0, False, every=[])
            ids = list(
                session.scalars(
                    select(Message.id)
                    .where(Message.id.in_(candidates), *conds)
                    .order_by(Message.date.desc(), Message.id.desc())
                )
            )
            return _Walk(ids[:want], min(len(ids), COUNT_CAP), len(ids) > COUNT_CAP, every=ids)

        if not engine.pg:
            if views:
                few = _view_rows(session, views, conds, FEW_ROWS + 1)
            else:
                few = list(session.scalars(select(Message.id).where(*conds).limit(FEW_ROWS + 1)))
            if len(few) <= FEW_ROWS:
                # The filters leave fewer rows than the text matches (e.g. from:an address):
                # check the text on those rows one by one instead of streaming the matches.
                hits = engine.matching(session, few)
                ids = [i for _d, i in _newest(session, list(hits), len(hits))]
                return _Walk(ids[:want], min(len(ids), COUNT_CAP), len(ids) > COUNT_CAP, every=ids)
            if engine.sender is not None and not views:
                return _sender_walk(session, engine, conds, want, count)
            found, n, partial, known, low = _stream(session, engine, conds, candidates, want, count)
            return _Walk(
                found, min(n, COUNT_CAP), n > COUNT_CAP or partial, partial, None, known, low
            )

    # PostgreSQL past the candidate fetch, and queries without a positive text: one query
    # over every visible account; the planner walks the (date, id) index newest first and
    # stops at the page (a common text) or uses the GIN index (a selective one).
    # A dense text (Engine.dense) as a row check: its GIN bitmap would be huge. A text with
    # more than CANDIDATE_LIMIT matches but few per row read (`w1500*`: 0.3 % of the mail)
    # stays `@@`: checking rows until 1,001 matches would read 300,000 of them at 1,000,000
    # messages (78 ms), its bitmap is small.
    text_conds = engine.common_text if dense else engine.text
    extra = [*text_conds, *engine.subject] if engine.positive else []
    walk_conds = list(conds)
    if dense and _big_views(session, conds):
        # A common text and big views: the date walk meets a page soon, checking each row's
        # conversation by its key (one subplan per row read): 20 ms to 2-4 ms for
        # `is:unanswered w40` at 100,000 messages, measured warm. A small view stays a list.
        walk_conds = [getattr(c, "mailroom_view_rows", c) for c in conds]
    ids = list(
        session.scalars(
            select(Message.id)
            .where(*walk_conds, *extra)
            .order_by(Message.date.desc(), Message.id.desc())
            .limit(want)
        )
    )
    if not count:
        return _Walk(ids, len(ids), len(ids) >= want)
    counted = [getattr(c, "mailroom_count_form", c) for c in conds]
    total, capped = _capped_count(session, [*counted, *extra])
    return _Walk(ids, total, capped)


def _big_views(session: Session, conds: Sequence[ColumnElement[bool]]) -> bool:
    """PostgreSQL: whether every view condition among `conds` holds more than VIEW_WALK
    conversations (read from the partial index of 0017, stopping there)."""
    views = [c for c in conds if hasattr(c, "mailroom_view")]
    for c in views:
        few = select(Conversation.id).where(*c.mailroom_view).limit(VIEW_WALK + 1).subquery()
        if (session.scalar(select(func.count()).select_from(few)) or 0) <= VIEW_WALK:
            return False
    return bool(views)


def _sender_walk(
    session: Session,
    engine: _Engine,
    conds: Sequence[ColumnElement[bool]],
    want: int,
    count: bool,
) -> _Walk:
    """SQLite, `from:address` and a common text, the sender having more than FEW_ROWS emails:
    that sender's emails newest first (the (from_email, date, id) index of 0018, in result
    order), the text checked on growing batches of them until the page is full and one more
    match shows whether another page exists — never every match of the text, nor every
    email of the sender. The count is then a lower bound ("21+": the Slack search shows no
    count when capped, only whether there is a next page); exact when the sender's emails run
    out first. Streaming the text's matches instead read thousands of them at 1,000,000
    messages (58 ms CPU, 110 grouped)."""
    stop = want + 1 if count else want
    found: list[int] = []
    last: tuple[Any, int] | None = None  # (date, id) of the last email read: the walk's key
    batch = max(2 * stop, 50)
    while True:
        order = (Message.date.desc(), Message.id.desc())
        after: list[ColumnElement[bool]] = []
        if last is not None:
            d, i = last
            # Keyset: strictly older than the last email read, in (date DESC, id DESC) order.
            # SQLite sorts a NULL date last in DESC order.
            after = [
                or_(
                    Message.date < d,
                    Message.date.is_(None),
                    and_(Message.date == d, Message.id < i),
                )
                if d is not None
                else and_(Message.date.is_(None), Message.id < i)
            ]
        rows = session.execute(
            select(Message.date, Message.id).where(*conds, *after).order_by(*order).limit(batch)
        ).all()
        if not rows:
            break
        last = (rows[-1][0], rows[-1][1])
        hits = engine.matching(session, [r[1] for r in rows])
        found.extend(r[1] for r in rows if r[1] in hits)
        if len(found) >= stop or len(rows) < batch:
            break
        batch *= 2
    ids, n = found[:want], min(len(found), COUNT_CAP)
    if len(found) < stop:  # the sender's emails ran out: every match is known
        return _Walk(ids, n, len(found) > COUNT_CAP, every=found)
    return _Walk(ids, n, True)


def _grouped(
    session: Session,
    engine: _Engine,
    conds: list[ColumnElement[bool]],
    q: SearchQuery,
    limit: int,
    offset: int,
    views: Sequence[ColumnElement[bool]] = (),
) -> SearchPage:
    """One hit per conversation. The walk is the per-email one, asked for more emails until
    it yields one conversation past the page (or has no more, or read GROUP_SCAN_CAP)."""
    need = offset + limit + 1  # one past the page: whether a next page exists is known
    n = max(2 * need, 50)
    while True:
        w = _walk(session, engine, conds, n, count=False, views=views)
        ids = w.every if w.every is not None else w.ids
        conv_of = _conversations(session, ids)
        firsts: dict[int, int] = {}  # conversation -> its newest matching email
        for i in ids:
            firsts.setdefault(conv_of[i], i)
        exhausted = w.every is not None or len(w.ids) < n
        if exhausted or len(firsts) >= need or n >= GROUP_SCAN_CAP:
            break
        n = min(4 * n, GROUP_SCAN_CAP)
    page = list(firsts.items())[offset : offset + limit]
    page_convs = [c for c, _i in page]
    if w.every is not None:
        counts: dict[int, int] = {}
        for i in w.every:
            counts[conv_of[i]] = counts.get(conv_of[i], 0) + 1
        total, capped, partial = min(len(firsts), COUNT_CAP), len(firsts) > COUNT_CAP, False
    else:
        counts = _match_counts(session, engine, conds, page_convs, w)
        partial = w.partial or (not exhausted and len(firsts) < need)
        if exhausted and not w.capped:
            total, capped = len(firsts), False
        else:
            # A lower bound: the conversations seen, at least one past the page when there
            # are more (enough for "Next"; the modal and /inbox show no count when capped).
            # Counting further would read matches no page shows.
            total, capped = min(len(firsts), COUNT_CAP), True
    found = _page(session, engine, [i for _c, i in page], total, capped, partial, q.errors)
    for hit in found.hits:
        hit.matches = max(1, counts.get(hit.conversation_id, 1))
    return found


def _view_rows(
    session: Session,
    views: Sequence[ColumnElement[bool]],
    conds: Sequence[ColumnElement[bool]],
    n: int,
) -> list[int]:
    """Up to `n` ids of emails passing `conds` in conversations passing `views`, read from the
    conversation side: the views' partial index, then each one's emails by the conversation
    index (`CROSS JOIN`: SQLite keeps that order). Cost follows the view's size, not the
    mail's."""
    # The view's own row checks would make PostgreSQL hash the whole view a second time
    # (34,000 conversations at 1,000,000 messages): the join already holds them.
    rest = [c for c in conds if not getattr(c, "mailroom_view_check", False)]
    stmt = (
        select(Message.id)
        .select_from(Conversation)
        .join(Message, Message.conversation_id == Conversation.id)
        .where(*views, *rest)
        .limit(n)
    )
    return list(session.scalars(stmt))


def _conversations(session: Session, ids: Sequence[int]) -> dict[int, int]:
    if not ids:
        return {}
    rows = session.execute(
        select(Message.id, Message.conversation_id).where(one_of(session, Message.id, ids))
    )
    return {r[0]: r[1] for r in rows}


def _match_counts(
    session: Session,
    engine: _Engine,
    conds: Sequence[ColumnElement[bool]],
    conv_ids: Sequence[int],
    walk: _Walk | None = None,
) -> dict[int, int]:
    """How many emails of each of a page's conversations match: the conversations' own
    emails (by the conversation index) checked row by row, never every match of the text."""
    if not conv_ids:
        return {}
    in_page = [Message.conversation_id.in_(list(conv_ids)), *conds]
    if engine.positive is None or engine.pg:
        checks: list[ColumnElement[bool]] = []
        if engine.positive is not None:
            # The function form: a check on each row, not a GIN scan of a common word.
            checks = [engine.row_check(engine.positive), *engine.subject]
        rows = session.execute(
            select(Message.conversation_id, func.count())
            .where(*in_page, *checks)
            .group_by(Message.conversation_id)
        )
        return {r[0]: r[1] for r in rows}
    pairs = session.execute(select(Message.id, Message.conversation_id).where(*in_page)).all()
    # SQLite: the streamed walk already knows which ids of the range it read match; FTS5
    # seeks (slow for a prefix: ~1 ms each under load) only for the older ids.
    low = walk.known_from if walk is not None else None
    hits = set(walk.known) if walk is not None and low is not None else set()
    unknown = [p[0] for p in pairs if low is None or p[0] < low]
    hits |= engine.matching(session, unknown)
    counts: dict[int, int] = {}
    for i, c in pairs:
        if i in hits:
            counts[c] = counts.get(c, 0) + 1
    return counts


def _capped_count(session: Session, conds: Sequence[ColumnElement[bool]]) -> tuple[int, bool]:
    inner = select(Message.id).where(*conds).limit(COUNT_CAP + 1).subquery()
    n = session.scalar(select(func.count()).select_from(inner)) or 0
    return min(n, COUNT_CAP), n > COUNT_CAP


def _stream(
    session: Session,
    engine: _Engine,
    conds: Sequence[ColumnElement[bool]],
    first: list[int],
    want: int,
    count_past: bool = True,
) -> tuple[list[int], int, bool, set[int], int]:
    """SQLite, a text with more than CANDIDATE_LIMIT matches: the newest `want` matching ids,
    the number of matches found (more than COUNT_CAP when there are), whether the search
    stopped at SCAN_CAP text matches, and the matches read with the lowest id read (every
    match passing `conds` from that id up is among them). `count_past=False`: stop at `want` matches (no count
    wanted: a grouped page).

    FTS5 streams matches by rowid cheaply, so read them highest rowid first in doubling
    batches (`first` is the candidate fetch) and filter each batch in one query, until there
    are enough. Rowid order is only roughly date order (history imports add old mail with new
    ids), so then fetch, by the (date, id) index, the unread rows newer than the `want`-th
    match so far, and check the text on those few one by one."""
    pool: list[int] = []
    batch, scanned, partial = first, 0, False
    asked = len(first)
    while True:
        scanned += len(batch)
        pool.extend(_filter(session, batch, conds))
        exhausted = len(batch) < asked
        if exhausted or (len(pool) >= want and (len(pool) > COUNT_CAP or not count_past)):
            break
        if scanned >= SCAN_CAP:
            partial = True
            break
        asked = min(2 * asked, SCAN_CAP - scanned)
        batch = engine.fts_newest(session, asked, below=min(batch))
    newest = _newest(session, pool, want)
    count = len(pool)
    if not exhausted and newest:
        # Rows not read yet (lower rowids) that are newer than the want-th match so far.
        d = newest[-1][0]
        cutoff = Message.date >= d if d is not None else literal_column("1") == 1
        late = session.scalars(
            # `id + 0`: keeps SQLite on the date index (the id range is most of the table).
            select(Message.id).where(cutoff, (Message.id + 0) < min(batch), *conds)
        ).all()
        hits = engine.matching(session, late)
        if hits:
            count += len(hits)
            newest = _newest(session, [*(j for _d, j in newest), *hits], want)
    # Every text match with an id from the lowest one read up passed through _filter.
    low = 0 if exhausted else min(batch)
    return [j for _d, j in newest], count, partial, set(pool), low


def _filter(
    session: Session, ids: Sequence[int], conds: Sequence[ColumnElement[bool]]
) -> list[int]:
    """The ids (a batch of text matches) that pass `conds`. A dense batch (most ids in its
    range match, as for a common word) is filtered by one scan of its id range, about 3 times
    cheaper than a lookup per id (measured); a sparse one by the lookups."""
    if not ids:
        return []
    lo, hi = min(ids), max(ids)
    if 2 * len(ids) < hi - lo + 1:
        return list(
            session.scalars(select(Message.id).where(one_of(session, Message.id, ids), *conds))
        )
    keep = set(ids)
    rows = session.scalars(select(Message.id).where(Message.id.between(lo, hi), *conds))
    return [i for i in rows if i in keep]


def _newest(session: Session, ids: Sequence[int], n: int) -> list[tuple[datetime | None, int]]:
    """The newest n of `ids` with their dates, in `ORDER BY date DESC, id DESC` order."""
    if not ids:
        return []
    rows = session.execute(
        select(Message.date, Message.id)
        .where(one_of(session, Message.id, ids))
        .order_by(Message.date.desc(), Message.id.desc())
        .limit(n)
    )
    return [(r[0], r[1]) for r in rows]


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


def search_notes(
    session: Session,
    query: str | SearchQuery,
    *,
    visible_account_ids: Collection[int],
    limit: int = 5,
) -> list[ConversationNote]:
    """Internal notes (never in the mail index) holding every word of the query's text,
    newest first, on conversations of the accounts this person may see. Notes are few and
    short, so a substring test is enough."""
    q = parse_query(query) if isinstance(query, str) else query
    words = [w.lower() for t in q.terms if not t.negated for w in term_words(t)]
    if not words or not visible_account_ids:
        return []
    return list(
        session.scalars(
            select(ConversationNote)
            .join(Conversation, Conversation.id == ConversationNote.conversation_id)
            .where(
                Conversation.account_id.in_(list(visible_account_ids)),
                *[func.lower(ConversationNote.text).contains(w, autoescape=True) for w in words],
            )
            .order_by(ConversationNote.created_at.desc(), ConversationNote.id.desc())
            .limit(limit)
        )
    )


def latest_notes(
    session: Session, conversation_ids: Collection[int]
) -> dict[int, ConversationNote]:
    """The newest internal note of each conversation (for result lines and timelines)."""
    out: dict[int, ConversationNote] = {}
    if not conversation_ids:
        return out
    for note in session.scalars(
        select(ConversationNote)
        .where(ConversationNote.conversation_id.in_(list(conversation_ids)))
        .order_by(ConversationNote.created_at, ConversationNote.id)
    ):
        out[note.conversation_id] = note
    return out


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
    "latest_notes",
    "search",
    "search_notes",
]
