"""App Home buttons: filters and search, paging, the admin account menu, adding an account
(provider chooser, Test connection), and clients.

Modals open first (a trigger_id lives about 3 s); anything slow (a mailbox round trip) runs
after the ack and lands with views.update, guarded by the view's hash.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks import ids
from bot.blocks.accounts import (
    ConnectionOutcome,
    add_imap_modal,
    edit_modal,
    form_prefill,
    loading_modal,
    oauth_step_modal,
    password_modal,
    provider_chooser_modal,
    read_imap_form,
)
from bot.blocks.clients import client_modal
from bot.blocks.home import CLIENT_QUERY_MAX, HomePages
from bot.blocks.search import PAGE_SIZE
from bot.blocks.state import state_values
from bot.blocks.text import mrkdwn, plain
from bot.handlers.actions.search import search_view
from bot.handlers.middleware import services_of
from bot.handlers.views.accounts import (
    NOT_ADMIN,
    imap_from_form,
    imap_reconnect_target,
    oauth_link_view,
    reconnect_target,
    remove_view,
    request_sync,
    set_paused,
    sync_log_view,
)
from bot.home import publish_home
from bot.services import Services
from bot.store.db import read_scope
from bot.store.models import Account, Client

log = logging.getLogger(__name__)


def notice(title: str, text: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": plain(title, 24),
        "close": plain("Close", 24),
        "blocks": [{"type": "section", "text": mrkdwn(text)}],
    }


def _user(body: dict[str, Any]) -> str:
    return str(body["user"]["id"])


def _value(body: dict[str, Any]) -> str:
    action = body["actions"][0]
    if action.get("selected_option"):
        return str(action["selected_option"].get("value") or "")
    return str(action.get("value") or "")


def _admin_or_refuse(
    services: Services, client: WebClient, body: dict[str, Any], *, in_view: bool = False
) -> bool:
    user_id = _user(body)
    if services.access.is_admin(client, user_id):
        return True
    log.warning("refused admin action %s by %s", body["actions"][0].get("action_id"), user_id)
    try:
        if in_view and body.get("view", {}).get("id"):
            client.views_update(view_id=body["view"]["id"], view=notice("Not allowed", NOT_ADMIN))
        elif body.get("trigger_id"):
            client.views_open(trigger_id=body["trigger_id"], view=notice("Not allowed", NOT_ADMIN))
    except SlackApiError:
        pass
    return False


# -- everyone: filters, search, paging ---------------------------------------------------------


def open_filter(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    filter_name = _value(body) or "all"
    view = search_view(services_of(context), client, _user(body), "", filter_name, 0)
    client.views_open(trigger_id=body["trigger_id"], view=view)


def open_search(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    view = search_view(services_of(context), client, _user(body))
    client.views_open(trigger_id=body["trigger_id"], view=view)


def home_page(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    current = HomePages.from_metadata((body.get("view") or {}).get("private_metadata"))
    section, _, number = _value(body).partition(":")
    page = int(number) if number.isdigit() else 0
    if section == "accounts":
        pages = replace(current, accounts=page)
    elif section == "clients":
        pages = replace(current, clients=page)
    else:
        pages = current
    publish_home(services_of(context), client, _user(body), pages)


# -- admins: accounts --------------------------------------------------------------------------


def add_account(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    services = services_of(context)
    if not _admin_or_refuse(services, client, body):
        return
    client.views_open(
        trigger_id=body["trigger_id"], view=provider_chooser_modal(_missing(services))
    )


def _missing(services: Services) -> dict[str, list[str]]:
    from bot.oauth_connect import missing_settings
    from bot.providers.oauth import PROVIDERS

    return {p: missing_settings(services.settings, p) for p in PROVIDERS}


def provider_picked(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    ack()
    services = services_of(context)
    if not _admin_or_refuse(services, client, body, in_view=True):
        return
    view, provider = body["view"], _value(body)
    if provider == "imap":
        new_view = add_imap_modal()
    elif provider in (missing := _missing(services)):
        if missing[provider]:  # a forged or stale pick: say what is missing
            names = ", ".join(f"`{n}`" for n in missing[provider])
            new_view = notice("Add email account", f"Set {names} first (docs/oauth-providers.md).")
        else:
            new_view = oauth_step_modal(provider)
    else:
        return
    client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)


def oauth_link_opened(ack: Ack) -> None:
    """The sign-in button is a link Slack opens itself; it still sends an action to ack."""
    ack()


def _reconnect(
    services: Services, client: WebClient, trigger_id: str, account_id: int, user_id: str
) -> None:
    imap = imap_reconnect_target(services, account_id)
    if imap is not None:
        client.views_open(
            trigger_id=trigger_id, view=password_modal(account_id=imap[0], email=imap[1])
        )
        return
    opened = client.views_open(
        trigger_id=trigger_id,
        view=loading_modal("Reconnect", "Preparing the sign-in link…", ids.VIEW_ACCOUNT_OAUTH_LINK),
    )
    view_id = opened["view"]["id"]
    account = reconnect_target(services, account_id)
    if account is None:
        view = notice("Reconnect", "Only Gmail and Microsoft 365 accounts sign in again.")
    else:
        view = oauth_link_view(
            services,
            user_id,
            account.provider.value,
            channel_id=account.channel_id,
            interval=account.sync_interval_seconds,
            auto_link=account.auto_link,
            account_id=account.id,
            email=account.email,
        )
    try:
        client.views_update(view_id=view_id, view=view)
    except SlackApiError as exc:
        log.info("reconnect link not shown: %s", exc.response.get("error"))


def test_connection(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """Check the typed settings against the real servers; the result shows in the modal."""
    ack()
    services = services_of(context)
    if not _admin_or_refuse(services, client, body, in_view=True):
        return
    view = body["view"]
    values = state_values(view)
    form, errors = read_imap_form(values)
    prefill = form_prefill(form)
    if errors:
        outcome = ConnectionOutcome(
            False, "Fill in first: " + " ".join(sorted(set(errors.values())))
        )
        client.views_update(
            view_id=view["id"],
            hash=view.get("hash"),
            view=add_imap_modal(values=prefill, outcome=outcome),
        )
        return
    resp = client.views_update(
        view_id=view["id"], hash=view.get("hash"), view=add_imap_modal(values=prefill, testing=True)
    )
    new_hash = (resp.get("view") or {}).get("hash")
    from bot.accounts import check_settings

    imap, smtp = imap_from_form(form)
    result = check_settings(
        imap,
        smtp,
        imap_password=form.imap_password,
        smtp_password=form.smtp_password,
        folders=form.folders,
        generic_network_errors=True,
    )
    outcome = ConnectionOutcome(
        result.ok,
        result.message(),
        tuple(f.name for f in result.imap.folders) if result.ok else (),
    )
    try:
        client.views_update(
            view_id=view["id"],
            hash=new_hash,
            view=add_imap_modal(values=prefill, outcome=outcome),
        )
    except SlackApiError as exc:  # closed or changed meanwhile: nothing to show it in
        log.info("test result not shown: %s", exc.response.get("error"))


def _edit(services: Services, client: WebClient, trigger_id: str, account_id: int) -> None:
    opened = client.views_open(
        trigger_id=trigger_id,
        view=loading_modal("Sync settings", "Reading the folder list…", ids.VIEW_ACCOUNT_EDIT),
    )
    view_id, view_hash = opened["view"]["id"], opened["view"].get("hash")
    from bot.folder_choices import read_choices

    provider, names, error = read_choices(services, account_id)
    with read_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        if account is None:
            client.views_update(view_id=view_id, view=notice("Sync settings", "Account removed."))
            return
        view = edit_modal(
            account_id=account.id,
            email=account.email,
            channel_id=account.channel_id,
            interval=account.sync_interval_seconds,
            folders=list(account.folders or []),
            auto_link=account.auto_link,
            server_folders=names,
            folder_error=error,
            provider=provider,
            signature=account.signature,
            signature_rich=account.signature_rich,
            broadcast=bool((account.config or {}).get("broadcast_followups", True)),
        )
    try:
        client.views_update(view_id=view_id, hash=view_hash, view=view)
    except SlackApiError as exc:
        log.info("edit modal not updated: %s", exc.response.get("error"))


def account_menu(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    services = services_of(context)
    if not _admin_or_refuse(services, client, body):
        return
    verb, _, raw_id = _value(body).partition(":")
    if not raw_id.isdigit():
        return
    account_id, user_id = int(raw_id), _user(body)
    if verb == "reconnect":
        _reconnect(services, client, body["trigger_id"], account_id, user_id)
        return
    if verb == "edit":
        _edit(services, client, body["trigger_id"], account_id)
        return
    if verb == "log":
        view = sync_log_view(services, account_id) or notice("Sync log", "Account removed.")
        client.views_open(trigger_id=body["trigger_id"], view=view)
        return
    if verb == "remove":
        view = remove_view(services, account_id) or notice("Remove account", "Already removed.")
        client.views_open(trigger_id=body["trigger_id"], view=view)
        return
    if verb == "sync_now":
        request_sync(services, account_id, user_id)
    elif verb in {"pause", "resume"}:
        set_paused(services, account_id, verb == "pause", user_id)
    publish_home(services, client, user_id, _pages(body))


def new_email(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    from bot.compose import open_compose

    open_compose(client, body["trigger_id"], _user(body), services_of(context))


def account_sync_now(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """Sync now, for every kind of account: the worker's next tick runs it."""
    ack()
    services = services_of(context)
    if not _admin_or_refuse(services, client, body):
        return
    raw_id = _value(body)
    if raw_id.isdigit():
        request_sync(services, int(raw_id), _user(body))
    publish_home(services, client, _user(body), _pages(body))


