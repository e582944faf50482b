"""The client modal's submission: add or edit a client (anyone may; clients are shared
address-book data, not mailbox settings)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.blocks import ids
from bot.blocks.clients import B_DOMAINS, B_EMAILS, B_NAME, client_id_of, read_client_form
from bot.blocks.state import state_values
from bot.blocks.text import escape_mrkdwn
from bot.handlers.after_ack import write_after_ack
from bot.handlers.middleware import services_of
from bot.home import publish_home
from bot.store.db import read_scope, session_scope

log = logging.getLogger(__name__)


def _error_block(message: str) -> str:
    text = message.lower()
    if "domain" in text:
        return B_DOMAINS
    if "address" in text or "email" in text or "@" in text:
        return B_EMAILS
    return B_NAME


def client_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    from bot.store import clients as store

    services = services_of(context)
    user_id = body["user"]["id"]
    form = read_client_form(state_values(view))
    if not form["name"]:
        ack(response_action="errors", errors={B_NAME: "A client needs a name."})
        return
    client_id = client_id_of(view)
    try:
        with read_scope(services.session_factory) as session:
            store.check_client_form(
                session,
                client_id=client_id,
                name=form["name"],
                emails=form["emails"],
                domains=form["domains"],
            )
    except store.ClientError as exc:
        ack(response_action="errors", errors={_error_block(str(exc)): str(exc)})
        return
    ack()  # the write follows: a busy database never delays the ack

    def save() -> None:
        with session_scope(services.session_factory) as session:
            if client_id is None:
                store.create_client(
                    session,
                    name=form["name"],
                    company=form["company"],
                    emails=form["emails"],
                    domains=form["domains"],
                    notes=form["notes"],
                    actor=user_id,
                )
            else:
                current = store.get_client(session, client_id)
                if current is None:
                    raise store.ClientError("This client was deleted meanwhile.")
                old_emails = {a.email for a in current.addresses}
                old_domains = {d.domain for d in current.domains}
                store.edit_client(
                    session,
                    client_id,
                    name=form["name"],
                    company=form["company"],
                    notes=form["notes"],
                    add_emails=[e for e in form["emails"] if e not in old_emails],
                    remove_emails=sorted(old_emails - set(form["emails"])),
                    add_domains=[d for d in form["domains"] if d not in old_domains],
                    remove_domains=sorted(old_domains - set(form["domains"])),
                    actor=user_id,
                )

    saved = write_after_ack(
        client,
        user_id,
        save,
        failed=f"The client {escape_mrkdwn(form['name'])} was not saved:",
        expected=(store.ClientError,),
    )
    if saved:
        publish_home(services, client, user_id)  # the Home tab lists clients for everyone


def register(app: Any) -> None:
    app.view(ids.VIEW_CLIENT_EDIT)(client_submitted)
