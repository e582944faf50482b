"""Rows encoded away from the session (bot/store/rows.py) store exactly what SQLAlchemy's own
parameter binding stores, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Float, MetaData, Table, func, insert, select
from sqlalchemy.orm import Session

from bot.devtools.mailgen import MailGen
from bot.mail.parse import parse_message
from bot.store.models import (
    Attachment,
    Conversation,
    Direction,
    Message,
    MessageRaw,
    MessageRef,
)
from bot.store.rows import (
    ATTACHMENT_COLUMNS,
    PARSED_COLUMNS,
    STORE_COLUMNS,
    RowCodec,
    binary_copy_types,
    dialect_key,
    insert_rows,
    plain_attachments,
    plain_values,
)
from tests.store.helpers import make_account

CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
FIXTURES = Path(__file__).resolve().parents[1] / "mail" / "fixtures"

ODD = [
    b"",
    b"no headers at all",
    b"From: \xff\xfe <bad@x>\r\nSubject: latin \xe9 \x00 nul\r\nMessage-ID: <a@b>\r\n\r\nbody \x00",
    'Subject: =?utf-8?B?8J+Ygg==?= snowman \u2603\r\nTo: "Q, A" <q@x>, r@y\r\n'
    "Cc: undisclosed-recipients:;\r\nDate: Tue, 02 Jan 2024 23:59:59 -1200\r\n\r\n"
    "caf\u00e9\r\n".encode(),
    b"Content-Type: multipart/mixed; boundary=B\r\nMessage-ID: <att@x>\r\n\r\n--B\r\n"
    b"Content-Type: text/plain\r\n\r\nsee file\r\n--B\r\nContent-Type: application/pdf; "
    b'name="r\xc3\xa9sum\xc3\xa9.pdf"\r\nContent-Disposition: attachment\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--B\r\nContent-Type: image/png\r\n"
    b"Content-ID: <img1>\r\nContent-Disposition: inline\r\n\r\nPNG\r\n--B--\r\n",
]


def _raws() -> list[bytes]:
    raws = list(ODD) + list(MailGen(seed=11).messages(40))
    raws += [p.read_bytes() for p in sorted(FIXTURES.rglob("*.eml"))]
    if CORPORA.is_dir():  # the shared corpora, when the checkout sits next to them
        raws += [p.read_bytes() for p in sorted(CORPORA.rglob("*.eml"))[:120]]
    return raws


def _conversation(session: Session, account_id: int) -> int:
    conv = Conversation(account_id=account_id, subject="", subject_key="")
    session.add(conv)
    session.flush()
    return conv.id


def _read(session: Session, account_id: int) -> list[tuple[Any, ...]]:
    columns = [getattr(Message, c) for c in (*PARSED_COLUMNS, *STORE_COLUMNS[2:])]
    rows = session.execute(
        select(*columns).where(Message.account_id == account_id).order_by(Message.id)
    ).all()
    return [tuple(r) for r in rows]


def _read_attachments(session: Session, account_id: int) -> list[tuple[Any, ...]]:
    rows = session.execute(
        select(*[getattr(Attachment, c) for c in ATTACHMENT_COLUMNS])
        .join(Message, Message.id == Attachment.message_id)
        .where(Message.account_id == account_id)
        .order_by(Message.id, Attachment.part_index)
    ).all()
    return [tuple(r) for r in rows]


def test_encoded_rows_store_what_sqlalchemy_binding_stores(session: Session) -> None:
    raws = _raws()
    fast, slow = make_account(session, "fast@ours.example"), make_account(session, "slow@x.ex")
    fast_conv, slow_conv = _conversation(session, fast.id), _conversation(session, slow.id)
    codec = RowCodec.for_key(dialect_key(session.get_bind().dialect))
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    fast_rows, slow_rows, fast_att, slow_att = [], [], [], []
    for n, raw in enumerate(raws):
        p = parse_message(raw)
        enc = codec.encode(p, len(raw))
        mid = f"{n}-{enc.message_id}"  # unique per account even when the corpus repeats one
        flags = (n % 2 == 0, n % 3 == 0, Direction.OUTBOUND if n % 5 == 0 else Direction.INBOUND)
        store: dict[str, Any] = {
            "message_id": mid,
            "provider_id": f"p{n}" if n % 4 else None,
            "provider_thread_id": None,
            "date": p.date or when,
            "received_at": when,
            "is_read": flags[0],
            "is_flagged": flags[1],
            "direction": flags[2],
            "sent_by": "U123" if n % 7 == 0 else None,
            "parse_defects": [*enc.defects, "extra"],
            "truncated": n % 6 == 0,
            "deleted": False,
        }
        fast_rows.append(
            (
                fast.id,
                fast_conv,
                *(codec.bind(c, store[c]) for c in STORE_COLUMNS[2:]),
                *enc.values,
            )
        )
        slow_rows.append(
            {
                "account_id": slow.id,
                "conversation_id": slow_conv,
                **store,
                **dict(zip(PARSED_COLUMNS, plain_values(p, len(raw)), strict=True)),
            }
        )
        fast_att.append(enc.attachments)
        slow_att.append(plain_attachments(p))
    insert_rows(session, Message, STORE_COLUMNS + PARSED_COLUMNS, fast_rows)
    session.execute(insert(Message), slow_rows)
    fast_ids = session.scalars(
        select(Message.id).where(Message.account_id == fast.id).order_by(Message.id)
    ).all()
    slow_ids = session.scalars(
        select(Message.id).where(Message.account_id == slow.id).order_by(Message.id)
    ).all()
    insert_rows(
        session,
        Attachment,
        ("message_id", *ATTACHMENT_COLUMNS),
        [(pk, *a) for pk, atts in zip(fast_ids, fast_att, strict=True) for a in atts],
    )
    session.execute(
        insert(Attachment),
        [
            {"message_id": pk, **dict(zip(ATTACHMENT_COLUMNS, a, strict=True))}
            for pk, atts in zip(slow_ids, slow_att, strict=True)
            for a in atts
        ],
    )
    raw_bind = codec.bind_to(MessageRaw, "raw", b"\x00\xffraw")
    insert_rows(session, MessageRaw, ("message_id", "raw"), [(fast_ids[0], raw_bind)])
    session.expire_all()

    got, want = _read(session, fast.id), _read(session, slow.id)
    assert len(got) == len(raws)
    assert got == want
    assert any(r[PARSED_COLUMNS.index("has_attachments")] for r in got)  # the sample has some
    assert _read_attachments(session, fast.id) == _read_attachments(session, slow.id)
    assert len(_read_attachments(session, fast.id)) >= 2
    assert session.get_one(MessageRaw, fast_ids[0]).raw == b"\x00\xffraw"


def test_the_worker_codec_matches_the_live_dialects_processors(session: Session) -> None:
    """The codec rebuilds the dialect from its name (the parse worker has no engine); the live
    engine's processors must agree on every message column."""
    dialect = session.get_bind().dialect
    codec = RowCodec.for_key(dialect_key(dialect))
    live = RowCodec(dialect)
    sample: dict[str, Any] = {
        "message_id_synthetic": True,
        "in_reply_to": ["a@b", "caf\u00e9@x"],
        "to": [{"name": "Q, A", "email": "q@x"}],
        "date": datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "direction": Direction.OUTBOUND,
        "parse_defects": [],
        "size": 12,
    }
    for column, value in sample.items():
        a, b = codec.bind(column, value), live.bind(column, value)
        assert _plain(a) == _plain(b), column


