"""Index messages by (date, id) for newest-first search across every visible account.

Why: search pages are newest first over all the accounts a person may see. With only
(account_id, date) the database either walks each account and merges, or sorts every match;
with (date, id) one walk in `ORDER BY date DESC, id DESC` order serves any set of accounts
and stops at the page (docs/benchmarks.md, search section). Plain btree: SQLite and PostgreSQL.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 00:25:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_date_id", ["date", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_date_id")
