"""Account admin: the add / edit / remove modals' submissions, and the small store updates
behind the Home tab's account menu. Every entry point checks the caller is an admin itself:
hiding a button is not access control (a forged request must change nothing)."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.blocks import ids
from bot.blocks.accounts import (
    B_SIGNATURE,
    ImapForm,
    RunSummary,
    SyncSettingsForm,
    account_id_of,
    oauth_link_modal,
    oauth_provider_of,
    read_imap_form,
    read_oauth_form,
    read_shared_mailbox,
    read_signature,
    read_sync_settings,
    remove_modal,
    sync_log_modal,
)
from bot.blocks.state import state_values
from bot.blocks.text import escape_mrkdwn, truncate
from bot.compose.signature import check as signature_check
from bot.handlers.after_ack import write_after_ack
from bot.handlers.middleware import services_of
from bot.home import publish_home
from bot.mail.richtext import is_blank, rich_text_to_text
from bot.providers.types import ImapSettings, SmtpSettings
from bot.services import Services
from bot.store.db import read_scope, session_scope
from bot.store.models import (
    Account,
    AccountStatus,
    AuditLog,
    Conversation,
    Provider,
    SyncRun,
    utcnow,
)

log = logging.getLogger(__name__)

NOT_ADMIN = "Only Mailroom admins can change email accounts."
LINK_TIMEOUT = 2.0  # seconds for Microsoft's tenant discovery inside the 3 s ack window


class NotAdmin(Exception):
    pass


def require_admin(services: Services, client: WebClient, user_id: str) -> None:
    if not services.access.is_admin(client, user_id):
        log.warning("refused admin action by non-admin %s", user_id)
        raise NotAdmin(NOT_ADMIN)


# -- store updates (each in its own transaction, each audited) -------------------------------


# Test connection waits this long for a server; a failure before a mail server answered is
# reported only after it, whatever the failure (bot/accounts.py `_generic`).
FORM_TIMEOUT = 10.0


def imap_from_form(form: ImapForm) -> tuple[ImapSettings, SmtpSettings]:
    return (
        ImapSettings(
            host=form.imap_host,
            port=form.imap_port,
            security=form.imap_security,  # type: ignore[arg-type]
            username=form.imap_username,
            timeout=FORM_TIMEOUT,
        ),
        SmtpSettings(
            host=form.smtp_host,
            port=form.smtp_port,
            security=form.smtp_security,  # type: ignore[arg-type]
            username=form.smtp_username,
            timeout=FORM_TIMEOUT,
        ),
    )


def add_account(services: Services, form: ImapForm, user_id: str) -> int:
    from bot.accounts import create_imap_account

    imap, smtp = imap_from_form(form)
    with session_scope(services.session_factory) as session:
        account = create_imap_account(
            session,
            services.vault,
            email=form.email,
            imap=imap,
            smtp=smtp,
            imap_password=form.imap_password,
            smtp_password=form.smtp_password,
            channel_id=form.channel_id,
            sync_interval_seconds=form.interval,
            folders=form.folders,
            auto_link=form.auto_link,
            created_by=user_id,
        )
        return account.id


def save_settings_and_signature(
    services: Services,
    account_id: int,
    form: SyncSettingsForm,
    signature: dict[str, Any],
    user_id: str,
) -> bool:
    """The account edit form's one write (settings and signature together, after the ack).
    False if the account is gone."""
    with session_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        if account is None:
            return False
        store_sync_settings(session, account, form, user_id)
        store_signature(session, account, signature, user_id)
        return True


def store_sync_settings(
    session: Session, account: Account, form: SyncSettingsForm, user_id: str
) -> None:
    """Store the settings; the next run (due now) uses them."""
    before = {
        "channel_id": account.channel_id,
        "interval": account.sync_interval_seconds,
        "folders": list(account.folders or []),
        "auto_link": account.auto_link,
    }
    account.channel_id = form.channel_id
    account.sync_interval_seconds = form.interval
    account.folders = list(form.folders)
    from bot.folder_choices import remember_names

    account.config = remember_names(account.config, form.folders, form.folder_names)
    account.auto_link = form.auto_link
    if form.broadcast is not None:
        account.config = {**(account.config or {}), "broadcast_followups": form.broadcast}
    account.next_sync_at = utcnow()
    session.add(
        AuditLog(
            actor=user_id,
            action="account.settings",
            account_id=account.id,
            details={"before": before, "after": {**before, **_form_dict(form)}},
        )
    )


def store_signature(session: Session, account: Account, rich: dict[str, Any], user_id: str) -> None:
    """The signature added below mail sent from Slack (checked by the caller): the cleaned
    rich text that is sent, and its plain text."""
    blank = is_blank(rich)
    text = "" if blank else rich_text_to_text(rich).strip()
    if (account.signature or "") == text and (account.signature_rich or None) == (
        None if blank else rich
    ):
        return
    account.signature = text or None
    account.signature_rich = None if blank else rich
    session.add(AuditLog(actor=user_id, action="account.signature", account_id=account.id))


def _form_dict(form: SyncSettingsForm) -> dict[str, Any]:
    return {
        "channel_id": form.channel_id,
        "interval": form.interval,
        "folders": list(form.folders),
        "auto_link": form.auto_link,
    }


def set_paused(services: Services, account_id: int, paused: bool, user_id: str) -> bool:
    with session_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        if account is None:
            return False
        if paused:
            account.status = AccountStatus.PAUSED
        else:
            # Resuming is also how an admin says "credentials fixed, try again".
            account.status = AccountStatus.ACTIVE
            account.consecutive_failures = 0
            account.last_error = None
            account.next_sync_at = utcnow()
        session.add(
            AuditLog(
                actor=user_id,
                action="account.pause" if paused else "account.resume",
                account_id=account_id,
            )
        )
        return True


def request_sync(services: Services, account_id: int, user_id: str) -> bool:
    """Make the account due now: the worker's next tick claims and runs it (the worker may be
    another process, so this goes through the store, not an in-process call)."""
    with session_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        if account is None:
            return False
        account.next_sync_at = utcnow()
        if account.status == AccountStatus.NEEDS_REAUTH:
            account.status = AccountStatus.ERROR  # syncable again; a failed login flips it back
        session.add(AuditLog(actor=user_id, action="account.sync_now", account_id=account_id))
        return True


def remove(services: Services, account_id: int, user_id: str) -> str | None:
    """Delete the account and its synced data; returns the address removed."""
    from bot.accounts import remove_account
    from bot.sync.push import close

    close(services, account_id)  # stop the Gmail watch / Graph subscription first (issue 18)
    with session_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        if account is None:
            return None
        email = account.email
        remove_account(session, email, actor=user_id)
        return email


def sync_log_view(services: Services, account_id: int, limit: int = 30) -> dict[str, Any] | None:
    with read_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        if account is None:
            return None
        runs = session.scalars(
            select(SyncRun)
            .where(SyncRun.account_id == account_id)
            .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
            .limit(limit)
        ).all()
        summaries = [
            RunSummary(
                started_at=r.started_at,
                finished_at=r.finished_at,
                trigger=r.trigger,
                status=r.status.value,
                new_count=r.new_count,
                changed_count=r.changed_count,
                removed_count=r.removed_count,
                error=r.error,
                problems=tuple(r.problems or ()),
            )
            for r in runs
        ]
        return sync_log_modal(email=account.email, runs=summaries)


def remove_view(services: Services, account_id: int) -> dict[str, Any] | None:
    with read_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        if account is None:
            return None
        count = session.scalar(
            select(func.count(Conversation.id)).where(Conversation.account_id == account_id)
        )
        return remove_modal(
            account_id=account_id, email=account.email, conversation_count=count or 0
        )


# -- view_submission listeners -----------------------------------------------------------------


def _refuse(ack: Ack) -> None:
    ack(
        response_action="update",
        view={
            "type": "modal",
            "title": {"type": "plain_text", "text": "Not allowed"},
            "close": {"type": "plain_text", "text": "Close"},
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": NOT_ADMIN}}],
        },
    )


def _admin_or_refuse(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> tuple[Services, str] | None:
    """(services, user id) when the submitter is an admin; otherwise refuse in the modal."""
    services = services_of(context)
    user_id = str(body["user"]["id"])
    if not services.access.is_admin(client, user_id):
        _refuse(ack)
        return None
    return services, user_id


def account_add_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    admin = _admin_or_refuse(ack, body, client, context)
    if admin is None:
        return
    services, user_id = admin
    values = state_values(view)
    form, errors = read_imap_form(values)
    if errors:
        ack(response_action="errors", errors=errors)
        return
    from bot.accounts import AccountError, get_account
    from bot.blocks.accounts import B_EMAIL

    with read_scope(services.session_factory) as session:
        taken = get_account(session, form.email) is not None
    if taken:
        email = form.email.strip().lower()
        ack(response_action="errors", errors={B_EMAIL: f"An account for {email} exists already."})
        return
    ack()  # the write follows: a busy database never delays the ack
    if write_after_ack(
        client,
        user_id,
        lambda: add_account(services, form, user_id),
        failed=f"{escape_mrkdwn(form.email)} was not added:",
        expected=(AccountError,),
    ):
        _join_channel(client, form.channel_id)
        publish_home(services, client, user_id)


def _join_channel(client: WebClient, channel_id: str | None) -> None:
    """Public channels can be joined by the bot; private ones need an invitation."""
    if not channel_id:
        return
    try:
        client.conversations_join(channel=channel_id)
    except Exception as exc:  # not fatal: posting will say so, and the admin can invite us
        log.info("could not join %s: %s", channel_id, exc)


def account_edit_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    admin = _admin_or_refuse(ack, body, client, context)
    if admin is None:
        return
    services, user_id = admin
    account_id = account_id_of(view)
    form, errors = read_sync_settings(state_values(view))
    sig = read_signature(state_values(view))
    sig_problem = signature_check(sig)
    if sig_problem:
        errors[B_SIGNATURE] = sig_problem
    if errors:
        ack(response_action="errors", errors=errors)
        return
    with read_scope(services.session_factory) as session:
        exists = account_id is not None and session.get(Account, account_id) is not None
    if account_id is None or not exists:
        ack(response_action="errors", errors={"acc_channel": "This account no longer exists."})
        return
    ack()  # the write follows: a busy database never delays the ack
    if write_after_ack(
        client,
        user_id,
        lambda: save_settings_and_signature(services, account_id, form, sig, user_id),
        failed="The account's settings were not saved:",
    ):
        _join_channel(client, form.channel_id)
        publish_home(services, client, user_id)


def account_remove_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    admin = _admin_or_refuse(ack, body, client, context)
    if admin is None:
        return
    services, user_id = admin
    account_id = account_id_of(view)
    ack()
    if account_id is not None:
        remove(services, account_id, user_id)
    publish_home(services, client, user_id)


# -- Gmail / Microsoft 365 (OAuth) -------------------------------------------------------------


def notice_view(title: str, text: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.VIEW_ACCOUNT_OAUTH_LINK,
        "title": {"type": "plain_text", "text": title[:24]},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}],
    }


def oauth_link_view(
    services: Services,
    user_id: str,
    provider: str,
    *,
    channel_id: str | None = None,
    interval: int = 300,
    auto_link: bool = True,
    account_id: int | None = None,
    email: str | None = None,
    timeout: float | None = None,
    folders: tuple[str, ...] = (),
    mailbox: str | None = None,
) -> dict[str, Any]:
    """The modal with the sign-in link, or one saying why there is none. Microsoft's needs
    one request to its sign-in service (tenant discovery), bounded by ``timeout``."""
    from bot.blocks.text import escape_mrkdwn
    from bot.oauth_connect import connect_url
    from bot.providers.errors import ProviderError

    try:
        url = connect_url(
            services,
            user_id=user_id,
            provider=provider,
            channel_id=channel_id,
            interval=interval,
            auto_link=auto_link,
            account_id=account_id,
            timeout=timeout,
            folders=folders,
            mailbox=mailbox,
        )
    except ProviderError as exc:
        log.warning("no %s sign-in link: %s", provider, exc)
        return notice_view("Cannot sign in", f":x: {escape_mrkdwn(str(exc))}")
    return oauth_link_modal(provider, url, email=email)


def reconnect_target(services: Services, account_id: int) -> Account | None:
    """The account to reconnect, when it is a Gmail / Microsoft 365 one."""
    with read_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        if account is None or account.provider not in (Provider.GMAIL, Provider.GRAPH):
            return None
        session.expunge(account)
        return account


def imap_reconnect_target(services: Services, account_id: int) -> tuple[int, str] | None:
    """(id, address) of an IMAP account whose password may be re-entered."""
    with read_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        if account is None or account.provider != Provider.IMAP:
            return None
        return account.id, account.email


# The new password is checked inside the ack (Slack waits 3 s for it): short timeouts, IMAP only.
PASSWORD_CHECK_TIMEOUT = 2.0


def account_password_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    admin = _admin_or_refuse(ack, body, client, context)
    if admin is None:
        return
    services, user_id = admin
    from bot.accounts import AccountError, check_passwords, store_passwords
    from bot.blocks.accounts import B_IMAP_PW, read_password_form

    imap_pw, smtp_pw, errors = read_password_form(state_values(view))
    if errors:
        ack(response_action="errors", errors=errors)
        return
    account_id = json.loads(view.get("private_metadata") or "{}").get("account_id")
    with read_scope(services.session_factory) as session:
        account = session.get(Account, int(account_id or 0))
    if account is None:
        ack(response_action="errors", errors={B_IMAP_PW: "This account no longer exists."})
        return
    # The login (network) runs with no session open; the write follows the ack.
    try:
        result = check_passwords(
            account,
            imap_password=imap_pw,
            smtp_password=smtp_pw,
            timeout=PASSWORD_CHECK_TIMEOUT,
            check_smtp=False,
            generic_network_errors=True,
        )
    except AccountError as exc:
        ack(response_action="errors", errors={B_IMAP_PW: str(exc)})
        return
    if not result.ok:
        ack(response_action="errors", errors={B_IMAP_PW: truncate(result.message(), 1900)})
        return
    ack()
    with session_scope(services.session_factory) as session:
        stored = session.get(Account, account.id)
        if stored is None:
            return
        store_passwords(
            services, session, stored, imap_password=imap_pw, smtp_password=smtp_pw, actor=user_id
        )
    publish_home(services, client, user_id)


def account_oauth_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """Channel, frequency and auto-link chosen: show the sign-in link."""
    admin = _admin_or_refuse(ack, body, client, context)
    if admin is None:
        return
    services, user_id = admin
    provider = oauth_provider_of(view)
    if provider is None:
        ack(response_action="update", view=notice_view("Add email account", "Unknown provider."))
        return
    form, errors = read_oauth_form(state_values(view), provider)
    mailbox = read_shared_mailbox(state_values(view), errors) if provider == "graph" else None
    if errors:
        ack(response_action="errors", errors=errors)
        return
    # Built before the ack and sent in it: a views.update after an "update" ack could race
    # with Slack applying the ack. Hence the bounded wait for Microsoft's discovery.
    link = oauth_link_view(
        services,
        user_id,
        provider,
        channel_id=form.channel_id,
        interval=form.interval,
        auto_link=form.auto_link,
        timeout=LINK_TIMEOUT,
        folders=form.folders,
        mailbox=mailbox,
    )
    ack(response_action="update", view=link)


def register(app: Any) -> None:
    app.view(ids.VIEW_ACCOUNT_PASSWORD)(account_password_submitted)
    app.view(ids.VIEW_ACCOUNT_OAUTH)(account_oauth_submitted)
    app.view(ids.VIEW_ACCOUNT_ADD)(account_add_submitted)
    app.view(ids.VIEW_ACCOUNT_EDIT)(account_edit_submitted)
    app.view(ids.VIEW_ACCOUNT_REMOVE)(account_remove_submitted)
