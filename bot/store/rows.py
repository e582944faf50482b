"""Rows of new mail, encoded for the database driver away from the session.

A history sync stores thousands of messages a minute. For each row SQLAlchemy runs every
column's bind processor (JSON encoding, datetime formatting, enum names, booleans) and builds a
parameter dict, and the store first cleans every parsed field: together as much of the storing
process's time as the inserts themselves. This module does that work for the part of a row that
depends only on the parsed message, as tuples of driver-ready values, so the parse worker
(bot/sync/parse_pool.py) can do it beside the parsing; the store adds the few values that depend
on the account and the thread and hands the rows to the driver in one executemany
(`insert_rows`).

The values are exactly what SQLAlchemy itself would bind: each column's own bind processor for
the dialect. `tests/store/test_rows.py` stores the same mail both ways on SQLite and PostgreSQL
and compares what was stored.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Insert, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.mail.thread import ThreadInput, link_ids, normalize_id
from bot.mail.types import Address, ParsedMessage
from bot.store.models import Attachment, Message

# The message columns that depend only on the parsed message (and its size), in this order.
PARSED_COLUMNS = (
    "message_id_synthetic",
    "in_reply_to",
    "references",
    "subject",
    "from_email",
    "from_name",
    "to",
    "cc",
    "bcc",
    "reply_to",
    "snippet",
    "body_text",
    "body_html",
    "size",
    "has_attachments",
)
# The rest: the account, the thread, the provider's view of the message, in this order.
STORE_COLUMNS = (
    "account_id",
    "conversation_id",
    "message_id",
    "provider_id",
    "provider_thread_id",
    "date",
    "received_at",
    "is_read",
    "is_flagged",
    "direction",
    "sent_by",
    "parse_defects",
    "truncated",
    "deleted",
)
# Lookups of a message's links stay bounded (IN lists, OR chains): past this many, the oldest
# References are dropped from the lookup (the newest ones already connect to them); all are
# still stored in message_refs.
MAX_LINK_IDS = 60
# message_refs rows per message, at most: the first id (the root) and the newest ones. A 2 MB
# References header once made 200,000 rows (security-review #1).
MAX_STORED_REFS = 1 + 10 + 100  # the root, In-Reply-To's ids, References' last 100
ATTACHMENT_COLUMNS = ("filename", "content_type", "size", "content_id", "inline", "part_index")


def clean(value: str | None, limit: int | None = None) -> str:
    """Text the databases accept: PostgreSQL text cannot hold NUL, psycopg cannot encode lone
    surrogates; cut to the column's length."""
    if not value:
        return ""
    s = value.replace("\x00", "")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "replace").decode("utf-8")
    return s[:limit] if limit is not None else s


def _addr(a: Address) -> dict[str, str]:
    return {"name": clean(a.name, 300), "email": clean(a.email, 320)}


def dialect_key(dialect: Dialect) -> str:
    """A dialect's name as a URL scheme ("sqlite+pysqlite"): enough to rebuild it elsewhere."""
    return f"{dialect.name}+{dialect.driver}"


@dataclass(frozen=True)
class MailFacts:
    """What the store threads and links a message on, beyond its rows: all it needs of the
    parsed message, so a batch parsed in the worker crosses over without it."""

    date: datetime | None  # the Date header, aware; None if missing or unreadable
    subject: str  # as parsed (the subject fallback normalises it)
    has_thread_headers: bool  # In-Reply-To or References named any id
    from_email: str | None  # None: no From
    first_recipient: str | None  # the first To/Cc address (outbound mail links by it)

    @classmethod
    def of(cls, p: ParsedMessage) -> MailFacts:
        return cls(
            date=p.date,
            subject=p.subject,
            has_thread_headers=bool(p.in_reply_to or p.references),
            from_email=p.from_.email if p.from_ is not None else None,
            first_recipient=next((a.email for a in (*p.to, *p.cc) if a.email), None),
        )


