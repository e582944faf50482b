"""Submitting the compose modal: validate in the ack, write the send row, close at once."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.blocks.state import state_values
from bot.compose import saved, signature, thread_reply
from bot.compose.files import size_problem
from bot.compose.form import ComposeMeta, read_submission
from bot.compose.modal import agent_name, mention_names, sendable_accounts
from bot.compose.submit import SubmitResult, enqueue_send, load_send, prepare_send
from bot.handlers.after_ack import tell
from bot.handlers.middleware import services_of
from bot.store.db import read_scope, session_scope
from bot.store.models import Account

log = logging.getLogger(__name__)


def register(app: Any) -> None:
    app.view(ids.VIEW_COMPOSE)(compose_submitted)
    app.view_closed(ids.VIEW_COMPOSE)(compose_closed)


def _replying_ended(context: BoltContext, view: dict[str, Any], user_id: str) -> None:
    """The "is replying" mark on the parent clears (issue 16)."""
    from bot.inbox.triage import replying_ended

    meta = ComposeMeta.load(view.get("private_metadata"))
    if meta is not None and meta.conversation_id is not None:
        replying_ended(services_of(context), meta.conversation_id, user_id)


def compose_closed(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """Closed with text in it: keep it as this person's draft for the conversation; either
    way the person is no longer replying."""
    ack()
    view = body.get("view") or {}
    _replying_ended(context, view, body["user"]["id"])
    meta = ComposeMeta.load(view.get("private_metadata"))
    if meta is None or meta.conversation_id is None:
        return
    with session_scope(services_of(context).session_factory) as session:
        saved.keep(session, body["user"]["id"], meta, state_values(view))


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
        signed = account is not None and signature.has_signature(account)
        too_big = (
            size_problem(account.provider.value, [f.size for f in sub.files]) if account else None
        )
    if account is None or not services.access.can_see_channel(client, user_id, channel):
        ack(
            response_action="update",
            view=cb.notice_view(
                "Email", "You can send only from mailboxes whose channel you are in."
            ),
        )
        return
    if too_big:  # over what this mailbox's way of sending takes: say so before sending
        ack(response_action="errors", errors={cb.FILES_BLOCK: too_big})
        return
    # Slack calls before any session: the sender's name (signature variables) and the
    # names of people and channels mentioned in the body.
    name = agent_name(client, user_id) if signed else ""
    sub.names = mention_names(client, sub.body_rich)
    # Reads, then the body (parsing the original) and the signature (rendered in its child
    # process) without a session, then the ack; the writes follow the ack, so a busy database
    # never makes Slack time out the submit.
    sig_source = None
    with read_scope(services.session_factory) as session:
        inputs = load_send(session, meta, user_id=user_id, account=account)
        if not isinstance(inputs, SubmitResult):
            if meta.thread_draft is not None:
                sub.files += thread_reply.files_for(session, meta.thread_draft, user_id)
            sig_source = signature.load(
                session,
                account,
                conversation_id=inputs.conversation_id,
                source_pk=meta.source_message,
                agent_name=name,
            )
    prepared = (
        inputs
        if isinstance(inputs, SubmitResult)
        else prepare_send(
            inputs,
            meta,
            sub,
            user_id=user_id,
            account=account,
            signature=signature.render_loaded(sig_source),
        )
    )
    if isinstance(prepared, SubmitResult):
        if prepared.problem:
            ack(response_action="update", view=cb.notice_view("Not sent", prepared.problem))
        elif prepared.held and prepared.outbox_id is not None:
            ack(response_action="update", view=cb.held_view(prepared.held, prepared.outbox_id))
        else:
            ack()
        _replying_ended(context, view, user_id)
        return
    if prepared.held:
        # The row is written just below; the button finds it by its Message-ID.
        ack(response_action="update", view=cb.held_view(prepared.held, meta.message_id))
    else:
        ack()  # closes the modal; "sent" shows in the thread once the server accepted it
    try:
        with session_scope(services.session_factory) as session:
            result = enqueue_send(session, prepared, user_id=user_id)
            saved.drop(session, user_id, meta.conversation_id)
            if meta.thread_draft is not None:
                thread_reply.sent_from_modal(session, meta.thread_draft, result.outbox_id)
    except Exception:
        log.exception("compose: the send row could not be written")
        tell(
            client,
            user_id,
            "Your email was not sent: Mailroom could not queue it. Please send it again.",
        )
    _replying_ended(context, view, user_id)  # written (or held): no longer "is replying"
