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
