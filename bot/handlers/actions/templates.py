"""App Home template buttons: new (anyone), edit and delete (the author, or an admin for a
shared template: checked here on the stored row, not just hidden)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.blocks.templates import template_edit_view
from bot.handlers.middleware import services_of
from bot.services import Services
from bot.store import audit
from bot.store.db import read_scope, session_scope
from bot.store.templates import delete_template, get_template, may_change

log = logging.getLogger(__name__)

ADMINS_ONLY = "Only its author (or an admin, for a shared template) can change this template."


def register(app: Any) -> None:
    app.action(ids.HOME_TEMPLATE_NEW)(new_clicked)
    app.action(ids.HOME_TEMPLATE_EDIT)(edit_clicked)
    app.action(ids.HOME_TEMPLATE_DELETE)(delete_clicked)


def _value_id(body: dict[str, Any]) -> int | None:
    value = str(body["actions"][0].get("value") or "")
    return int(value) if value.isdigit() else None


def refresh_home(services: Services, client: WebClient, user_id: str) -> None:
    try:
        from bot.home import publish_home
    except ImportError:
        return
    publish_home(services, client, user_id)


def new_clicked(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()  # anyone writes templates: personal, or shared with the team
    client.views_open(trigger_id=body["trigger_id"], view=template_edit_view(None))


def edit_clicked(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    services = services_of(context)
    user_id = body["user"]["id"]
    is_admin = services.access.is_admin(client, user_id)
    template_id = _value_id(body)
    with read_scope(services.session_factory) as session:
        tpl = get_template(session, template_id) if template_id is not None else None
        if tpl is not None and not may_change(tpl, user_id, is_admin=is_admin):
            view = cb.notice_view("Templates", ADMINS_ONLY)
        elif tpl is not None:
            view = template_edit_view(
                tpl.id,
                name=tpl.name,
                subject=tpl.subject,
                body=tpl.body,
                body_rich=tpl.body_rich,
                shared=tpl.shared,
            )
        else:
            view = cb.notice_view("Templates", "That template was deleted.")
    client.views_open(trigger_id=body["trigger_id"], view=view)


def delete_clicked(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    # The button carries Slack's own confirm dialog: this runs after "Delete" was confirmed.
    ack()
    services = services_of(context)
    user_id = body["user"]["id"]
    is_admin = services.access.is_admin(client, user_id)
    template_id = _value_id(body)
    if template_id is None:
        return
    with session_scope(services.session_factory) as session:
        tpl = get_template(session, template_id)
        if tpl is not None and not may_change(tpl, user_id, is_admin=is_admin):
            log.warning("%s may not delete template %s", user_id, template_id)
            return
        name = tpl.name if tpl else None
        if delete_template(session, template_id):
            audit.record(
                session, user_id, "template.delete", details={"id": template_id, "name": name}
            )
    refresh_home(services, client, user_id)
