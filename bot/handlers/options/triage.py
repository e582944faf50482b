"""Options for the Assign… picker of a big channel: its members matching what was typed."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.blocks import triage as tb
from bot.handlers.middleware import services_of
from bot.inbox import triage


def register(app: Any) -> None:
    app.options(tb.ASSIGN_SELECT)(assignee_options_load)


def assignee_options_load(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    # Slack keeps only the first answer, within 3 s: a read and the cached membership and
    # directory (the modal's opening filled them), then ack. Someone outside the
    # conversation's channel (or a form whose conversation is gone) gets no options.
    meta = tb.parse_meta((body.get("view") or {}).get("private_metadata"))
    choices: list[tuple[str, str]] = []
    if meta is not None:
        query = str(body.get("value") or "")[:100]
        user_id = str((body.get("user") or {}).get("id") or "")
        choices = triage.assignee_options(services_of(context), client, user_id, meta[0], query)
    ack(options=tb.assignee_options(choices))
