"""Publish the App Home tab when someone opens it."""

from __future__ import annotations

from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from bot.handlers.middleware import services_of
from bot.home import publish_home


def app_home_opened(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    if event.get("tab", "home") != "home":
        return
    publish_home(services_of(context), client, event["user"])
