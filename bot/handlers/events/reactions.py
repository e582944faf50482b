"""`reaction_added`: emoji triage on a conversation's parent (✅ done, 👀 take it).

Ack is Bolt's (events ack at once); the service ignores reactions on other messages and from
people outside the account's channel. Slack's retries are harmless: the changes are
conditional, so a second delivery changes nothing."""

from __future__ import annotations

from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from bot.handlers.middleware import services_of
from bot.inbox.triage import reaction_added as triage_reaction


def reaction_added(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    triage_reaction(services_of(context), client, event)
