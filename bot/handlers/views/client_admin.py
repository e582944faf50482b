"""Admins' client tools: delete a client (after a confirmation) and import a CSV file uploaded
in the modal. Both re-check that the submitter is an admin: the buttons are only shown to
admins, and hiding a button is not access control."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import func, select

from bot.blocks import ids
from bot.blocks.clients import (
    B_CSV_FILE,
    CSV_MAX_BYTES,
    client_id_of,
    delete_modal,
    import_modal,
    import_report_view,
    uploaded_file,
)
from bot.blocks.state import state_values
from bot.blocks.text import mrkdwn, plain
from bot.handlers.middleware import services_of
from bot.home import publish_home
from bot.services import Services
from bot.store.db import read_scope, session_scope
from bot.store.models import Client, ConversationLink

log = logging.getLogger(__name__)

NOT_ADMIN = "Only Mailroom admins can delete or import clients."


def _notice(title: str, text: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": plain(title, 24),
        "close": plain("Close", 24),
        "blocks": [{"type": "section", "text": mrkdwn(text)}],
    }


def delete_view(services: Services, client_id: int) -> dict[str, Any]:
    with read_scope(services.session_factory) as session:
        target = session.get(Client, client_id)
        if target is None:
            return _notice("Delete client", "This client was already deleted.")
        linked = session.scalar(
            select(func.count(ConversationLink.id)).where(ConversationLink.client_id == client_id)
        )
        return delete_modal(
            client_id=client_id, name=target.name, conversation_count=int(linked or 0)
        )


def _refuse(ack: Ack) -> None:
    ack(response_action="update", view=_notice("Not allowed", NOT_ADMIN))


def client_delete_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    from bot.store.clients import ClientError, delete_client

    services = services_of(context)
    user_id = str(body["user"]["id"])
    if not services.access.is_admin(client, user_id):
        _refuse(ack)
        return
    client_id = client_id_of(view)
    try:
        with session_scope(services.session_factory) as session:
            delete_client(session, int(client_id or 0), actor=user_id)
    except ClientError:
        pass  # already gone: the outcome the person asked for
    ack()
    publish_home(services, client, user_id)


def import_csv_text(services: Services, client: WebClient, file: dict[str, Any]) -> str:
    """The uploaded file's text (UTF-8, a BOM allowed). ValueError says what is wrong."""
    from bot.compose.files import DownloadError, download

    name = str(file.get("name") or "file")
    if int(file.get("size") or 0) > CSV_MAX_BYTES:
        raise ValueError(f"{name} is larger than {CSV_MAX_BYTES // (1024 * 1024)} MB.")
    url = str(file.get("url_private_download") or file.get("url_private") or "")
    try:
        got = download(
            url,
            str(client.token or ""),
            name=name,
            mimetype="text/csv",
            files_url=services.settings.slack_files_url,  # the token goes to Slack only
        )
    except DownloadError as exc:
        raise ValueError(f"Could not read the file from Slack: {exc}") from exc
    if len(got.data) > CSV_MAX_BYTES:
        raise ValueError(f"{name} is larger than {CSV_MAX_BYTES // (1024 * 1024)} MB.")
    try:
        return got.data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{name} is not UTF-8 text (byte {exc.start}). Save it as “CSV UTF-8” and try again."
        ) from exc


def client_import_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """Ack with "importing…", read the file and import it, then show the report (every
    skipped line with its number) in the same modal."""
    from bot.store.clients import import_clients_csv

    services = services_of(context)
    user_id = str(body["user"]["id"])
    if not services.access.is_admin(client, user_id):
        _refuse(ack)
        return
    file = uploaded_file(state_values(view))
    if file is None:
        ack(response_action="errors", errors={B_CSV_FILE: "Choose a CSV file to import."})
        return
    ack(
        response_action="update",
        view=_notice("Import clients", ":hourglass_flowing_sand: Importing…"),
    )
    name = str(file.get("name") or "file")
    try:
        text = import_csv_text(services, client, file)
    except ValueError as exc:
        shown = import_modal(error=str(exc))
    else:
        with session_scope(services.session_factory) as session:
            report = import_clients_csv(session, text, actor=user_id)
        shown = import_report_view(
            file_name=name,
            created=len(report.created),
            updated=len(report.updated),
            errors=[(e.line, e.message) for e in report.errors],
        )
    try:
        client.views_update(view_id=view["id"], view=shown)
    except SlackApiError as exc:
        log.info("import report not shown: %s", exc.response.get("error"))
    publish_home(services, client, user_id)


def register(app: Any) -> None:
    app.view(ids.VIEW_CLIENT_DELETE)(client_delete_submitted)
    app.view(ids.VIEW_CLIENT_IMPORT)(client_import_submitted)
