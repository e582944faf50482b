"""Options listeners."""

from __future__ import annotations

from slack_bolt import App

from bot.handlers.options import clients as client_options
from bot.handlers.options import triage as triage_options


def register(app: App) -> None:
    client_options.register(app)
    triage_options.register(app)
