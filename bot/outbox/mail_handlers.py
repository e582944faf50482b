"""Outbox handlers that write Mailroom's changes back to IMAP mailboxes.

Kinds: ``mail.set_read`` {message_ids, read}, ``mail.archive`` / ``mail.unarchive`` /
``mail.trash`` {conversation_id}. The work is in bot/sync/writeback.py; this module maps
provider errors onto the dispatcher's retry rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bot.outbox.dispatch import OutboxContext, PermanentFailure, Registry, RetryLater
from bot.providers.errors import (
    AuthError,
    ConfigError,
    MessageRejected,
    NotSupported,
    ProviderError,
)
from bot.store.models import Outbox
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


def set_read(ctx: OutboxContext, row: Outbox) -> dict[str, Any]:
    ids = [int(i) for i in row.payload.get("message_ids") or []]
    read = bool(row.payload.get("read", True))
    with provider_errors():
        written = writeback.set_read(ctx.services, ids, read)
    return {"written": written}


def _mover(
    from_roles: tuple[str, ...], to_role: str
) -> Callable[[OutboxContext, Outbox], dict[str, Any]]:
    def handler(ctx: OutboxContext, row: Outbox) -> dict[str, Any]:
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
