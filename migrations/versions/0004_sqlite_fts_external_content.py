"""SQLite: the FTS5 index reads its text from the messages instead of keeping a copy.

Why: a plain FTS5 table stores every indexed column again (its `_content` shadow table), so
each message body was on disk twice. An external-content table indexes the same text and
reads it from a view over `messages` when a snippet needs it: on the benchmark's mail the
database is 40 % smaller and filling the index 25 % cheaper (docs/sync.md). Queries are
unchanged (they read only rowids and `snippet()`).

External content needs the old values to delete a row from the index, and deleting a row
the index never had corrupts it; messages are indexed by ingest (`index_messages`), and a row
inserted another way (a test, a bulk load before `index_unindexed`) may not be. So the delete
is only sent for a row the index holds (its `_docsize` row). PostgreSQL is unchanged.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 05:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "old.id, old.subject, old.from_name || ' ' || old.from_email, old.body_text"
_NEW = "new.id, new.subject, new.from_name || ' ' || new.from_email, new.body_text"
_FORGET_OLD = (
    "INSERT INTO message_fts(message_fts, rowid, subject, sender, body) "
    f"SELECT 'delete', {_OLD} "
    "WHERE EXISTS (SELECT 1 FROM message_fts_docsize WHERE id = old.id);"
)

EXTERNAL = [
    "CREATE VIEW message_fts_source AS SELECT id, subject, "
    "from_name || ' ' || from_email AS sender, body_text AS body FROM messages",
    "CREATE VIRTUAL TABLE message_fts USING fts5(subject, sender, body, "
    "content = 'message_fts_source', content_rowid = 'id', "
    "tokenize = 'unicode61 remove_diacritics 2')",
    "INSERT INTO message_fts(message_fts) VALUES ('rebuild')",
    f"CREATE TRIGGER message_fts_ad AFTER DELETE ON messages BEGIN {_FORGET_OLD} END",
    "CREATE TRIGGER message_fts_au AFTER UPDATE OF subject, from_name, from_email, body_text "
    f"ON messages BEGIN {_FORGET_OLD} "
    f"INSERT INTO message_fts(rowid, subject, sender, body) VALUES ({_NEW}); END",
]

# As 0001 made it, with 0003's change (no insert trigger).
SELF_CONTAINED = [
    "CREATE VIRTUAL TABLE message_fts USING fts5(subject, sender, body, "
    "tokenize = 'unicode61 remove_diacritics 2')",
    "INSERT INTO message_fts(rowid, subject, sender, body) "
    "SELECT id, subject, from_name || ' ' || from_email, body_text FROM messages",
    "CREATE TRIGGER message_fts_ad AFTER DELETE ON messages BEGIN "
    "DELETE FROM message_fts WHERE rowid = old.id; END",
    "CREATE TRIGGER message_fts_au AFTER UPDATE OF subject, from_name, from_email, body_text "
    "ON messages BEGIN DELETE FROM message_fts WHERE rowid = old.id; "
    f"INSERT INTO message_fts(rowid, subject, sender, body) VALUES ({_NEW}); END",
]


def _drop() -> None:
    op.execute("DROP TRIGGER IF EXISTS message_fts_ad")
    op.execute("DROP TRIGGER IF EXISTS message_fts_au")
    op.execute("DROP TABLE IF EXISTS message_fts")
    op.execute("DROP VIEW IF EXISTS message_fts_source")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _drop()
        for statement in EXTERNAL:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _drop()
        for statement in SELF_CONTAINED:
            op.execute(statement)
