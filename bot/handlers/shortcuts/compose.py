"""The global "New email" shortcut."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.blocks import ids
from bot.compose import open_compose
from bot.handlers.middleware import services_of


def register(app: Any) -> None:
    app.shortcut(ids.SHORTCUT_COMPOSE)(compose_shortcut)


def compose_shortcut(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    ack()
    open_compose(client, body["trigger_id"], body["user"]["id"], services_of(context))