@dataclass(frozen=True)
class EncodedParse:
    """The parsed part of a message's rows, driver-ready for one dialect (`dialect`), with the
    few plain values the store reads back (counters, facts)."""

    dialect: str
    message_id: str  # cleaned and normalised, as stored
    values: tuple[Any, ...]  # PARSED_COLUMNS, through their bind processors
    date: Any  # the parsed Date through its processor; None if there was none
    subject: str  # cleaned
    has_attachments: bool
    defects: tuple[str, ...]  # cleaned parse defects (the store may add its own)
    defects_bound: Any  # the same, through the parse_defects processor
    attachments: tuple[tuple[Any, ...], ...]  # ATTACHMENT_COLUMNS, through their processors
    links: tuple[str, ...]  # ids this message points at, to look up (capped: MAX_LINK_IDS)
    refs: tuple[str, ...]  # the same, for message_refs (capped: MAX_STORED_REFS)
    facts: MailFacts


Processor = Callable[[Any], Any] | None
_MISSING = object()


def _processor(table: Table, column: str, dialect: Dialect) -> Processor:
    type_ = table.c[column].type
    proc: Processor = type_.dialect_impl(dialect).bind_processor(dialect)
    return proc


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


class RowCodec:
    """The bind processors of the message and attachment columns for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.key = dialect_key(dialect)
        self._dialect = dialect
        self._other: dict[tuple[str, str], Processor] = {}
        messages, attachments = _table(Message), _table(Attachment)
        self._message = {c.name: _processor(messages, c.name, dialect) for c in messages.columns}
        # Most address and id lists are empty: bind [] once per column, not once per row.
        self._empty = {
            c.name: proc([])
            for c in messages.columns
            if isinstance(c.type, JSON) and (proc := self._message[c.name]) is not None
        }
        self._attachment = [_processor(attachments, c, dialect) for c in ATTACHMENT_COLUMNS]
        self._flags: dict[tuple[str, Any], Any] = {}

    @staticmethod
    @functools.cache
    def for_key(key: str) -> RowCodec:
        """The codec for a dialect named by `dialect_key`. The parse worker has no engine, and
        the store uses the same codec so both encode alike: the dialect class alone decides
        these columns' bind processors (the tests compare with SQLAlchemy's own binding)."""
        return RowCodec(make_url(f"{key}://").get_dialect()())

    @staticmethod
    def for_session(session: Session) -> RowCodec:
        return RowCodec.for_key(dialect_key(session.get_bind().dialect))

    def bind(self, column: str, value: Any) -> Any:
        """One message column's value as the driver gets it."""
        if value == [] and column in self._empty:
            return self._empty[column]
        proc = self._message[column]
        return value if proc is None or value is None else proc(value)

    def bind_flag(self, column: str, value: Any) -> Any:
        """`bind` for a column of few values (a boolean, an enum): each bound once."""
        key = (column, value)
        found = self._flags.get(key, _MISSING)
        if found is _MISSING:
            found = self._flags[key] = self.bind(column, value)
        return found

    def bind_to(self, model: type[Any], column: str, value: Any) -> Any:
        """A column of another table (the raw bytes, a location's flags)."""
        key = (model.__name__, column)
        if key not in self._other:
            self._other[key] = _processor(_table(model), column, self._dialect)
        proc = self._other[key]
        return value if proc is None or value is None else proc(value)

    def encode(self, p: ParsedMessage, raw_size: int) -> EncodedParse:
        values = plain_values(p, raw_size)
        defects = tuple(clean(d, 500) for d in p.defects)
        attachments = tuple(
            tuple(
                v if proc is None or v is None else proc(v)
                for proc, v in zip(self._attachment, a, strict=True)
            )
            for a in plain_attachments(p)
        )
        message_id = clean(normalize_id(p.message_id), 998)
        links, refs = link_values(p, message_id)
        return EncodedParse(
            dialect=self.key,
            message_id=message_id,
            values=tuple(self.bind(c, v) for c, v in zip(PARSED_COLUMNS, values, strict=True)),
            date=self.bind("date", p.date),
            subject=values[PARSED_COLUMNS.index("subject")],
            has_attachments=values[PARSED_COLUMNS.index("has_attachments")],
            defects=defects,
            defects_bound=self.bind("parse_defects", list(defects)),
            attachments=attachments,
            links=links,
            refs=refs,
            facts=MailFacts.of(p),
        )


