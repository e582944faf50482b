"""Conversations not done: one partial index for the triage views and their search filters.

Why: every triage view (is:mine, is:unassigned, is:waiting, is:snoozed, is:unanswered, and the
`/inbox list` views) keeps only conversations that are not archived and not done, and the
lists are read newest activity first. Without an index each of them read every conversation
(SQLite: a full scan and a sort; 20 ms at 100,000 messages, ten times that at 1,000,000).
Most conversations of a team inbox are done, so an index of the others is small; it holds
every column the views test, so a view's page and its count read the index alone.

The WHERE is written as the queries render it (`archived IS 0` on SQLite, `IS false` on
PostgreSQL, the status as a constant): SQLite uses a partial index only when the query holds
the same terms (bot/store/triage.py view_conditions).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 23:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_conversations_open"
COLUMNS = (
    "last_message_at, id, account_id, assignee, status, waiting_since, snoozed_until, "
    "merged_into_id, deleted"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        where = "archived IS false AND status <> 'done'"
    else:
        where = "archived IS 0 AND status != 'done'"
    op.execute(f"CREATE INDEX {NAME} ON conversations ({COLUMNS}) WHERE {where}")


def downgrade() -> None:
    op.execute(f"DROP INDEX {NAME}")
