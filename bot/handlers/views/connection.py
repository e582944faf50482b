"""The "Edit connection" modal's submission: check the new servers, then save in place.

The check is a network round trip to two servers (up to ~15 s each), far past Slack's 3 s
ack: the submission is acked at once with a "checking" view, the check runs outside any
database session, and the result lands with views.update: the form again with the server's
reason (nothing saved), or a notice that the settings were saved.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.accounts import (
    AccountError,
    ConnectionChange,
    apply_connection_change,
    check_connection_change,
)
from bot.blocks import ids
from bot.blocks.accounts import ConnectionOutcome, account_id_of
from bot.blocks.connection import (
    ConnectionForm,
    connection_form_prefill,
    connection_modal,
    read_connection_form,
)
from bot.blocks.state import state_values
from bot.blocks.text import escape_mrkdwn, mrkdwn, plain
from bot.handlers.views.accounts import _admin_or_refuse
from bot.home import publish_home
from bot.providers.types import ImapSettings, SmtpSettings
from bot.services import Services
from bot.store.db import read_scope, session_scope
from bot.store.models import Account, Provider

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 15.0


def change_from_form(form: ConnectionForm) -> ConnectionChange:
    return ConnectionChange(
        imap=ImapSettings(
            host=form.imap_host,
            port=form.imap_port,
            security=form.imap_security,  # type: ignore[arg-type]
            username=form.imap_username,
            timeout=CHECK_TIMEOUT,
        ),
        smtp=SmtpSettings(
            host=form.smtp_host,
            port=form.smtp_port,
            security=form.smtp_security,  # type: ignore[arg-type]
            username=form.smtp_username,
            timeout=CHECK_TIMEOUT,
        ),
        imap_password=form.imap_password or None,
        smtp_password=form.smtp_password or None,
    )


def keep_private_ca(change: ConnectionChange, config: dict[str, Any]) -> ConnectionChange:
    """A server's private CA certificate (set from the shell) stays with that server: the
    modal has no field for it, and a port or security change must not lose it."""

    def ca(kind: str, host: str) -> str | None:
        stored = config.get(kind) or {}
        return (
            str(stored["ca_file"]) if stored.get("ca_file") and stored.get("host") == host else None
        )

    return replace(
        change,
        imap=replace(change.imap, ca_file=ca("imap", change.imap.host)),
        smtp=replace(change.smtp, ca_file=ca("smtp", change.smtp.host)),
    )


def check_and_save(
    services: Services, account_id: int, form: ConnectionForm, user_id: str
) -> ConnectionOutcome:
    """Test the settings against the servers and store them only if both accept them."""
    with read_scope(services.session_factory) as session:  # read what the check needs
        account = session.get(Account, account_id)
        if account is None or account.provider != Provider.IMAP:
            return ConnectionOutcome(False, "This account no longer exists.")
        credentials = account.credentials
        change = keep_private_ca(change_from_form(form), account.config or {})
    try:
        result = check_connection_change(
            services.vault, credentials, change, generic_network_errors=True
        )
    except AccountError as exc:
        return ConnectionOutcome(False, str(exc))
    if not result.ok:
        return ConnectionOutcome(False, f"Not saved. {result.message()}")
    with session_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        if account is None:
            return ConnectionOutcome(False, "This account no longer exists.")
        try:
            apply_connection_change(session, services.vault, account, change, actor=user_id)
        except AccountError as exc:
            return ConnectionOutcome(False, str(exc))
    return ConnectionOutcome(True, f"Saved. {result.message()}")


def _saved_view(email: str, message: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.VIEW_ACCOUNT_CONNECTION,
        "title": plain("Edit connection", 24),
        "close": plain("Done", 24),
        "blocks": [
            {
                "type": "section",
                "text": mrkdwn(
                    f":white_check_mark: *{escape_mrkdwn(email)}*\n{escape_mrkdwn(message)}\n"
                    "The account syncs now; its mail and conversations are kept."
                ),
            }
        ],
    }


def account_connection_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    admin = _admin_or_refuse(ack, body, client, context)
    if admin is None:
        return
    services, user_id = admin
    account_id = account_id_of(view) or 0
    form, errors = read_connection_form(state_values(view))
    if errors:
        ack(response_action="errors", errors=errors)
        return
    with read_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        email = account.email if account is not None else ""
    prefill = connection_form_prefill(form)
    ack(
        response_action="update",
        view=connection_modal(account_id=account_id, email=email, values=prefill, testing=True),
    )
    outcome = check_and_save(services, account_id, form, user_id)
    if outcome.ok:
        shown = _saved_view(email, outcome.message)
    else:
        shown = connection_modal(
            account_id=account_id, email=email, values=prefill, outcome=outcome
        )
    try:
        client.views_update(view_id=view["id"], view=shown)
    except SlackApiError as exc:  # closed meanwhile: the audit log and the Home still say it
        log.info("connection result not shown: %s", exc.response.get("error"))
    if outcome.ok:
        publish_home(services, client, user_id)


def register(app: Any) -> None:
    app.view(ids.VIEW_ACCOUNT_CONNECTION)(account_connection_submitted)