def account_edit_connection(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """The connection modal, pre-filled from the stored settings (never a password)."""
    ack()
    services = services_of(context)
    if not _admin_or_refuse(services, client, body):
        return
    from bot.blocks.connection import connection_modal, connection_prefill

    raw_id = _value(body)
    account_id = int(raw_id) if raw_id.isdigit() else 0
    with read_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        found = (account.email, dict(account.config or {})) if account is not None else None
        imap = account is not None and account.provider.value == "imap"
    if found is None or not imap:
        view = notice("Edit connection", "This account no longer exists, or signs in with OAuth.")
    else:
        email, config = found
        view = connection_modal(
            account_id=account_id, email=email, values=connection_prefill(email, config)
        )
    client.views_open(trigger_id=body["trigger_id"], view=view)


def _pages(body: dict[str, Any]) -> HomePages:
    return HomePages.from_metadata((body.get("view") or {}).get("private_metadata"))


# -- clients ------------------------------------------------------------------------------------


def new_client(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    ack()
    client.views_open(trigger_id=body["trigger_id"], view=client_modal())


def client_menu(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    services = services_of(context)
    verb, _, raw_id = _value(body).partition(":")
    if not raw_id.isdigit():
        return
    if verb == "delete":
        from bot.handlers.views.client_admin import delete_view

        if not services.access.is_admin(client, _user(body)):
            client.views_open(
                trigger_id=body["trigger_id"], view=notice("Not allowed", NOT_CLIENT_ADMIN)
            )
            return
        client.views_open(trigger_id=body["trigger_id"], view=delete_view(services, int(raw_id)))
        return
    with read_scope(services.session_factory) as session:
        target = session.get(Client, int(raw_id))
        if target is None:
            client.views_open(trigger_id=body["trigger_id"], view=notice("Client", "Not found."))
            return
        name = target.name
        view = client_modal(
            client_id=target.id,
            name=target.name,
            company=target.company,
            emails=[a.email for a in target.addresses],
            domains=[d.domain for d in target.domains],
            notes=target.notes,
        )
    if verb == "timeline":
        from bot.handlers.commands.inbox import client_page

        message = client_page(services, client, _user(body), name, 0, client_id=int(raw_id))
        blocks = [b for b in message["blocks"] if b.get("block_id") != "nav"][: 2 * PAGE_SIZE + 2]
        view = {
            "type": "modal",
            "title": plain("Client timeline", 24),
            "close": plain("Close", 24),
            "blocks": blocks,
        }
    client.views_open(trigger_id=body["trigger_id"], view=view)


NOT_CLIENT_ADMIN = "Only Mailroom admins can delete or import clients."


def client_search(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """The clients search box (Enter): the list shows the matches, from their first page."""
    ack()
    current = _pages(body)
    query = str(body["actions"][0].get("value") or "").strip()[:CLIENT_QUERY_MAX]
    pages = replace(current, clients=0, client_query=query)
    publish_home(services_of(context), client, _user(body), pages)


def client_search_clear(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    ack()
    pages = replace(_pages(body), clients=0, client_query="")
    publish_home(services_of(context), client, _user(body), pages)


def client_import(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    services = services_of(context)
    if not services.access.is_admin(client, _user(body)):
        client.views_open(
            trigger_id=body["trigger_id"], view=notice("Not allowed", NOT_CLIENT_ADMIN)
        )
        return
    from bot.blocks.clients import import_modal

    client.views_open(trigger_id=body["trigger_id"], view=import_modal())


def register(app: Any) -> None:
    app.action(re.compile(rf"^{ids.HOME_FILTER}(:.*)?$"))(open_filter)
    app.action(ids.HOME_SEARCH)(open_search)
    app.action(re.compile(rf"^{ids.HOME_PAGE}(:.*)?$"))(home_page)
    app.action(ids.HOME_ADD_ACCOUNT)(add_account)
    app.action(ids.ACCOUNT_PROVIDER_PICK)(provider_picked)
    app.action(ids.ACCOUNT_TEST_CONNECTION)(test_connection)
    app.action(ids.ACCOUNT_OAUTH_OPEN)(oauth_link_opened)
    app.action(ids.HOME_ACCOUNT_MENU)(account_menu)
    app.action(ids.HOME_ACCOUNT_SYNC_NOW)(account_sync_now)
    app.action(ids.HOME_NEW_EMAIL)(new_email)
    app.action(ids.HOME_ACCOUNT_EDIT_CONNECTION)(account_edit_connection)
    app.action(ids.HOME_CLIENT_NEW)(new_client)
    app.action(ids.HOME_CLIENT_EDIT)(client_menu)
    app.action(ids.HOME_CLIENT_SEARCH)(client_search)
    app.action(ids.HOME_CLIENT_SEARCH_CLEAR)(client_search_clear)
    app.action(ids.HOME_CLIENT_IMPORT)(client_import)
