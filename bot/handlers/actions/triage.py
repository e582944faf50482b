"""Take it, Assign…, the triage menu (snooze, done, reopen, unassign) and the App Home's
assignment-DM switch. Ack first; the Assign and Snooze-until modals open at once."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from bot.access import AccessDenied
from bot.blocks import triage as tb
from bot.handlers.actions.conversation import refuse, show_modal
from bot.handlers.middleware import services_of
from bot.inbox import actions, triage
from bot.store.db import read_scope, session_scope
from bot.store.models import utcnow
from bot.store.triage import set_assignment_dms

log = logging.getLogger(__name__)


def register(app: Any) -> None:
    app.action(tb.TAKE)(take_clicked)
    app.action(tb.ASSIGN)(assign_clicked)
    app.action(tb.MENU)(menu_selected)
    app.action(tb.STATUS)(menu_selected)
    app.action(tb.HOME_DMS)(dms_toggled)


def _conversation_id(body: dict[str, Any]) -> int | None:
    value = str(body["actions"][0].get("value") or "")
    return int(value) if value.isdigit() else None


def take_clicked(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext, respond: Respond
) -> None:
    ack()
    cid = _conversation_id(body)
    if cid is None:
        return
    try:
        triage.take(services_of(context), client, body["user"]["id"], cid)
    except AccessDenied:
        refuse(body, client, respond)
    except actions.NotFound:
        log.info("take on missing conversation %s", cid)


def assign_clicked(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext, respond: Respond
) -> None:
    ack()
    cid = _conversation_id(body)
    if cid is None:
        return
    services = services_of(context)
    try:
        info = actions.conversation_info(services, client, body["user"]["id"], cid)
    except AccessDenied:
        refuse(body, client, respond)
        return
    except actions.NotFound:
        return
    with read_scope(services.session_factory) as session:
        from bot.store.models import Conversation

        current = session.get(Conversation, info.conversation_id)
        assignee = current.assignee if current is not None else None
    members = triage.channel_members(services, client, info.channel_id)
    view = tb.assign_modal(info.conversation_id, info.subject, members, assignee, info.channel_id)
    show_modal(body, client, view)


def menu_selected(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext, respond: Respond
) -> None:
    ack()
    action = body["actions"][0]
    option = action.get("selected_option") or {}
    parsed = tb.parse_menu_value(str(option.get("value") or action.get("value") or ""))
    if parsed is None:
        return
    verb, cid = parsed
    services = services_of(context)
    user_id = body["user"]["id"]
    try:
        if verb in (tb.LATER_TODAY, tb.TOMORROW, tb.NEXT_WEEK):
            zone = triage.user_zone(client, user_id)
            until = triage.snooze_until(verb, utcnow(), zone)
            triage.snooze(services, client, user_id, cid, until)
        elif verb == tb.PICK:
            info = actions.conversation_info(services, client, user_id, cid)
            zone = triage.user_zone(client, user_id)
            day = datetime.now(zone).date().isoformat()
            view = tb.snooze_modal(info.conversation_id, info.subject, str(zone), day, None)
            show_modal(body, client, view)
        elif verb == tb.UNSNOOZE:
            triage.unsnooze(services, client, user_id, cid)
        elif verb == tb.DONE:
            triage.mark_done(services, client, user_id, cid)
        elif verb == tb.REOPEN:
            triage.reopen(services, client, user_id, cid)
        elif verb == tb.UNASSIGN:
            triage.assign(services, client, user_id, cid, None)
    except AccessDenied:
        refuse(body, client, respond)
    except actions.NotFound:
        log.info("triage %s on missing conversation %s", verb, cid)


def dms_toggled(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    services = services_of(context)
    user_id = body["user"]["id"]
    enabled = str(body["actions"][0].get("value") or "") == "on"
    with session_scope(services.session_factory) as session:
        set_assignment_dms(session, user_id, enabled)
    from bot.home import publish_home

    publish_home(services, client, user_id)
