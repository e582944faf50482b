"""Events API listeners."""

from __future__ import annotations

from slack_bolt import App

from bot.handlers.events import app_home, lifecycle, reactions, thread_messages


def register(app: App) -> None:
    app.event("app_home_opened")(app_home.app_home_opened)
    app.event("app_uninstalled")(lifecycle.app_uninstalled)
    app.event("tokens_revoked")(lifecycle.tokens_revoked)
    app.event("message")(thread_messages.message_posted)
    app.event("reaction_added")(reactions.reaction_added)
