"""Events API listeners."""

from __future__ import annotations

from slack_bolt import App

from bot.handlers.events import app_home, lifecycle, reactions, thread_messages
from bot.handlers.middleware import first_delivery_only as once


def register(app: App) -> None:
    app.event("app_home_opened")(once(app_home.app_home_opened))
    app.event("app_uninstalled")(once(lifecycle.app_uninstalled))
    app.event("tokens_revoked")(once(lifecycle.tokens_revoked))
    app.event("message")(once(thread_messages.message_posted))
    app.event("reaction_added")(once(reactions.reaction_added))
