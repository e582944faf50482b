"""Writes that follow a view submission's ack.

A view submission's ack can carry field errors, so the checks a person can fix run before it,
with reads only (read_scope). The write comes after the ack: on SQLite it may wait for the
one write lock (a sync batch holds it) and Slack gives the ack 3 seconds. What the reads
could not foresee (a concurrent edit, a store failure) is told to the person in a DM.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks.text import escape_mrkdwn

log = logging.getLogger(__name__)


def tell(client: WebClient, user_id: str, text: str) -> None:
    """A DM from the app (the modal is closed by now). `text` is ours: already escaped."""
    try:
        client.chat_postMessage(channel=user_id, text=text)
    except SlackApiError as exc:
        log.warning("could not tell %s: %s", user_id, exc.response.get("error"))


def write_after_ack(
    client: WebClient,
    user_id: str,
    write: Callable[[], object],
    *,
    failed: str,
    expected: tuple[type[Exception], ...] = (),
) -> bool:
    """Run `write`; on failure tell the person `failed` (ours, escaped by the caller) with an
    expected error's words (escaped here: they may quote what was typed); False then."""
    try:
        write()
        return True
    except expected as exc:
        tell(client, user_id, f"{failed} {escape_mrkdwn(str(exc))}")
    except Exception:
        log.exception("write after the ack failed")
        tell(client, user_id, f"{failed} Mailroom could not save it; please try again.")
    return False