def link_values(p: ParsedMessage, message_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(links to look up, capped; all of them, for message_refs): the ids In-Reply-To and
    References name, normalised, cleaned, de-duplicated, in order, without the message's own."""
    all_ids = [clean(i, 998) for i in link_ids(ThreadInput.of(p, "", message_id))]
    refs = tuple(i for i in dict.fromkeys(all_ids) if i and i != message_id)
    if len(refs) > MAX_STORED_REFS:
        # The parser caps References already (bot/mail/parse.py); this holds for any caller.
        refs = refs[:1] + refs[-(MAX_STORED_REFS - 1) :]
    links = refs
    if len(links) > MAX_LINK_IDS:
        links = links[: MAX_LINK_IDS // 2] + links[-MAX_LINK_IDS // 2 :]
    return links, refs


def plain_values(p: ParsedMessage, raw_size: int) -> tuple[Any, ...]:
    """The PARSED_COLUMNS of a message as Python values, cleaned for the databases."""
    return (
        p.message_id_synthetic,
        [clean(i, 998) for i in p.in_reply_to],
        [clean(i, 998) for i in p.references],
        clean(p.subject),
        clean(p.from_.email.lower(), 320) if p.from_ else "",
        clean(p.from_.name, 300) if p.from_ else "",
        [_addr(a) for a in p.to],
        [_addr(a) for a in p.cc],
        [_addr(a) for a in p.bcc],
        [_addr(a) for a in p.reply_to],
        clean(p.snippet),
        clean(p.text),
        clean(p.html) if p.html is not None else None,
        p.size or raw_size,
        any(not a.inline for a in p.attachments),
    )


def plain_attachments(p: ParsedMessage) -> list[tuple[Any, ...]]:
    """ATTACHMENT_COLUMNS of each attachment, cleaned."""
    return [
        (
            clean(a.filename, 500),
            clean(a.content_type, 200) or "application/octet-stream",
            a.size,
            clean(a.content_id, 500) or None,
            a.inline,
            a.part_index,
        )
        for a in p.attachments
    ]


def encode_all(
    parsed: Sequence[ParsedMessage], sizes: Sequence[int], key: str
) -> list[EncodedParse]:
    codec = RowCodec.for_key(key)
    return [codec.encode(p, n) for p, n in zip(parsed, sizes, strict=True)]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # Rows come in the caller's column order; the driver wants the statement's.
    shape: Callable[[tuple[Any, ...]], Any]


_compiled: dict[tuple[str, str, tuple[str, ...], bool], _Compiled] = {}


def _insert(dialect: Dialect, table: Table, skip_conflicts: bool) -> Insert:
    if not skip_conflicts:
        return insert(table)
    # Both dialects spell it ON CONFLICT DO NOTHING; each has its own construct for it.
    if dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"no INSERT ... ON CONFLICT DO NOTHING for {dialect.name}")


def _compile(
    dialect: Dialect, table: Table, columns: tuple[str, ...], skip_conflicts: bool = False
) -> _Compiled:
    key = (dialect_key(dialect), table.name, columns, skip_conflicts)
    found = _compiled.get(key)
    if found is not None:
        return found
    compiled = _insert(dialect, table, skip_conflicts).compile(
        dialect=dialect, column_keys=list(columns)
    )
    if compiled.positional:
        names = list(compiled.positiontup or ())
        if sorted(names) != sorted(columns):
            raise RuntimeError(f"insert into {table.name} binds {names}, not {columns}")
        order = [columns.index(n) for n in names]
        if order == list(range(len(columns))):
            shape: Callable[[tuple[Any, ...]], Any] = tuple
        else:
            # Two or more columns always (a table row): itemgetter then returns a tuple.
            shape = operator.itemgetter(*order)
    else:
        escaped = compiled.escaped_bind_names
        keys = [escaped.get(c, c) for c in columns]

        def shape(row: tuple[Any, ...]) -> dict[str, Any]:
            return dict(zip(keys, row, strict=True))

    found = _Compiled(compiled.string, shape)
    _compiled[key] = found
    return found


def insert_rows(
    session: Session,
    model: type[Any],
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    skip_conflicts: bool = False,
) -> None:
    """INSERT driver-ready `rows` (values in `columns` order, already through the columns' bind
    processors) into `model`'s table with one executemany, skipping SQLAlchemy's per-row
    parameter processing. `skip_conflicts`: a row that would break a unique constraint is
    left out (ON CONFLICT DO NOTHING), the rest are inserted."""
    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql" and not skip_conflicts and len(rows) >= COPY_MIN_ROWS:
        _copy_rows(conn, _table(model), columns, rows)
        return
    compiled = _compile(conn.dialect, _table(model), tuple(columns), skip_conflicts)
    shape = compiled.shape
    params = [shape(r) for r in rows] if shape is not tuple else list(rows)
    conn.exec_driver_sql(compiled.sql, params)


# PostgreSQL: from this many rows a batch goes in by COPY (one statement, rows streamed, no
# per-row bind or plan) instead of a pipelined executemany; measured on a sync's batches of
# 500 messages: message_refs 3x faster, message_raw and messages a fifth.
COPY_MIN_ROWS = 20


def _copy_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """COPY driver-ready rows into `table` (PostgreSQL, psycopg 3). The values are what the
    columns' bind processors give for an INSERT (JSON wrapped for psycopg, enum names, bytes),
    which psycopg's COPY writes with the same adapters. A constraint the rows break raises
    SQLAlchemy's IntegrityError, as the INSERT would (ingest falls back on it)."""
    import psycopg

    quote = conn.dialect.identifier_preparer.quote
    sql = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    types = binary_copy_types(conn.dialect, table, tuple(columns))
    if types is not None:
        sql += " (FORMAT BINARY)"
    dbapi = conn.connection.dbapi_connection
    assert isinstance(dbapi, psycopg.Connection)
    try:
        with dbapi.cursor() as cursor, cursor.copy(sql) as copy:
            if types is not None:
                copy.set_types(types)
            for row in rows:
                copy.write_row(row)
    except psycopg.IntegrityError as exc:
        raise IntegrityError(sql, None, exc) from exc


# Column types COPY can send in PostgreSQL's binary format as the driver-ready values are (ints,
# bytes, booleans, text), by the name psycopg dumps them with. Text format sends a bytea as
# hex, twice its size, which the client writes and the server parses back: for the raw mail,
# most of a sync's bytes. Any other type (JSON, timestamps) keeps the text format.
_BINARY_COPY = {
    "INTEGER": "int4",
    "BIGINT": "int8",
    "BYTEA": "bytea",
    "BOOLEAN": "bool",
    "JSONB": "jsonb",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}


@functools.cache
def binary_copy_types(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> list[str] | None:
    """The psycopg type names to COPY `columns` of `table` in binary format, or None when one
    of them has no plain binary form here (the text format is used)."""
    if dialect.name != "postgresql":
        return None
    names: list[str] = []
    for column in columns:
        ddl = table.c[column].type.compile(dialect=dialect).upper()
        name = _BINARY_COPY.get(ddl)
        if name is None and (ddl == "TEXT" or ddl.startswith("VARCHAR")):
            name = "text"  # varchar's binary input is text's, its length checked the same
        if name is None:
            return None
        names.append(name)
    return names
