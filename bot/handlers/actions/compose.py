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
from bot.blocks.text import mrkdwn
from bot.compose import saved, signature, thread_reply
from bot.compose.form import ComposeMeta
from bot.compose.modal import (
    ComposeRefused,
    agent_name,
    conversation_view,
    mention_names,
    with_template,
)
from bot.compose.submit import release_held, retry_failed
from bot.handlers.middleware import services_of
from bot.services import Services
from bot.store.db import read_scope, session_scope
from bot.store.models import Account, Outbox, ThreadDraft

log = logging.getLogger(__name__)

MODES = {ids.CONV_REPLY: "reply", ids.CONV_REPLY_ALL: "reply_all", ids.CONV_FORWARD: "forward"}


def register(app: Any) -> None:
    for action_id in MODES:
        app.action(action_id)(compose_clicked)
    app.action(ids.COMPOSE_TEMPLATE_PICK)(template_picked)
    app.action(ids.SEND_RETRY)(retry_clicked)
    app.action(ids.SEND_ANYWAY)(send_anyway_clicked)
    for action_id in (ids.TYPED_SEND, ids.TYPED_SEND_ALL, ids.TYPED_EDIT, ids.TYPED_NOTE):
        app.action(action_id)(typed_clicked)
    app.action(ids.COMPOSE_DISCARD_DRAFT)(discard_draft_clicked)


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
    replying = view.get("callback_id") == ids.VIEW_COMPOSE
    if replying:
        view["notify_on_close"] = True  # Slack then tells us when it closes: the mark clears
    client.views_open(trigger_id=body["trigger_id"], view=view)
    if replying:  # the parent shows "… is replying" while the modal is open (issue 16)
        from bot.inbox.triage import replying_started

        replying_started(services, parsed[0], user_id)


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


# -- the prompt under a message typed in the thread ---------------------------------------------


def _replace_prompt(
    respond: Respond, text: str, blocks: list[dict[str, Any]] | None = None
) -> None:
    done_text, done_blocks = cb.typed_done(text) if blocks is None else (text, blocks)
    respond(text=done_text, blocks=done_blocks, replace_original=True, response_type="ephemeral")


def typed_clicked(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext, respond: Respond
) -> None:
    """Send / Reply all / Edit first / Keep as note. Only the author, still in the channel."""
    ack()
    action = body["actions"][0]
    value = str(action.get("value") or "")
    if not value.isdigit():
        return
    draft_id, user_id = int(value), body["user"]["id"]
    services = services_of(context)
    with read_scope(services.session_factory) as session:
        draft = session.get(ThreadDraft, draft_id)
        owner = (draft.user_id, draft.channel_id, draft.conversation_id) if draft else None
        signed = False
        typed = thread_reply.typed_rich(draft) if draft is not None else None
        if draft is not None:
            account = session.get(Account, draft.account_id)
            signed = account is not None and signature.has_signature(account)
    if owner is None:
        _replace_prompt(respond, "This message is gone from the conversation.")
        return
    author, channel, conversation_id = owner
    if author != user_id:
        _replace_prompt(respond, "Only the person who wrote this message can send it.")
        return
    if not services.access.can_see_channel(client, user_id, channel):
        _replace_prompt(respond, "You can only answer mail of mailboxes whose channel you are in.")
        return
    kind = str(action["action_id"])
    if kind == ids.TYPED_EDIT:
        _edit_first(services, client, body, draft_id, conversation_id)
        return
    # Slack calls before the transaction: the sender's name (signature, note author) and the
    # names of people and channels mentioned in the message (an email shows "@Jane Doe").
    name = agent_name(client, user_id) if signed or kind == ids.TYPED_NOTE else ""
    names = mention_names(client, typed)
    if kind == ids.TYPED_NOTE:
        with session_scope(services.session_factory) as session:
            outcome = thread_reply.keep_as_note(
                session, draft_id, user_id=user_id, author_name=name, names=names
            )
        _tell_outcome(respond, outcome)
        return
    # As the modal's submit: reads, then the build (parsing the original, rendering the
    # signature) with no session open, then one short write.
    mode = "reply_all" if kind == ids.TYPED_SEND_ALL else "reply"
    with read_scope(services.session_factory) as session:
        typed_send = thread_reply.load_send_typed(
            session, draft_id, mode, user_id=user_id, agent_name=name
        )
    if isinstance(typed_send, thread_reply.Outcome):
        _tell_outcome(respond, typed_send)
        return
    prepared = thread_reply.prepare_send_typed(typed_send, user_id=user_id, names=names)
    if isinstance(prepared, thread_reply.Outcome):
        _tell_outcome(respond, prepared)
        return
    with session_scope(services.session_factory) as session:
        outcome = thread_reply.enqueue_send_typed(session, typed_send, prepared, user_id=user_id)
    _tell_outcome(respond, outcome)


