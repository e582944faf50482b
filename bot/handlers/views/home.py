"""Views opened from the App Home that have no submission of their own to handle.

The search modal has no submit button (results update as the person types), but pressing
Enter in a dispatch_action input can still submit it on some clients: ack so Slack shows no
error and keeps the modal open.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack

from bot.blocks import ids


def search_submitted(ack: Ack) -> None:
    ack()


def register(app: Any) -> None:
    app.view(ids.VIEW_SEARCH)(search_submitted)
    app.view(ids.VIEW_SYNC_LOG)(search_submitted)
