"""Actions listeners."""

from __future__ import annotations

from slack_bolt import App

from bot.handlers.actions import compose as compose_actions
from bot.handlers.actions import conversation as conversation_actions
from bot.handlers.actions import home as home_actions
from bot.handlers.actions import search as search_actions
from bot.handlers.actions import templates as template_actions
from bot.handlers.actions import triage as triage_actions


def register(app: App) -> None:
    conversation_actions.register(app)
    compose_actions.register(app)
    template_actions.register(app)
    home_actions.register(app)
    search_actions.register(app)
    triage_actions.register(app)
