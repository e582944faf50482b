"""Outbox handlers that write Mailroom's changes back to IMAP mailboxes.

Kinds: ``mail.set_read`` {message_ids, read}, ``mail.archive`` / ``mail.unarchive`` /
``mail.trash`` {conversation_id}. The work is in bot/sync/writeback.py; this module maps
provider errors onto the dispatcher's retry rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from bot.outbox.dispatch import OutboxContext, PermanentFailure, Registry, RetryLater
from bot.providers.errors import (
    AuthError,
    ConfigError,
    MessageRejected,
    NotSupported,
    ProviderError,
)
from bot.store.db import session_scope
from bot.store.models import Account, Conversation, Message, Outbox, Provider
from bot.sync import writeback

AUTH_RETRY_SECONDS = 900.0  # a person has to fix the password; do not hammer the server


@contextmanager
def provider_errors() -> Iterator[None]:
    try:
        yield
    except AuthError as exc:
        raise RetryLater(str(exc), after_seconds=AUTH_RETRY_SECONDS) from exc
    except (ConfigError, NotSupported, MessageRejected) as exc:
        raise PermanentFailure(str(exc)) from exc
    except ProviderError as exc:  # transient, protocol: retried with backoff
        raise RetryLater(str(exc)) from exc


def _api_account(ctx: OutboxContext, row: Outbox) -> Account | None:
    """The Gmail / Microsoft 365 account a row writes to, or None for IMAP (and unknown)."""
    with session_scope(ctx.services.session_factory) as s:
        if "conversation_id" in row.payload:
            account_id = s.scalar(
                select(Conversation.account_id).where(
                    Conversation.id == int(row.payload["conversation_id"])
                )
            )
        else:
            ids = [int(i) for i in row.payload.get("message_ids") or []]
            account_id = s.scalar(select(Message.account_id).where(Message.id.in_(ids)).limit(1))
        account = s.get(Account, account_id) if account_id is not None else None
        if account is None or account.provider == Provider.IMAP:
            return None
        s.expunge(account)
        return account


def _api_writeback(ctx: OutboxContext, row: Outbox, account: Account) -> dict[str, Any]:
    from bot.sync.api_sync import writeback as api_writeback

    with provider_errors():
        return api_writeback(ctx.services, account, row.kind, dict(row.payload)) or {}


def set_read(ctx: OutboxContext, row: Outbox) -> dict[str, Any]:
    api = _api_account(ctx, row)
    if api is not None:
        return _api_writeback(ctx, row, api)
    ids = [int(i) for i in row.payload.get("message_ids") or []]
    read = bool(row.payload.get("read", True))
    with provider_errors():
        written = writeback.set_read(ctx.services, ids, read)
    return {"written": written}


def _mover(
    from_roles: tuple[str, ...], to_role: str
) -> Callable[[OutboxContext, Outbox], dict[str, Any]]:
    def handler(ctx: OutboxContext, row: Outbox) -> dict[str, Any]:
        api = _api_account(ctx, row)
        if api is not None:
            return _api_writeback(ctx, row, api)
        conversation_id = int(row.payload["conversation_id"])
        with provider_errors():
            result = writeback.move_conversation(ctx.services, conversation_id, from_roles, to_role)
        return {"moved": result.moved, "folder": result.folder}

    return handler


archive = _mover(("inbox",), "archive")
unarchive = _mover(("archive",), "inbox")
trash = _mover(("inbox", "archive"), "trash")


def register(registry: Registry) -> None:
    registry.register("mail.set_read", set_read)
    registry.register("mail.archive", archive)
    registry.register("mail.unarchive", unarchive)
    registry.register("mail.trash", trash)
