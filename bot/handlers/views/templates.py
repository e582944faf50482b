"""Saving a template from its modal: anyone creates one (personal, or shared with the team);
changing one is for its author, or an admin when it is shared. A template that does not render
is refused with its error next to the field."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from sqlalchemy import select

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.blocks import templates as tb
from bot.blocks.state import state_values
from bot.blocks.text import escape_mrkdwn
from bot.compose.form import body_value
from bot.handlers.actions.templates import ADMINS_ONLY, refresh_home
from bot.handlers.after_ack import write_after_ack
from bot.handlers.middleware import services_of
from bot.mail.richtext import rich_text_to_text
from bot.store import audit
from bot.store.db import read_scope, session_scope
from bot.store.models import Template
from bot.store.templates import (
    DuplicateName,
    create_template,
    get_template,
    may_change,
    update_template,
)
from bot.templates import validate_rich


class Refused(Exception):
    """A reason, in words for the person, that a write after the ack did not happen."""


FIELD_BLOCKS = {"name": tb.NAME_BLOCK, "subject": tb.SUBJECT_BLOCK, "body": tb.BODY_BLOCK}


def register(app: Any) -> None:
    app.view(ids.VIEW_TEMPLATE_EDIT)(template_submitted)


def _text(values: dict[str, Any], block_id: str) -> str:
    return str(((values.get(block_id) or {}).get(tb.VALUE) or {}).get("value") or "")


def template_submitted(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    services = services_of(context)
    user_id = body["user"]["id"]
    view = body["view"]
    values = state_values(view)
    template_id = tb.template_id_of(view.get("private_metadata"))
    if template_id is not None:
        is_admin = services.access.is_admin(client, user_id)
        with read_scope(services.session_factory) as session:
            current = get_template(session, template_id)
            allowed = current is None or may_change(current, user_id, is_admin=is_admin)
        if not allowed:
            ack(response_action="update", view=cb.notice_view("Templates", ADMINS_ONLY))
            return
    shared = tb.shared_of(values)
    name, subject = _text(values, tb.NAME_BLOCK).strip(), _text(values, tb.SUBJECT_BLOCK)
    # Stored as cleaned rich text (known elements only, safe link targets) plus its plain text.
    rich = body_value(values, tb.BODY_BLOCK)
    text = rich_text_to_text(rich)
    problems = validate_rich(name, subject, rich)
    if problems:
        ack(
            response_action="errors",
            errors={FIELD_BLOCKS[k]: v[:2000] for k, v in problems.items()},
        )
        return
    with read_scope(services.session_factory) as session:
        taken = session.scalar(
            select(Template.id).where(
                Template.name == name,
                *([Template.id != template_id] if template_id is not None else []),
            )
        )
    if taken is not None:
        ack(response_action="errors", errors={tb.NAME_BLOCK: "Another template has this name."})
        return
    ack()  # the write follows: a busy database never delays the ack

    def save() -> None:
        try:
            _save()
        except DuplicateName as exc:  # saved meanwhile by someone else
            raise Refused("another template has this name now.") from exc

    def _save() -> None:
        fields: dict[str, Any] = {
            "name": name,
            "subject": subject,
            "body": text,
            "user_id": user_id,
            "body_rich": rich,
            "shared": shared,
        }
        with session_scope(services.session_factory) as session:
            found = (
                update_template(session, template_id, **fields) if template_id is not None else None
            )
            # A new template, or one deleted meanwhile: saved as new.
            row = found if found is not None else create_template(session, **fields)
            audit.record(
                session,
                user_id,
                "template.save",
                details={
                    "id": row.id,
                    "name": name,
                    "new": template_id is None,
                    "shared": shared,
                },
            )

    if write_after_ack(
        client,
        user_id,
        save,
        failed=f"The template {escape_mrkdwn(name)} was not saved:",
        expected=(Refused,),
    ):
        refresh_home(services, client, user_id)
