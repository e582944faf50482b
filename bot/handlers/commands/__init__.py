"""Commands listeners."""

from __future__ import annotations

from slack_bolt import App

from bot.blocks import ids
from bot.handlers.commands import inbox


def register(app: App) -> None:
    app.command(ids.SLASH_COMMAND)(inbox.inbox_command)
