"""Reply / Reply all / Forward buttons, the template picker, Retry and Send anyway.

Ack first, then open or update the modal at once (a trigger_id lives about 3 s). Nothing here
talks to a mailbox: sending happens in the outbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.compose.modal import ComposeRefused, conversation_view, with_template
from bot.compose.submit import release_held, retry_failed
from bot.handlers.middleware import services_of
from bot.services import Services
from bot.store.db import read_scope, session_scope
from bot.store.models import Account, Outbox

log = logging.getLogger(__name__)

MODES = {ids.CONV_REPLY: "reply", ids.CONV_REPLY_ALL: "reply_all", ids.CONV_FORWARD: "forward"}


def register(app: Any) -> None:
    for action_id in MODES:
        app.action(action_id)(compose_clicked)
    app.action(ids.COMPOSE_TEMPLATE_PICK)(template_picked)
    app.action(ids.SEND_RETRY)(retry_clicked)
    app.action(ids.SEND_ANYWAY)(send_anyway_clicked)


def parse_value(value: str) -> tuple[int, int | None] | None:
    """ "<conversation>" or "<conversation>:<message>"."""
    conv, _, msg = value.partition(":")
    if not conv.isdigit() or (msg and not msg.isdigit()):
        return None
    return int(conv), int(msg) if msg else None


def compose_clicked(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    ack()
    action = body["actions"][0]
    parsed = parse_value(str(action.get("value") or ""))
    if parsed is None:
        return
    mode = MODES[str(action["action_id"])]
    services = services_of(context)
    user_id = body["user"]["id"]
    try:
        view = conversation_view(services, client, user_id, mode, parsed[0], parsed[1])
    except ComposeRefused as exc:
        view = cb.notice_view(cb.TITLES[mode], str(exc))
    client.views_open(trigger_id=body["trigger_id"], view=view)


def template_picked(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    ack()
    view = body.get("view") or {}
    option = body["actions"][0].get("selected_option") or {}
    try:
        template_id = int(str(option.get("value")))
    except (TypeError, ValueError):
        return
    new_view = with_template(services_of(context), client, body["user"]["id"], view, template_id)
    if new_view is None:
        return
    try:
        client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)
    except SlackApiError as exc:
        # hash_conflict: the modal changed meanwhile (another pick); the newer state wins.
        log.info("template fill not applied: %s", exc.response.get("error"))


def _may_act(services: Services, client: WebClient, user_id: str, outbox_id: int) -> bool:
    with read_scope(services.session_factory) as session:
        row = session.get(Outbox, outbox_id)
        if row is None or row.account_id is None:
            return False
        account = session.get(Account, row.account_id)
        channel = account.channel_id if account else None
    return services.access.can_see_channel(client, user_id, channel)


def _tell(body: dict[str, Any], client: WebClient, respond: Respond, text: str) -> None:
    if body.get("response_url"):
        respond(text=text, response_type="ephemeral", replace_original=False)
    elif body.get("view"):
        view = body["view"]
        try:
            client.views_update(view_id=view["id"], view=cb.notice_view("Email", text))
        except SlackApiError as exc:
            log.info("could not update the modal: %s", exc.response.get("error"))


def _outbox_id(services: Services, body: dict[str, Any]) -> int | None:
    """The button's row: its id, or (Send anyway, written after the submit's ack) the send's
    Message-ID; that row may still be being written, so look a few times."""
    value = str(body["actions"][0].get("value") or "")
    if value.isdigit():
        return int(value)
    if not value:
        return None
    from bot.compose.submit import send_key

    for _ in range(20):
        with read_scope(services.session_factory) as session:
            found = session.scalar(select(Outbox.id).where(Outbox.key == send_key(value)))
        if found is not None:
            return int(found)
        time.sleep(0.25)
    return None


def _outbox_button(
    release: Callable[[Session, int, str], object],
    *,
    refused: str,
    gone: str,
    done: str,
) -> Callable[[Ack, dict[str, Any], WebClient, BoltContext, Respond], None]:
    """A button on a send result in the thread (Retry, Send anyway): release the outbox row."""

    def clicked(
        ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext, respond: Respond
    ) -> None:
        ack()
        services = services_of(context)
        outbox_id = _outbox_id(services, body)
        user_id = body["user"]["id"]
        if outbox_id is None:
            return
        if not _may_act(services, client, user_id, outbox_id):
            _tell(body, client, respond, refused)
            return
        with session_scope(services.session_factory) as session:
            row = release(session, outbox_id, user_id)
        _tell(body, client, respond, gone if row is None else done)

    return clicked


retry_clicked = _outbox_button(
    retry_failed,
    refused="Only members of this mailbox's channel can retry.",
    gone="This email is already being sent or was sent.",
    done="Trying again. The result will show in this thread.",
)
send_anyway_clicked = _outbox_button(
    release_held,
    refused="Only members of this mailbox's channel can send this.",
    gone="This email is no longer held: it was sent or discarded.",
    done="Sending. The result will show in the conversation's thread.",
)
