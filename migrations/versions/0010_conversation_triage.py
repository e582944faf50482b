"""Team triage: a conversation's owner, status, snooze and "is replying" mark; preferences.

Why: a shared inbox needs to say who owns a conversation, whether it was answered and what is
still waiting (issue 16). The columns live on `conversations` so every listing filters on them
without a join; a snooze's wake-up is claimed from `snoozed_until` (indexed) by the worker.
Changes are audited in the existing `audit_log`. Existing conversations start "open".

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 20:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = bot.store.models.UTCDateTime(timezone=True)
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="open", nullable=False)
        )
        batch_op.add_column(sa.Column("waiting_since", utc, nullable=True))
        batch_op.add_column(sa.Column("snoozed_until", utc, nullable=True))
        batch_op.add_column(sa.Column("snoozed_by", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("replying_user", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("replying_until", utc, nullable=True))
        batch_op.create_index("ix_conversations_assignee", ["assignee"], unique=False)
        batch_op.create_index("ix_conversations_snoozed_until", ["snoozed_until"], unique=False)
        batch_op.create_index("ix_conversations_replying_until", ["replying_until"], unique=False)
    op.create_table(
        "triage_preferences",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("assignment_dms", sa.Boolean(), nullable=False),
        sa.Column("updated_at", utc, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_triage_preferences")),
    )


def downgrade() -> None:
    op.drop_table("triage_preferences")
    op.drop_index("ix_conversations_replying_until", table_name="conversations")
    op.drop_index("ix_conversations_snoozed_until", table_name="conversations")
    op.drop_index("ix_conversations_assignee", table_name="conversations")
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL): a batch copy of `conversations` would
    # rebuild a table that messages, links and the outbox point at.
    for name in (
        "replying_until",
        "replying_user",
        "snoozed_by",
        "snoozed_until",
        "waiting_since",
        "status",
        "assignee",
    ):
        op.execute(f"ALTER TABLE conversations DROP COLUMN {name}")
