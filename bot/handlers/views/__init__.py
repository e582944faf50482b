"""Views listeners."""

from __future__ import annotations

from slack_bolt import App

from bot.handlers.views import accounts as account_views
from bot.handlers.views import client_admin as client_admin_views
from bot.handlers.views import clients as client_views
from bot.handlers.views import compose as compose_views
from bot.handlers.views import connection as connection_views
from bot.handlers.views import conversation as conversation_views
from bot.handlers.views import home as home_views
from bot.handlers.views import templates as template_views
from bot.handlers.views import triage as triage_views


def register(app: App) -> None:
    conversation_views.register(app)
    compose_views.register(app)
    template_views.register(app)
    account_views.register(app)
    connection_views.register(app)
    client_views.register(app)
    client_admin_views.register(app)
    home_views.register(app)
    triage_views.register(app)
