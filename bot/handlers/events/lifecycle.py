"""The app was uninstalled or its tokens revoked: nothing more can reach Slack, so say so loudly.

Mailroom runs in one workspace with one bot token; there is no installation row to delete. The
outbox keeps every pending post (durable rows), so reinstalling with a new token resumes them.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def app_uninstalled(event: dict[str, Any]) -> None:
    log.error(
        "Mailroom was uninstalled from the workspace: Slack posts will fail until it is "
        "reinstalled and SLACK_BOT_TOKEN is updated. Pending posts stay in the outbox."
    )


def tokens_revoked(event: dict[str, Any]) -> None:
    revoked = event.get("tokens") or {}
    log.error(
        "Slack revoked Mailroom's tokens (%s): reinstall the app and update SLACK_BOT_TOKEN.",
        ", ".join(sorted(revoked)) or "unknown",
    )
