"""Link a conversation to a client: a modal with an external_select fed from the client list."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.blocks import ids
from bot.blocks.conversation import fit, section
from bot.blocks.state import state_values
from bot.blocks.text import plain, truncate

LINK_BLOCK = "link_client_block"
MAX_OPTIONS = 100


@dataclass(frozen=True)
class ClientChoice:
    id: int
    name: str
    company: str = ""


def client_option(client: ClientChoice) -> dict[str, Any]:
    # plain_text: no escaping needed (Slack shows it literally); 75 characters at most.
    label = client.name or f"Client {client.id}"
    if client.company and client.company != client.name:
        label = f"{label} ({client.company})"
    return {"text": plain(truncate(label, 75), 75), "value": str(client.id)}


def client_options(clients: list[ClientChoice]) -> dict[str, Any]:
    """The ack body for the external_select's options load."""
    return {"options": [client_option(c) for c in clients[:MAX_OPTIONS]]}


def link_client_modal(
    conversation_id: int,
    subject: str,
    current: ClientChoice | None = None,
    channel_id: str | None = None,
) -> dict[str, Any]:
    select: dict[str, Any] = {
        "type": "external_select",
        "action_id": ids.LINK_CLIENT_SELECT,
        "placeholder": plain("Type a client's name", 150),
        "min_query_length": 0,
    }
    if current is not None:
        select["initial_option"] = client_option(current)
    return {
        "type": "modal",
        "callback_id": ids.VIEW_LINK_CLIENT,
        "title": plain("Link to client", 24),
        "submit": plain("Link", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps(
            {"conversation_id": conversation_id, "channel_id": channel_id}
        ),
        "blocks": [
            section(f"*{fit(subject.strip() or '(no subject)', 500)}*"),
            {
                "type": "input",
                "block_id": LINK_BLOCK,
                "label": plain("Client", 2000),
                "element": select,
            },
        ],
    }


def selected_client_id(view: dict[str, Any]) -> int | None:
    """The chosen client id from a submitted link modal's state."""
    values = state_values(view).get(LINK_BLOCK) or {}
    chosen = (values.get(ids.LINK_CLIENT_SELECT) or {}).get("selected_option") or {}
    value = chosen.get("value")
    return int(value) if isinstance(value, str) and value.isdigit() else None
