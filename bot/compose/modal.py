"""Building the compose modal for a person: new mail, reply, reply all, forward, template fill.

These functions read the store and ask Slack who the person is; they never talk to a mailbox, so
a listener can call them within Slack's 3 s.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.blocks.state import state_values
from bot.blocks.text import escape_mrkdwn
from bot.compose.drafts import DraftError, finish_draft, load_draft, template_variables
from bot.compose.form import ComposeMeta, format_addresses
from bot.mail.compose import HeaderError, make_message_id, parse_address_list
from bot.services import Services
from bot.store.db import read_scope
from bot.store.models import Account, AccountStatus, Attachment, Conversation, Message
from bot.store.templates import get_template, list_templates
from bot.templates import TemplateProblem, render

log = logging.getLogger(__name__)


class ComposeRefused(Exception):
    """A person-facing reason the modal cannot open (no access, gone…)."""


def agent_name(client: WebClient, user_id: str) -> str:
    try:
        user = client.users_info(user=user_id)["user"]
    except (SlackApiError, KeyError, TypeError):
        return ""
    profile = user.get("profile") or {}
    return str(
        profile.get("real_name") or user.get("real_name") or profile.get("display_name") or ""
    )


def _message_id_for(email: str) -> str:
    domain = email.rsplit("@", 1)[-1] if "@" in email else ""
    try:
        return make_message_id(domain)
    except HeaderError:
        return make_message_id("mailroom.invalid")


def _templates(services: Services) -> list[tuple[int, str]]:
    with read_scope(services.session_factory) as session:
        return [(t.id, t.name) for t in list_templates(session)]


def sendable_accounts(services: Services, client: WebClient, user_id: str) -> list[Account]:
    """Accounts whose channel the person is in: the only ones they may send from."""
    with read_scope(services.session_factory) as session:
        accounts = list(
            session.scalars(
                select(Account)
                .where(Account.channel_id.is_not(None), Account.status != AccountStatus.PAUSED)
                .order_by(Account.email)
            )
        )
        session.expunge_all()
    channels = [a.channel_id for a in accounts if a.channel_id]
    visible = services.access.visible_channels(client, user_id, channels)
    return [a for a in accounts if a.channel_id in visible]


def new_mail_view(services: Services, client: WebClient, user_id: str) -> dict[str, Any]:
    accounts = sendable_accounts(services, client, user_id)
    if not accounts:
        return cb.notice_view(
            "New email",
            "You are not a member of any mailbox's channel, so there is no address you may "
            "send from. Ask an admin to add you to the channel of the mailbox you need.",
        )
    first = accounts[0]
    meta = ComposeMeta(mode="new", message_id=_message_id_for(first.email), account_id=first.id)
    form = cb.ComposeForm(
        mode="new",
        metadata=meta.dump(),
        from_options=[
            (a.id, f"{a.display_name} <{a.email}>" if a.display_name else a.email) for a in accounts
        ],
        from_selected=first.id,
        templates=_templates(services),
    )
    return cb.compose_view(form)


def open_compose(
    client: WebClient, trigger_id: str, user_id: str, services: Services
) -> dict[str, Any]:
    """Open the new-mail modal (for `/inbox compose` and the global shortcut)."""
    resp = client.views_open(trigger_id=trigger_id, view=new_mail_view(services, client, user_id))
    return dict(resp.get("view") or {})


def conversation_view(
    services: Services,
    client: WebClient,
    user_id: str,
    mode: str,
    conversation_id: int,
    message_pk: int | None = None,
) -> dict[str, Any]:
    """The reply / reply-all / forward modal; ComposeRefused when the person may not."""
    with read_scope(services.session_factory) as session:
        try:
            inputs = load_draft(session, mode, conversation_id, message_pk)
        except DraftError as exc:
            raise ComposeRefused(str(exc)) from exc
        start = inputs.start
        channel = start.account.channel_id
        account_email = start.account.email
        conv_id = start.conversation.id if start.conversation else None
        source_pk = start.source.id if start.source else None
        source = start.source
        sender = ""
        if source is not None:
            sender = (
                f"{source.from_name} <{source.from_email}>"
                if source.from_name
                else source.from_email
            )
    if not services.access.can_see_channel(client, user_id, channel):
        raise ComposeRefused("You can only answer mail of mailboxes whose channel you are in.")
    start = finish_draft(inputs)  # parses the original: after the session, not inside it
    meta = ComposeMeta(
        mode=mode,
        message_id=_message_id_for(account_email),
        account_id=start.account.id,
        conversation_id=conv_id,
        source_message=source_pk,
        newest_seen=start.newest_seen,
    )
    verb = "Forwarding" if mode == "forward" else "Replying to"
    form = cb.ComposeForm(
        mode=mode,
        metadata=meta.dump(),
        to=format_addresses(start.to),
        cc=format_addresses(start.cc),
        subject=start.subject,
        context=f"{verb} {escape_mrkdwn(sender)} · from {escape_mrkdwn(account_email)}",
        templates=_templates(services),
        forward_attachments=start.forward_attachments,
    )
    return cb.compose_view(form)


def _state_text(values: dict[str, Any], block_id: str) -> str:
    return str(((values.get(block_id) or {}).get(cb.VALUE) or {}).get("value") or "")


def with_template(
    services: Services,
    client: WebClient,
    user_id: str,
    view: dict[str, Any],
    template_id: int,
) -> dict[str, Any] | None:
    """The same modal with the template's subject and body filled in (None: not a compose view).

    Subject/body block_ids rotate so the new initial values show; everything else keeps its
    block_id, so Slack keeps what the person typed there.
    """
    meta = ComposeMeta.load(view.get("private_metadata"))
    if meta is None:
        return None
    values = state_values(view)
    to_text = _state_text(values, cb.TO_BLOCK)
    contact = None
    if meta.mode in ("new", "forward"):
        addrs, _ = parse_address_list(to_text)
        contact = addrs[0] if addrs else None
    account_id = meta.account_id
    if meta.mode == "new":
        picked = ((values.get(cb.FROM_BLOCK) or {}).get(ids.COMPOSE_FROM) or {}).get(
            "selected_option"
        ) or {}
        try:
            account_id = int(str(picked.get("value")))
        except (TypeError, ValueError):
            pass
    if not _may_see_all(services, client, user_id, account_id, meta):
        return cb.notice_view(
            "Email", "You can only use mail of mailboxes whose channel you are in."
        )
    name = agent_name(client, user_id)
    with read_scope(services.session_factory) as session:
        template = get_template(session, template_id)
        variables = template_variables(
            session,
            account_id=account_id,
            conversation_id=meta.conversation_id,
            source_pk=meta.source_message,
            agent_name=name,
            contact=contact,
        )
        tpl = (template.subject, template.body) if template else None
        templates = [(t.id, t.name) for t in list_templates(session)]
        forward_names: list[str] = []
        if meta.mode == "forward" and meta.source_message is not None:
            forward_names = [
                a.filename or "attachment"
                for a in session.scalars(
                    select(Attachment)
                    .where(Attachment.message_id == meta.source_message)
                    .order_by(Attachment.id)
                )
            ]
    subject = _state_text(values, cb.subject_block(meta.rotation))
    body = _state_text(values, cb.body_block(meta.rotation))
    error: str | None = None
    if tpl is None:
        error = "That template was deleted."
    else:
        result = render(tpl[0], tpl[1], variables)
        if isinstance(result, TemplateProblem):
            error = f"The template could not be used: {result}"
        else:
            if result[0]:
                subject = result[0]
            body = result[1]
    meta.rotation += 1
    form = cb.ComposeForm(
        mode=meta.mode,
        metadata=meta.dump(),
        to=to_text,
        cc=_state_text(values, cb.CC_BLOCK),
        bcc=_state_text(values, cb.BCC_BLOCK),
        subject=subject,
        body=body[: cb.BODY_MAX],
        rotation=meta.rotation,
        context=_context_of(view),
        templates=templates,
        template_error=error,
        forward_attachments=forward_names,
    )
    if meta.mode == "new":
        form.from_options = _from_options_of(view)
        form.from_selected = account_id
    return cb.compose_view(form)


def _may_see_all(
    services: Services, client: WebClient, user_id: str, account_id: int | None, meta: ComposeMeta
) -> bool:
    """Every account the template would read from (the sender, the conversation's and the
    answered message's, all named by private_metadata) is one whose channel the person is
    in: a forged form reads nothing of another mailbox (security review #9)."""
    with read_scope(services.session_factory) as session:
        account_ids: set[int | None] = {account_id} if account_id is not None else set()
        if meta.conversation_id is not None:
            conv = session.get(Conversation, meta.conversation_id)
            account_ids.add(conv.account_id if conv else None)
        if meta.source_message is not None:
            msg = session.get(Message, meta.source_message)
            account_ids.add(msg.account_id if msg else None)
        if None in account_ids:
            return False
        accounts = [session.get(Account, a) for a in account_ids]
        channels = [acc.channel_id if acc else None for acc in accounts]
    return all(
        c is not None and services.access.can_see_channel(client, user_id, c) for c in channels
    )


def _context_of(view: dict[str, Any]) -> str:
    first = (view.get("blocks") or [{}])[0]
    if first.get("type") == "context":
        return str(((first.get("elements") or [{}])[0]).get("text") or "")
    return ""


def _from_options_of(view: dict[str, Any]) -> list[tuple[int, str]]:
    for block in view.get("blocks") or []:
        if block.get("block_id") == cb.FROM_BLOCK:
            out = []
            for opt in (block.get("element") or {}).get("options") or []:
                try:
                    out.append((int(opt["value"]), str(opt["text"]["text"])))
                except (KeyError, TypeError, ValueError):
                    continue
            return out
    return []
