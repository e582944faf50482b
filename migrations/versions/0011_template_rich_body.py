"""Templates: the body as Slack rich text (bold, lists, links…), beside its plain text.

Why: templates and signatures carry the same formatting as the compose modal's rich text
input. The rich text is stored as the cleaned rich_text JSON (known element types and fields
only, link targets http/https/mailto), never as HTML: the HTML is generated, escaped, at send
time. `body` keeps the plain-text form, so listing and older code read it as before; a template
without `body_rich` is plain text as it always was.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("templates") as batch:
        batch.add_column(
            sa.Column(
                "body_rich",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("templates") as batch:
        batch.drop_column("body_rich")
