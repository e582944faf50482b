"""Templates: personal or shared with the team.

Why: every member writes templates (issue 17); a personal one is listed only for its author,
a shared one for everyone. Existing templates were made by admins for the team: they stay
shared (server default true). The author is the existing `created_by`.

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-05 21:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy of the table): SQLite adds it in place.
    op.add_column(
        "templates",
        sa.Column("shared", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    op.drop_column("templates", "shared")
