"""Buttons and the overflow menu on a conversation's messages, and Previous / Next in the Open
modal.

Ack first; Open, Delete, Unlink, Link and Reply all (from the ⋯ menu) then open their modal at
once (a trigger_id lives about 3 s). Delete and Unlink only ask here: the change happens when the
modal is submitted.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from bot.access import AccessDenied
from bot.blocks import compose as cb
from bot.blocks import ids
from bot.blocks.confirm import confirm_delete_modal, confirm_unlink_modal
from bot.blocks.conversation import parse_open_value, parse_overflow_value
from bot.blocks.email_modal import email_modal, notice_modal
from bot.blocks.link_client import ClientChoice, link_client_modal
from bot.compose.modal import ComposeRefused, conversation_view
from bot.handlers.middleware import services_of
from bot.inbox import actions

log = logging.getLogger(__name__)

REFUSAL = "You can act on this mailbox's email only as a member of its channel."


def register(app: Any) -> None:
    app.action(ids.CONV_OPEN)(open_clicked)
    app.action(ids.CONV_MORE)(more_selected)
    app.action(ids.EMAIL_PREV)(step_clicked)
    app.action(ids.EMAIL_NEXT)(step_clicked)
    for action_id in (
        ids.CONV_ARCHIVE,
        ids.CONV_UNARCHIVE,
        ids.CONV_MARK_UNREAD,
        ids.CONV_DELETE,
        ids.CONV_LINK,
        ids.CONV_UNLINK,
    ):
        app.action(action_id)(button_clicked)


def refuse(body: dict[str, Any], client: WebClient, respond: Respond, text: str = REFUSAL) -> None:
    """An ephemeral refusal: to the clicker only, whether or not they are in the channel."""
    if body.get("response_url"):
        respond(text=text, response_type="ephemeral", replace_original=False)
    else:  # clicked in the App Home or a modal: tell them in a DM with the app
        opened = client.conversations_open(users=body["user"]["id"])
        client.chat_postMessage(channel=opened["channel"]["id"], text=text)


def show_modal(body: dict[str, Any], client: WebClient, view: dict[str, Any]) -> None:
    """Open a modal, or push it when the click came from inside a modal (search results)."""
    if (body.get("view") or {}).get("type") == "modal":
        client.views_push(trigger_id=body["trigger_id"], view=view)
    else:
        client.views_open(trigger_id=body["trigger_id"], view=view)


def open_clicked(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext, respond: Respond
) -> None:
    ack()
    parsed = parse_open_value(str(body["actions"][0].get("value") or ""))
    if parsed is None:
        return
    conversation_id, message_id = parsed
    user_id = body["user"]["id"]
    try:
        view = actions.open_email(
            services_of(context), client, user_id, conversation_id, message_id, mark_read=False
        )
    except AccessDenied:
        refuse(body, client, respond)
        return
    except actions.NotFound:
        show_modal(
            body,
            client,
            notice_modal("Email not found", "This email is no longer in the mailbox."),
        )
        return
    modal = email_modal(view)
    from bot.inbox.triage import add_history  # who changed owner/status/snooze (issue 16)

    show_modal(body, client, add_history(services_of(context), modal, view.conversation_id))
    # The write comes after the modal is open: a busy database never lets the trigger expire.
    actions.mark_opened_read(
        services_of(context), user_id, view.conversation_id, view.message_id, message_id is not None
    )


def step_clicked(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext, respond: Respond
) -> None:
    """Previous / Next in the Open modal: the same modal shows the other email (which the
    service checks belongs to the conversation, for a person in its channel)."""
    ack()
    parsed = parse_open_value(str(body["actions"][0].get("value") or ""))
    modal = body.get("view") or {}
    if parsed is None or parsed[1] is None or not modal.get("id"):
        return
    services, user_id = services_of(context), body["user"]["id"]
    opened = None
    try:
        opened = actions.open_email(services, client, user_id, *parsed, mark_read=False)
    except AccessDenied:
        new = notice_modal("Not allowed", REFUSAL)
    except actions.NotFound:
        new = notice_modal("Email not found", "This email is no longer in the mailbox.")
    else:
        new = email_modal(opened)
    client.views_update(view_id=modal["id"], view=new)
    if opened is not None:  # marked read once shown, as Open does
        actions.mark_opened_read(services, user_id, opened.conversation_id, opened.message_id, True)


def more_selected(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext, respond: Respond
) -> None:
    ack()
    option = body["actions"][0].get("selected_option") or {}
    parsed = parse_overflow_value(str(option.get("value") or ""))
    if parsed is not None:
        run(parsed[0], parsed[1], body, client, context, respond)


def button_clicked(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext, respond: Respond
) -> None:
    ack()
    action = body["actions"][0]
    value = str(action.get("value") or "")
    if value.isdigit():
        run(str(action["action_id"]), int(value), body, client, context, respond)


def run(
    verb: str,
    conversation_id: int,
    body: dict[str, Any],
    client: WebClient,
    context: BoltContext,
    respond: Respond,
) -> None:
    services = services_of(context)
    user_id = body["user"]["id"]
    channel_id = (body.get("channel") or {}).get("id")
    try:
        if verb == ids.CONV_DELETE:
            info = actions.conversation_info(services, client, user_id, conversation_id)
            view = confirm_delete_modal(info.conversation_id, info.subject, channel_id)
            show_modal(body, client, view)
        elif verb == ids.CONV_UNLINK:
            info = actions.conversation_info(services, client, user_id, conversation_id)
            if info.client_name is None:
                return  # nothing linked (a stale menu): nothing to confirm
            view = confirm_unlink_modal(
                info.conversation_id, info.subject, info.client_name, channel_id
            )
            show_modal(body, client, view)
        elif verb == ids.CONV_LINK:
            info = actions.conversation_info(services, client, user_id, conversation_id)
            current = (
                ClientChoice(info.client_id, info.client_name or "")
                if info.client_id is not None
                else None
            )
            view = link_client_modal(info.conversation_id, info.subject, current, channel_id)
            show_modal(body, client, view)
        elif verb == ids.CONV_REPLY_ALL:
            try:
                view = conversation_view(services, client, user_id, "reply_all", conversation_id)
            except ComposeRefused as exc:
                view = cb.notice_view(cb.TITLES["reply_all"], str(exc))
            show_modal(body, client, view)
        elif verb == ids.CONV_ARCHIVE:
            actions.archive(services, client, user_id, conversation_id)
        elif verb == ids.CONV_UNARCHIVE:
            actions.unarchive(services, client, user_id, conversation_id)
        elif verb == ids.CONV_MARK_UNREAD:
            actions.mark_unread(services, client, user_id, conversation_id)
    except AccessDenied:
        refuse(body, client, respond)
    except actions.NotFound:
        log.info("action %s on missing conversation %s", verb, conversation_id)
