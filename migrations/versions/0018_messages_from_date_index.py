"""Messages by sender, newest first: (from_email, date, id) for `from:address` searches.

Why: `from:someone@x.example word` with a common word read the word's matches (PostgreSQL: the
whole GIN bitmap of a prefix such as `w40*`, built before any page limit applies; SQLite: FTS5
streamed newest first and each batch filtered on the sender) — 58–171 ms CPU at 1,000,000
messages for a sender with 2,000 emails. With this index the search walks that sender's emails
newest first and checks the text on each one until it has a page (bot/store/search.py
`_sender_walk`): the cost follows the page, not the mailbox or the word.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 00:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_messages_from_date", "messages", ["from_email", "date", "id"])


def downgrade() -> None:
    op.drop_index("ix_messages_from_date", table_name="messages")