def _plain(value: Any) -> Any:
    return ("jsonb", value.obj) if hasattr(value, "obj") else value


def test_insert_rows_rejects_a_column_set_that_is_not_the_statements() -> None:
    from bot.store.rows import _compile

    dialect = RowCodec.for_key("sqlite+pysqlite")._dialect
    with pytest.raises(Exception):  # noqa: B017 - SQLAlchemy names it CompileError
        _compile(dialect, Message.__table__, ("account_id", "no_such_column"))  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["sqlite+pysqlite", "postgresql+psycopg"])
def test_bind_flag_is_bind_once_per_value(key: str) -> None:

    codec = RowCodec.for_key(key)
    cases: list[tuple[str, bool | Direction]] = [
        ("is_read", True),
        ("is_read", False),
        ("deleted", False),
    ]
    cases += [("direction", d) for d in Direction]
    for column, value in cases:
        assert codec.bind_flag(column, value) == codec.bind(column, value)
        assert codec.bind_flag(column, value) is codec.bind_flag(column, value)
    assert codec.bind_flag("direction", Direction.INBOUND) != codec.bind_flag(
        "direction", Direction.OUTBOUND
    )


@pytest.mark.parametrize("copy_min", [1, 10**9], ids=["copy", "executemany"])
def test_bulk_rows_by_copy_or_executemany_store_the_same(
    session: Session, monkeypatch: pytest.MonkeyPatch, copy_min: int
) -> None:
    """PostgreSQL takes big batches by COPY (bot/store/rows.py): the same bytes, JSON, enums,
    NULLs and awkward text as the executemany; a broken constraint is SQLAlchemy's
    IntegrityError, and the savepoint around it leaves the session usable (ingest's fallback)."""
    from sqlalchemy.exc import IntegrityError

    import bot.store.rows as rows_module

    monkeypatch.setattr(rows_module, "COPY_MIN_ROWS", copy_min)
    test_encoded_rows_store_what_sqlalchemy_binding_stores(session)
    account = make_account(session, "copy@ours.example")
    conv = _conversation(session, account.id)
    codec = RowCodec.for_key(dialect_key(session.get_bind().dialect))
    awkward = ["tab\there", "back\\slash", "new\nline", "\\N", "quote'\"", "ü €", "", "a\rb"]
    rows, want = [], []
    for n in range(25):
        text = awkward[n % len(awkward)]
        p = parse_message(
            f"From: A <a{n}@x.example>\r\nSubject: s{n} {text.splitlines()[0] if text else ''}\r\n"
            f"Message-ID: <copy{n}@x>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"body {text}\r\n".encode()
        )
        enc = codec.encode(p, 10)
        fields: list[tuple[str, Any]] = [
            ("message_id", f"copy{n}@x"), ("provider_id", None), ("provider_thread_id", None),
            ("date", datetime(2024, 1, 1, tzinfo=UTC)), ("received_at", datetime(2024, 1, 2, tzinfo=UTC)),
            ("is_read", False), ("is_flagged", True), ("direction", Direction.INBOUND),
            ("sent_by", None), ("parse_defects", []), ("truncated", False), ("deleted", False),
        ]  # fmt: skip
        store = [codec.bind(c, v) for c, v in fields]
        rows.append((account.id, conv, *store, *enc.values))
        want.append((p.subject, p.text, True))
    insert_rows(session, Message, STORE_COLUMNS + PARSED_COLUMNS, rows)
    ids = session.scalars(
        select(Message.id).where(Message.account_id == account.id).order_by(Message.id)
    ).all()
    raw = [bytes(range(256)) * (n + 1) + b"\\N\t\n" for n in range(len(ids))]
    insert_rows(
        session,
        MessageRaw,
        ("message_id", "raw"),
        [(i, codec.bind_to(MessageRaw, "raw", r)) for i, r in zip(ids, raw, strict=True)],
    )
    session.expire_all()
    stored = session.scalars(select(Message).where(Message.id.in_(ids)).order_by(Message.id))
    assert [(m.subject, m.body_text, m.is_flagged) for m in stored] == want
    assert [session.get_one(MessageRaw, i).raw for i in ids] == raw
    with pytest.raises(IntegrityError), session.begin_nested():
        insert_rows(session, Message, STORE_COLUMNS + PARSED_COLUMNS, rows)  # duplicates
    assert (
        session.scalar(
            select(func.count()).select_from(Message).where(Message.account_id == account.id)
        )
        == 25
    )


def test_bulk_tables_copy_in_binary_format_on_postgresql() -> None:
    """The raw mail, the message rows, references and attachments go in by binary COPY (a
    bytea in text format is hex: twice the bytes to write and parse back); the values stored
    that way are checked above. A type without a plain binary form keeps the text format."""
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    pg = PGDialect_psycopg()
    tables: list[tuple[Any, tuple[str, ...]]] = [
        (MessageRaw, ("message_id", "raw")),
        (MessageRef, ("account_id", "message_id", "ref_id")),
        (Attachment, ("message_id", *ATTACHMENT_COLUMNS)),
        (Message, ("id", *STORE_COLUMNS, *PARSED_COLUMNS)),
    ]
    for model, columns in tables:
        types = binary_copy_types(pg, model.__table__, columns)
        assert types is not None and len(types) == len(columns), model
    assert binary_copy_types(pg, MessageRaw.__table__, ("message_id", "raw")) == ["int4", "bytea"]
    assert binary_copy_types(SQLiteDialect_pysqlite(), MessageRaw.__table__, ("raw",)) is None
    # A column type outside the plain ones keeps the text format.
    odd = Table("odd", MetaData(), Column("x", Float))
    assert binary_copy_types(pg, odd, ("x",)) is None
