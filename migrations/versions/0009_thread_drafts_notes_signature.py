"""Typing in a thread, internal notes, compose drafts, mailbox signatures (issue 14).

Why: a message typed in a conversation's Slack thread is kept server-side as a draft until its
author chooses what it is (`thread_drafts`; unique by Slack event id and by channel + ts, since
Slack delivers at least once); a note stays on the conversation (`conversation_notes`); a modal
closed unsent is offered back (`compose_drafts`, one per person and conversation); and each
mailbox may have a signature added to what is sent from Slack (`accounts.signature`, its plain
text, and `accounts.signature_rich`, the cleaned Slack rich text that is sent; a closed draft
keeps its rich text in `compose_drafts.body_rich` too).

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-05 20:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import bot.store.models

revision: str = "0009"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_UTC = bot.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy): SQLite would otherwise rebuild `accounts`, which
    # every other table references.
    op.add_column("accounts", sa.Column("signature", sa.Text(), nullable=True))
    op.add_column("accounts", sa.Column("signature_rich", _JSON, nullable=True))

    op.create_table(
        "thread_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("rich_text", _JSON, nullable=False),
        sa.Column("files", _JSON, nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("newest_seen", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("acted_at", _UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_thread_drafts_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_thread_drafts_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_thread_drafts")),
        sa.UniqueConstraint("channel_id", "ts", name=op.f("uq_thread_drafts_channel_id_ts")),
        sa.UniqueConstraint("event_id", name=op.f("uq_thread_drafts_event_id")),
    )
    with op.batch_alter_table("thread_drafts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_thread_drafts_conversation_id"), ["conversation_id"], unique=False
        )

    op.create_table(
        "conversation_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=32), nullable=False),
        sa.Column("author_name", sa.String(length=300), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("thread_draft_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_conversation_notes_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["thread_draft_id"],
            ["thread_drafts.id"],
            name=op.f("fk_conversation_notes_thread_draft_id_thread_drafts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_notes")),
        sa.UniqueConstraint("thread_draft_id", name=op.f("uq_conversation_notes_thread_draft_id")),
    )
    with op.batch_alter_table("conversation_notes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_conversation_notes_conversation_id"), ["conversation_id"], unique=False
        )

    op.create_table(
        "compose_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("to", sa.Text(), nullable=False),
        sa.Column("cc", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_rich", _JSON, nullable=True),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_compose_drafts_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compose_drafts")),
        sa.UniqueConstraint(
            "user_id", "conversation_id", name=op.f("uq_compose_drafts_user_id_conversation_id")
        ),
    )
    with op.batch_alter_table("compose_drafts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_compose_drafts_conversation_id"), ["conversation_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("compose_drafts")
    op.drop_table("conversation_notes")
    op.drop_table("thread_drafts")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite 3.35+, no rebuild
        op.execute("ALTER TABLE accounts DROP COLUMN signature_rich")
        op.execute("ALTER TABLE accounts DROP COLUMN signature")
    else:
        op.drop_column("accounts", "signature_rich")
        op.drop_column("accounts", "signature")
