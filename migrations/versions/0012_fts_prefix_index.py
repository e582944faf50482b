"""SQLite: FTS5 prefix indexes for search as you type; PostgreSQL: lz4 for raw mail.

Why: the last word of a query matches as a prefix ("inv" finds "invoice", issue 19). FTS5
answers `"inv"*` without a prefix index by walking every term that starts with "inv" in its
main index; `prefix = '2 3'` keeps extra doclists for every 2- and 3-character prefix, so the
first keystrokes (where that walk is longest) are answered from one doclist. Longer prefixes
still use the main index (few terms share them). The table is rebuilt from `messages` (the
index is external-content since 0004: no text is copied). PostgreSQL needs no index change:
`to_tsquery('simple', 'inv:*')` is answered by the existing GIN index.

PostgreSQL: a GIN index on the subject's own tsvector, for `subject:` terms. They were checked
row by row on the rows the whole-message index returned, and a prefix (`subject:inv`) widens
those to every row with any word starting "inv" anywhere (200 ms at 100,000 rows, measured);
with this index the two GIN indexes are intersected before any row is read.
`bot/store/search.py` writes the same expression (SUBJECT_TSV) so the planner can use it.

PostgreSQL: the raw bytes of every email and the bodies are compressed with lz4 instead of
the default pglz (PostgreSQL 14+ built with lz4; otherwise nothing changes). Storing the raw
bytes was half of a first sync's time in the database, nearly all of it pglz (issue 19);
lz4 compresses several times faster. Only new values use it; old ones read as before.

Revision ID: 0012
Revises: 0010 (the coordinator chains it after 0011)
Create Date: 2026-12-05 20:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "old.id, old.subject, old.from_name || ' ' || old.from_email, old.body_text"
_NEW = "new.id, new.subject, new.from_name || ' ' || new.from_email, new.body_text"
_FORGET_OLD = (
    "INSERT INTO message_fts(message_fts, rowid, subject, sender, body) "
    f"SELECT 'delete', {_OLD} "
    "WHERE EXISTS (SELECT 1 FROM message_fts_docsize WHERE id = old.id);"
)


def _create(prefix: str) -> list[str]:
    # As 0004 made it, with the prefix option (or without it, for the downgrade).
    return [
        "CREATE VIRTUAL TABLE message_fts USING fts5(subject, sender, body, "
        "content = 'message_fts_source', content_rowid = 'id', "
        f"tokenize = 'unicode61 remove_diacritics 2'{prefix})",
        "INSERT INTO message_fts(message_fts) VALUES ('rebuild')",
        f"CREATE TRIGGER message_fts_ad AFTER DELETE ON messages BEGIN {_FORGET_OLD} END",
        "CREATE TRIGGER message_fts_au AFTER UPDATE OF subject, from_name, from_email, body_text "
        f"ON messages BEGIN {_FORGET_OLD} "
        f"INSERT INTO message_fts(rowid, subject, sender, body) VALUES ({_NEW}); END",
    ]


def _recreate(prefix: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS message_fts_ad")
    op.execute("DROP TRIGGER IF EXISTS message_fts_au")
    op.execute("DROP TABLE IF EXISTS message_fts")
    for statement in _create(prefix):
        op.execute(statement)


_LZ4_COLUMNS = (("message_raw", "raw"), ("messages", "body_text"), ("messages", "body_html"))


def _compression(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    has_lz4 = bind.exec_driver_sql(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
        "AND 'lz4' = ANY(enumvals)"
    ).first()
    if not has_lz4:
        return
    for table, column in _LZ4_COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")


SUBJECT_TSV = "to_tsvector('simple', coalesce(subject, ''))"


def _subject_index(create: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    if create:
        op.execute(f"CREATE INDEX ix_messages_subject_tsv ON messages USING gin (({SUBJECT_TSV}))")
    else:
        op.execute("DROP INDEX IF EXISTS ix_messages_subject_tsv")


def upgrade() -> None:
    _recreate(", prefix = '2 3'")
    _compression("lz4")
    _subject_index(True)


def downgrade() -> None:
    _subject_index(False)
    _recreate("")
    _compression("pglz")