def _tell_outcome(respond: Respond, outcome: thread_reply.Outcome) -> None:
    if outcome.problem:
        _replace_prompt(respond, f"Not sent: {outcome.problem}")
    elif not outcome.done:
        already = {
            thread_reply.SENT: "This message was already sent as a reply.",
            thread_reply.NOTE: "This message was already kept as an internal note.",
        }
        _replace_prompt(respond, already.get(outcome.status, "This message was already handled."))
    elif outcome.status == thread_reply.NOTE:
        _replace_prompt(
            respond, "Kept as an internal note on this conversation. Nothing was emailed."
        )
    elif outcome.result is not None and outcome.result.held and outcome.result.outbox_id:
        _, blocks = cb.held_post("", outcome.result.held, outcome.result.outbox_id)
        blocks[0] = {
            "type": "section",
            "text": mrkdwn(
                ":hand: *Not sent yet.* New mail arrived in this conversation after you wrote. "
                "Read it first; your reply is kept."
            ),
        }
        _replace_prompt(respond, "Not sent yet: new mail arrived first.", blocks)
    else:
        _replace_prompt(
            respond, "Sending. It shows in this thread as sent once the mail server accepted it."
        )


def _edit_first(
    services: Services,
    client: WebClient,
    body: dict[str, Any],
    draft_id: int,
    conversation_id: int,
) -> None:
    user_id = body["user"]["id"]
    with read_scope(services.session_factory) as session:
        draft = session.get(ThreadDraft, draft_id)
        if draft is None:
            return
        typed, message_id = thread_reply.typed_rich(draft), draft.message_id
    try:
        view = conversation_view(
            services,
            client,
            user_id,
            "reply",
            conversation_id,
            body_rich=typed,
            thread_draft=draft_id,
            message_id=message_id,
        )
    except ComposeRefused as exc:
        view = cb.notice_view(cb.TITLES["reply"], str(exc))
    client.views_open(trigger_id=body["trigger_id"], view=view)


def discard_draft_clicked(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """Drop the kept draft and show the modal as it would open fresh (new block ids, so
    Slack shows the fresh values rather than the draft's)."""
    ack()
    view = body.get("view") or {}
    value = str(body["actions"][0].get("value") or "")
    meta = ComposeMeta.load(view.get("private_metadata"))
    if not value.isdigit() or meta is None or meta.conversation_id is None:
        return
    services, user_id = services_of(context), body["user"]["id"]
    with session_scope(services.session_factory) as session:
        saved.discard(session, user_id, int(value))
    try:
        fresh = conversation_view(
            services,
            client,
            user_id,
            meta.mode,
            meta.conversation_id,
            meta.source_message,
            message_id=meta.message_id,
            rotation=meta.rotation + 1,
        )
    except ComposeRefused as exc:
        fresh = cb.notice_view(cb.TITLES.get(meta.mode, "Email"), str(exc))
    try:
        client.views_update(view_id=view["id"], hash=view.get("hash"), view=fresh)
    except SlackApiError as exc:
        log.info("draft discard not shown: %s", exc.response.get("error"))
