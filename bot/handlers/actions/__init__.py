"""Actions listeners."""

from __future__ import annotations

from slack_bolt import App

from bot.handlers.actions import conversation as conversation_actions


def register(app: App) -> None:
    conversation_actions.register(app)
