"""A person's message in a conversation's thread: store it as a draft and ask its author,
privately, whether to email it, edit it first or keep it as an internal note.

Bolt acknowledges the event before this runs; duplicates are dropped by first_delivery_only
and, for another delivery of the same message, by the draft's (channel, ts).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks import compose as cb
from bot.compose import thread_reply
from bot.compose.form import format_addresses
from bot.handlers.middleware import services_of
from bot.mail.richtext import rich_text_to_text
from bot.store.db import session_scope

log = logging.getLogger(__name__)


def message_posted(
    event: dict[str, Any], body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    typed = thread_reply.typed_message(event)
    if typed is None:  # a bot, an edit, a deletion, a top-level message…
        return
    services = services_of(context)
    with session_scope(services.session_factory) as session:
        draft = thread_reply.record(session, typed, body.get("event_id"))
        if draft is None:
            return
        loaded = thread_reply.load_recipients(session, draft)
        draft_id = draft.id
    who = thread_reply.recipients_from(loaded)  # parses the original: after the transaction
    if who is None or not who.reply:
        return
    reply_to = format_addresses(who.reply)
    extra = [
        a for a in who.reply_all if a.email.lower() not in {r.email.lower() for r in who.reply}
    ]
    # The preview reads as the email will (links spelled out, Slack's escapes undone).
    preview = rich_text_to_text(typed.rich_text) or thread_reply.plain_text(typed.text)
    text, blocks = cb.typed_prompt(
        draft_id, preview, reply_to, format_addresses(who.reply_all) if extra else None
    )
    try:
        client.chat_postEphemeral(
            channel=typed.channel,
            user=typed.user,
            thread_ts=typed.thread_ts,
            text=text,
            blocks=blocks,
        )
    except SlackApiError as exc:
        log.warning(
            "could not prompt %s about a typed reply: %s", typed.user, exc.response.get("error")
        )
