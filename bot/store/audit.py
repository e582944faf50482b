"""The audit log: who did what, from Slack or the CLI. One function, one row."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bot.store.models import AuditLog


def record(
    session: Session,
    actor: str,
    action: str,
    *,
    account_id: int | None = None,
    conversation_id: int | None = None,
    message_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Add an AuditLog row to the caller's transaction (never commits).

    `actor` is a Slack user id, "cli" or "system"; `details` must be JSON-serialisable and must
    never hold secrets.
    """
    row = AuditLog(
        actor=actor[:64],
        action=action[:60],
        account_id=account_id,
        conversation_id=conversation_id,
        message_id=message_id,
        details=dict(details or {}),
    )
    session.add(row)
    return row
