"""Push notifications: one row per API account's Gmail watch or Graph subscription.

Why: renewals (a Gmail watch lasts 7 days, a Graph message subscription under 7 days) run in
the worker and must survive restarts and be shared by replicas; Graph's clientState is a
per-subscription secret stored encrypted; the highest announced Gmail historyId makes a
replayed push a no-op.

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-05 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.store.models

revision: str = "0014"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = bot.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "push_channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("client_state", sa.LargeBinary(), nullable=True),
        sa.Column("expires_at", _UTC, nullable=True),
        sa.Column("renew_after", _UTC, nullable=True),
        sa.Column("history_id", sa.BigInteger(), nullable=True),
        sa.Column("notified_at", _UTC, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_push_channels_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_channels")),
        sa.UniqueConstraint("account_id", name=op.f("uq_push_channels_account_id")),
        sa.UniqueConstraint("external_id", name=op.f("uq_push_channels_external_id")),
    )
    with op.batch_alter_table("push_channels", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_push_channels_renew_after"), ["renew_after"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("push_channels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_channels_renew_after"))
    op.drop_table("push_channels")
