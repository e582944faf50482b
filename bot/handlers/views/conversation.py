"""Submissions of the Delete / Unlink confirmations and the Link-to-client modal.

Access and a vanished conversation or client are checked with reads before the ack, so a
refusal still shows in the modal; the change (a write) follows the ack, so a busy database
never makes Slack time out. The Slack and mailbox effects run later from the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.access import AccessDenied
from bot.blocks import ids
from bot.blocks.confirm import parse_metadata
from bot.blocks.email_modal import notice_modal
from bot.blocks.link_client import LINK_BLOCK, selected_client_id
from bot.handlers.actions.conversation import REFUSAL
from bot.handlers.middleware import services_of
from bot.inbox import actions
from bot.services import Services
from bot.store.db import read_scope
from bot.store.models import Client

log = logging.getLogger(__name__)


def register(app: Any) -> None:
    app.view(ids.VIEW_CONFIRM_DELETE)(delete_confirmed)
    app.view(ids.VIEW_CONFIRM_UNLINK)(unlink_confirmed)
    app.view(ids.VIEW_LINK_CLIENT)(link_submitted)


def _refused(ack: Ack) -> None:
    ack(response_action="update", view=notice_modal("Not allowed", REFUSAL))


def _gone(ack: Ack) -> None:
    ack(response_action="update", view=notice_modal("Not found", "This conversation is gone."))


def _confirmed(
    action: Callable[[Services, WebClient, str, int], object],
) -> Callable[[Ack, dict[str, Any], WebClient, BoltContext], None]:
    """A confirmation modal's submit: run the service action on the conversation it names."""

    def submitted(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        meta = parse_metadata(body["view"].get("private_metadata"))
        if meta is None:
            _gone(ack)
            return
        services, user_id = services_of(context), body["user"]["id"]
        try:  # reads only before the ack; the action (a write) follows it
            actions.conversation_info(services, client, user_id, meta[0])
        except AccessDenied:
            _refused(ack)
            return
        except actions.NotFound:
            _gone(ack)
            return
        ack()
        try:
            action(services, client, user_id, meta[0])
        except (AccessDenied, actions.NotFound) as exc:  # changed in between: nothing done
            log.info("confirmed action not done: %s", exc)

    return submitted


delete_confirmed = _confirmed(actions.delete)
unlink_confirmed = _confirmed(actions.unlink_client)


def link_submitted(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    view = body["view"]
    meta = parse_metadata(view.get("private_metadata"))
    if meta is None:
        _gone(ack)
        return
    client_id = selected_client_id(view)
    if client_id is None:
        ack(response_action="errors", errors={LINK_BLOCK: "Pick a client."})
        return
    services, user_id = services_of(context), body["user"]["id"]
    try:  # reads only before the ack; the link (a write) follows it
        actions.conversation_info(services, client, user_id, meta[0])
    except AccessDenied:
        _refused(ack)
        return
    except actions.NotFound:
        _gone(ack)
        return
    with read_scope(services.session_factory) as session:
        exists = session.get(Client, client_id) is not None
    if not exists:
        ack(response_action="errors", errors={LINK_BLOCK: "That client no longer exists."})
        return
    ack()
    try:
        actions.link_client(services, client, user_id, meta[0], client_id)
    except (AccessDenied, actions.NotFound) as exc:  # changed in between: nothing done
        log.info("link not done: %s", exc)
