"""The same migrations build an empty SQLite and an empty PostgreSQL database, with no drift."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from bot.store import migrate
from bot.store.db import make_engine
from bot.store.models import Base


def _check(url: str) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine)
    migrate.check(engine)  # raises if models and migrations disagree
    tables = set(inspect(engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    engine.dispose()


def test_sqlite_upgrades_to_head_without_drift(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    _check(url)
    engine = make_engine(url)
    with engine.connect() as conn:  # the FTS5 index and its update/delete triggers exist
        names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master"))}
    assert {"message_fts", "message_fts_ad", "message_fts_au"} <= names
    # New rows are indexed by ingest in one statement per batch (migration 0003).
    assert "message_fts_ai" not in names
    # The index reads its text from the messages; no second copy of every body (0004).
    assert "message_fts_source" in names and "message_fts_content" not in names


@pytest.mark.postgres
def test_postgres_upgrades_to_head_without_drift(pg_url: str) -> None:
    # pg_url is already migrated by the fixture; make a second, empty database to be sure.
    from tests.dbfixtures import PG_ADMIN_URL

    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    name = "mailroom_migrate_" + Path(pg_url).name[-10:]
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        _check(url)
        engine = make_engine(url)
        with engine.connect() as conn:
            col = conn.execute(
                text(
                    "SELECT data_type FROM information_schema.columns "
                    "WHERE table_name='messages' AND column_name='search_vector'"
                )
            ).scalar()
        engine.dispose()
        assert col == "tsvector"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_sqlite_fts_downgrades_and_upgrades_with_the_index_intact(tmp_path: Path) -> None:
    """0004 down to a self-contained FTS5 table and back up: the same messages are found."""
    from alembic import command

    from bot.store.db import make_session_factory, session_scope
    from bot.store.ingest import ingest_message
    from bot.store.migrate import alembic_config
    from tests.store.helpers import make_account, raw_mail

    engine = make_engine(f"sqlite:///{tmp_path / 'roundtrip.db'}")
    migrate.upgrade(engine)
    with session_scope(make_session_factory(engine)) as s:
        account = make_account(s)
        for n in range(5):
            body = "a zebra crossing" if n % 2 else "no stripes"
            ingest_message(s, account, raw_mail(f"m{n}@x", f"s{n}", body=body))

    def hits() -> list[int]:
        with engine.connect() as conn:
            return sorted(
                r[0]
                for r in conn.execute(
                    text("SELECT rowid FROM message_fts WHERE message_fts MATCH 'zebra'")
                )
            )

    def at(revision: str, up: bool) -> None:
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.upgrade if up else command.downgrade)(cfg, revision)

    found = hits()
    assert len(found) == 2
    at("0003", up=False)
    assert hits() == found
    at("head", up=True)
    assert hits() == found
    engine.dispose()
