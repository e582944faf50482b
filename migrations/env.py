"""Alembic environment: one set of migrations for SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, pool

from bot.store.db import make_engine
from bot.store.models import Base

config = context.config
target_metadata = Base.metadata

# Search indexes are dialect specific and created by hand in the revisions (tsvector column and
# GIN index on PostgreSQL, an FTS5 table and triggers on SQLite); autogenerate must not see them.
SEARCH_OBJECTS = {
    "message_fts",
    "search_vector",
    "ix_messages_search_vector",
    "ix_messages_subject_tsv",  # PostgreSQL: subject: terms (0012)
}


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    if name in SEARCH_OBJECTS:
        return False
    return not (type_ == "table" and name and name.startswith("message_fts"))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        compare_server_default=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs via table copies
        transaction_per_migration=True,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            _lock(connection)
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from bot.config import load_settings

        url = load_settings().database_url
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            _lock(conn)
            context.run_migrations()


def _lock(connection: Connection) -> None:
    # Several replicas may start at once; only one runs the migrations, the others wait.
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7307321)")


if context.is_offline_mode():
    raise SystemExit(
        "Offline (SQL script) migrations are not supported; run `mailroom db upgrade`."
    )
run_migrations_online()
