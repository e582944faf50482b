"""Bolt listeners, grouped by kind; each kind's package registers its own listeners.

Listeners are thin: ack, validate, hand off to a service. Nothing here talks to a mailbox.
"""

from __future__ import annotations

from slack_bolt import App

from bot.handlers import actions, commands, events, middleware, options, shortcuts, views
from bot.services import Services


def register_listeners(app: App, services: Services) -> None:
    middleware.register(app, services)
    events.register(app)
    actions.register(app)
    views.register(app)
    commands.register(app)
    shortcuts.register(app)
    options.register(app)
