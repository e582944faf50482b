"""Outbox lanes: a lane per row, and per-lane pacing shared by every worker.

Why: one dispatcher loop ran every effect in order and slept for each channel's pacing, so 60
posts in one channel delayed every other channel's posts and every reply's send by a minute.
Rows now carry a lane (a Slack channel, an account's mailbox write-back, an account's sends);
lanes run side by side, rows within a lane one at a time. `outbox_lanes.not_before` is the
pacing that used to be a sleep, stored so that every worker honours it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_lanes",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("not_before", bot.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_outbox_lanes")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lane", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_outbox_lane", ["lane", "status"], unique=False)
    # Rows still to run get the lane enqueue() would give them now (bot/store/outbox.py).
    op.execute(
        "UPDATE outbox SET lane = CASE"
        " WHEN kind = 'mail.send' THEN 'send:' || CAST(account_id AS VARCHAR(20))"
        " WHEN kind LIKE 'mail.%' THEN 'mailbox:' || CAST(account_id AS VARCHAR(20))"
        " WHEN channel_id IS NOT NULL THEN 'slack:' || channel_id"
        " END"
        " WHERE status IN ('pending', 'running', 'held', 'failed')"
    )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_lane")
        batch_op.drop_column("lane")
    op.drop_table("outbox_lanes")
