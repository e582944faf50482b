"""Views listeners."""

from __future__ import annotations

from slack_bolt import App

from bot.handlers.views import conversation as conversation_views


def register(app: App) -> None:
    conversation_views.register(app)
