"""Confirmation modals for the actions that are hard to undo: Delete and Unlink."""

from __future__ import annotations

import json
from typing import Any

from bot.blocks import ids
from bot.blocks.conversation import fit, section
from bot.blocks.text import plain


def _metadata(conversation_id: int, channel_id: str | None) -> str:
    return json.dumps({"conversation_id": conversation_id, "channel_id": channel_id})


def confirm_delete_modal(
    conversation_id: int, subject: str, channel_id: str | None = None
) -> dict[str, Any]:
    text = (
        f"Move *{fit(subject.strip() or '(no subject)', 500)}* to the mailbox's Trash?\n"
        "The conversation stays in Slack, marked as in Trash."
    )
    return {
        "type": "modal",
        "callback_id": ids.VIEW_CONFIRM_DELETE,
        "title": plain("Delete conversation", 24),
        "submit": plain("Delete", 24),
        "close": plain("Cancel", 24),
        "private_metadata": _metadata(conversation_id, channel_id),
        "blocks": [section(text)],
    }


def confirm_unlink_modal(
    conversation_id: int, subject: str, client_name: str, channel_id: str | None = None
) -> dict[str, Any]:
    text = (
        f"Unlink *{fit(client_name, 200)}* from "
        f"*{fit(subject.strip() or '(no subject)', 500)}*?\n"
        "The conversation leaves the client's timeline."
    )
    return {
        "type": "modal",
        "callback_id": ids.VIEW_CONFIRM_UNLINK,
        "title": plain("Unlink client", 24),
        "submit": plain("Unlink", 24),
        "close": plain("Cancel", 24),
        "private_metadata": _metadata(conversation_id, channel_id),
        "blocks": [section(text)],
    }


def parse_metadata(raw: str | None) -> tuple[int, str | None] | None:
    """(conversation_id, channel_id) from a confirmation or link modal, None if unreadable."""
    try:
        data = json.loads(raw or "")
        cid = data["conversation_id"]
        channel = data.get("channel_id")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(cid, int) or isinstance(cid, bool):
        return None
    return cid, channel if isinstance(channel, str) else None
