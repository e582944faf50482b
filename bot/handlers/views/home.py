"""Submissions of views opened from the App Home that are not account or client forms.

The search modal updates as the person types; its Search button (Slack requires a submit
button on a modal with an input) and Enter land here and re-render it in place.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.blocks import ids
from bot.blocks.search import search_state
from bot.handlers.middleware import services_of


def search_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    from bot.handlers.actions.search import search_view

    query, filter_name, _ = search_state(view)
    new_view = search_view(services_of(context), client, body["user"]["id"], query, filter_name, 0)
    ack(response_action="update", view=new_view)


def register(app: Any) -> None:
    app.view(ids.VIEW_SEARCH)(search_submitted)
