"""SQLite's FTS5 index (external content, migration 0004) stays exact through updates and
deletes, including of rows it never held."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, text, update
from sqlalchemy.orm import Session

from bot.store import migrate
from bot.store.db import make_engine, make_session_factory, session_scope
from bot.store.ingest import ingest_message
from bot.store.models import Conversation, Message
from tests.store.helpers import make_account, raw_mail


def _hits(s: Session, term: str) -> list[int]:
    rows = s.execute(
        text("SELECT rowid FROM message_fts WHERE message_fts MATCH :t"), {"t": term}
    ).all()
    return sorted(r[0] for r in rows)


def test_updates_and_deletes_keep_the_index_exact(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fts.db'}")
    migrate.upgrade(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        account = make_account(s)
        ids = [
            ingest_message(
                s, account, raw_mail(f"m{n}@x", f"zebra {n}", body=f"body {n}")
            ).message_pk
            for n in range(3)
        ]
        conv = s.get_one(Conversation, s.get_one(Message, ids[0]).conversation_id)
        # A row the index never saw (inserted around ingest, as some tests and loads do).
        stray = Message(
            account_id=account.id,
            conversation_id=conv.id,
            message_id="stray@x",
            subject="zebra stray",
            body_text="never indexed",
        )
        s.add(stray)
        s.flush()
        stray_id = stray.id
    with session_scope(factory) as s:
        assert _hits(s, "zebra") == ids  # the stray row is not in the index
        s.execute(delete(Message).where(Message.id == stray_id))  # must not touch the index
        s.execute(update(Message).where(Message.id == ids[0]).values(subject="okapi 0"))
        s.execute(delete(Message).where(Message.id == ids[1]))
    with session_scope(factory) as s:
        assert _hits(s, "zebra") == [ids[2]]
        assert _hits(s, "okapi") == [ids[0]]
        # FTS5's own check of the index against its content (every message is indexed now).
        s.execute(text("INSERT INTO message_fts(message_fts) VALUES ('integrity-check')"))
        snippet = s.execute(
            text(
                "SELECT snippet(message_fts, 0, '[', ']', '…', 4) FROM message_fts "
                "WHERE message_fts MATCH 'okapi'"
            )
        ).scalar_one()
        assert snippet == "[okapi] 0"  # read from the messages through the view
    engine.dispose()
