"""SQLite: new messages enter the FTS5 index in one statement per batch, not by trigger.

Why: an AFTER INSERT trigger indexes row by row, and FTS5 writes its pending terms out at
every statement boundary inside the trigger program, so a 500-message batch became hundreds
of tiny index segments to merge. One `INSERT INTO message_fts … SELECT … WHERE id IN (…)` per
batch (bot/store/search.py `index_messages`, called by ingest, the only writer of new
messages) does the same indexing 2.4x faster (docs/sync.md, benchmark). The update and
delete triggers stay: those paths are rare and row-sized. PostgreSQL is unchanged (its
tsvector is a generated column).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 02:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS message_fts_ai")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER message_fts_ai AFTER INSERT ON messages BEGIN "
            "INSERT INTO message_fts(rowid, subject, sender, body) VALUES (new.id, new.subject, "
            "new.from_name || ' ' || new.from_email, new.body_text); END"
        )
