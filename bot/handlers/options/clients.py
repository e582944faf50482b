"""Options for the Link-to-client select: clients matching what the person typed."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext

from bot.blocks import ids
from bot.blocks.link_client import MAX_OPTIONS, ClientChoice, client_options
from bot.handlers.middleware import services_of
from bot.store.clients import list_clients
from bot.store.db import read_scope


def register(app: Any) -> None:
    app.options(ids.LINK_CLIENT_SELECT)(client_options_load)


def client_options_load(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    # Slack keeps only the first answer, within 3 s: one indexed query, then ack.
    query = str(body.get("value") or "").strip()[:100]
    with read_scope(services_of(context).session_factory) as session:
        found = list_clients(session, query=query or None, limit=MAX_OPTIONS)
        choices = [ClientChoice(c.id, c.name, c.company) for c in found]
    ack(options=client_options(choices)["options"])
