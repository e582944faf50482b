"""Options listeners."""

from __future__ import annotations

from slack_bolt import App

from bot.handlers.options import clients as client_options


def register(app: App) -> None:
    client_options.register(app)
