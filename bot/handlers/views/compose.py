"""Submitting the compose modal: validate in the ack, write the send row, close at once."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.blocks.state import state_values
from bot.compose.form import ComposeMeta, read_submission
from bot.compose.modal import sendable_accounts
from bot.compose.submit import SubmitResult, enqueue_send, load_send, prepare_send
from bot.handlers.after_ack import tell
from bot.handlers.middleware import services_of
from bot.store.db import read_scope, session_scope
from bot.store.models import Account

log = logging.getLogger(__name__)


def register(app: Any) -> None:
    app.view(ids.VIEW_COMPOSE)(compose_submitted)


def compose_submitted(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    view = body["view"]
    user_id = body["user"]["id"]
    services = services_of(context)
    meta = ComposeMeta.load(view.get("private_metadata"))
    if meta is None:
        ack(response_action="update", view=cb.notice_view("Email", "This form is out of date."))
        return
    values = state_values(view)
    sub, errors = read_submission(values, meta)
    if errors:
        ack(response_action="errors", errors=errors)
        return
    if meta.mode == "new":
        allowed = {a.id for a in sendable_accounts(services, client, user_id)}
        account_id = sub.from_account if sub.from_account in allowed else None
        if account_id is None:
            ack(
                response_action="errors",
                errors={
                    cb.FROM_BLOCK: "You may send only from mailboxes whose channel you are in."
                },
            )
            return
        meta.account_id = account_id
    with read_scope(services.session_factory) as session:
        account = session.get(Account, meta.account_id) if meta.account_id else None
        channel = account.channel_id if account else None
    if account is None or not services.access.can_see_channel(client, user_id, channel):
        ack(
            response_action="update",
            view=cb.notice_view(
                "Email", "You can send only from mailboxes whose channel you are in."
            ),
        )
        return
    # Reads, then the body (parsing the original) without a session, then the ack; the one
    # write follows the ack, so a busy database never makes Slack time out the submit.
    with read_scope(services.session_factory) as session:
        inputs = load_send(session, meta, user_id=user_id, account=account)
    prepared = (
        inputs
        if isinstance(inputs, SubmitResult)
        else prepare_send(inputs, meta, sub, user_id=user_id, account=account)
    )
    if isinstance(prepared, SubmitResult):
        if prepared.problem:
            ack(response_action="update", view=cb.notice_view("Not sent", prepared.problem))
        elif prepared.held and prepared.outbox_id is not None:
            ack(response_action="update", view=cb.held_view(prepared.held, prepared.outbox_id))
        else:
            ack()
        return
    if prepared.held:
        # The row is written just below; the button finds it by its Message-ID.
        ack(response_action="update", view=cb.held_view(prepared.held, meta.message_id))
    else:
        ack()  # closes the modal; "sent" shows in the thread once the server accepted it
    try:
        with session_scope(services.session_factory) as session:
            enqueue_send(session, prepared, user_id=user_id)
    except Exception:
        log.exception("compose: the send row could not be written")
        tell(
            client,
            user_id,
            "Your email was not sent: Mailroom could not queue it. Please send it again.",
        )
