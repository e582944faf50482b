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
from bot.compose import saved, signature
from bot.compose.drafts import DraftError, finish_draft, load_draft, template_variables
from bot.compose.form import ComposeMeta, body_value, format_addresses
from bot.mail.compose import HeaderError, make_message_id, parse_address_list
from bot.mail.richtext import mention_ids, plain_to_rich_text, rich_text_append
from bot.services import Services
from bot.store.db import read_scope
from bot.store.models import Account, AccountStatus, Attachment, Conversation, Message
from bot.store.templates import get_template, list_templates, may_see
from bot.templates import TemplateProblem, render, render_rich

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


MAX_MENTION_LOOKUPS = 10  # users.info / conversations.info calls within one 3 s ack


def mention_names(client: WebClient, value: Any) -> dict[str, str]:
    """Names for the people and channels mentioned in a rich text value (an email shows
    "@Jane Doe", not a Slack id). Unknown ones are left out; the text then shows the id."""
    users, channels = mention_ids(value)
    names: dict[str, str] = {}
    for uid in sorted(users)[:MAX_MENTION_LOOKUPS]:
        try:
            user = client.users_info(user=uid)["user"]
        except (SlackApiError, KeyError, TypeError):
            continue
        profile = user.get("profile") or {}
        name = profile.get("real_name") or user.get("real_name") or profile.get("display_name")
        if name:
            names[uid] = str(name)
    for cid in sorted(channels)[: max(0, MAX_MENTION_LOOKUPS - len(users))]:
        try:
            channel = client.conversations_info(channel=cid)["channel"]
        except (SlackApiError, KeyError, TypeError):
            continue
        if channel.get("name"):
            names[cid] = str(channel["name"])
    return names


def _message_id_for(email: str) -> str:
    domain = email.rsplit("@", 1)[-1] if "@" in email else ""
    try:
        return make_message_id(domain)
    except HeaderError:
        return make_message_id("mailroom.invalid")


def _templates(services: Services, user_id: str) -> list[tuple[int, str]]:
    """The shared templates and the person's own, for the picker."""
    from bot.blocks.templates import picker_label

    with read_scope(services.session_factory) as session:
        return [(t.id, picker_label(t, user_id)) for t in list_templates(session, user_id=user_id)]


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


def new_mail_view(
    services: Services, client: WebClient, user_id: str, *, channel_id: str | None = None
) -> dict[str, Any]:
    accounts = sendable_accounts(services, client, user_id)
    if not accounts:
        return cb.notice_view(
            "New email",
            "You are not a member of any mailbox's channel, so there is no address you may "
            "send from. Ask an admin to add you to the channel of the mailbox you need.",
        )
    # The account of the channel the person is in, else the first they may send from.
    first = next((a for a in accounts if channel_id and a.channel_id == channel_id), accounts[0])
    meta = ComposeMeta(mode="new", message_id=_message_id_for(first.email), account_id=first.id)
    form = cb.ComposeForm(
        mode="new",
        metadata=meta.dump(),
        from_options=[
            (a.id, f"{a.display_name} <{a.email}>" if a.display_name else a.email) for a in accounts
        ],
        from_selected=first.id,
        templates=_templates(services, user_id),
    )
    return cb.compose_view(form)


def open_compose(
    client: WebClient,
    trigger_id: str,
    user_id: str,
    services: Services,
    channel_id: str | None = None,
) -> dict[str, Any]:
    """Open the new-mail modal (for `/inbox compose`, the global shortcut and the App Home).
    From an account's channel, that account is the sender."""
    view = new_mail_view(services, client, user_id, channel_id=channel_id)
    resp = client.views_open(trigger_id=trigger_id, view=view)
    return dict(resp.get("view") or {})


def conversation_view(
    services: Services,
    client: WebClient,
    user_id: str,
    mode: str,
    conversation_id: int,
    message_pk: int | None = None,
    *,
    body_rich: dict[str, Any] | None = None,
    thread_draft: int | None = None,
    message_id: str | None = None,
    rotation: int = 0,
) -> dict[str, Any]:
    """The reply / reply-all / forward modal; ComposeRefused when the person may not.

    `body_rich`, `thread_draft`, `message_id`: "Edit first" on a message typed in the thread
    (its rich text, and the draft's Message-ID, so the button and the modal can never both
    send it). Otherwise a draft this person closed unsent in this conversation is filled in,
    with a way to discard it."""
    with read_scope(services.session_factory) as session:
        try:
            inputs = load_draft(session, mode, conversation_id, message_pk)
        except DraftError as exc:
            raise ComposeRefused(str(exc)) from exc
        start = inputs.start
        channel = start.account.channel_id
        account_email = start.account.email
        has_signature = signature.has_signature(start.account)
        conv_id = start.conversation.id if start.conversation else None
        source_pk = start.source.id if start.source else None
        source = start.source
        sender = answering = ""
        if source is not None:
            sender = (
                f"{source.from_name} <{source.from_email}>"
                if source.from_name
                else source.from_email
            )
            answering = cb.answering_text(
                sender or "?",
                source.date.strftime("%a %d %b %Y, %H:%M UTC") if source.date else "",
                source.body_text or source.snippet,
            )
        kept = saved.get(session, user_id, conv_id) if conv_id and thread_draft is None else None
        kept_fields = (
            (
                kept.id,
                kept.mode,
                kept.to,
                kept.cc,
                kept.subject,
                saved.rich_body(kept),
                kept.updated_at,
            )
            if kept is not None
            else None
        )
    if not services.access.can_see_channel(client, user_id, channel):
        raise ComposeRefused("You can only answer mail of mailboxes whose channel you are in.")
    start = finish_draft(inputs)  # parses the original: after the session, not inside it
    meta = ComposeMeta(
        mode=mode,
        message_id=message_id or _message_id_for(account_email),
        account_id=start.account.id,
        conversation_id=conv_id,
        source_message=source_pk,
        newest_seen=start.newest_seen,
        rotation=rotation,
        thread_draft=thread_draft,
    )
    verb = "Forwarding" if mode == "forward" else "Replying to"
    form = cb.ComposeForm(
        mode=mode,
        metadata=meta.dump(),
        to=format_addresses(start.to),
        cc=format_addresses(start.cc),
        subject=start.subject,
        body_rich=body_rich,
        rotation=rotation,
        context=f"{verb} {escape_mrkdwn(sender)} · from {escape_mrkdwn(account_email)}",
        templates=_templates(services, user_id),
        forward_attachments=start.forward_attachments,
        answering=answering,
        signature=has_signature,
    )
    if kept_fields is not None:
        draft_id, kept_mode, to, cc, subject, kept_body, saved_at = kept_fields
        if kept_mode == mode:  # the addresses and subject belong to that kind of answer
            form.to, form.cc, form.subject = to, cc, subject or form.subject
        form.body_rich = kept_body
        form.draft_id = draft_id
        form.draft_saved = saved_at.strftime("%d %b %H:%M UTC")
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
        if template is not None and not may_see(template, user_id):
            template = None  # another person's personal template: as if it did not exist
        variables = template_variables(
            session,
            account_id=account_id,
            conversation_id=meta.conversation_id,
            source_pk=meta.source_message,
            agent_name=name,
            contact=contact,
        )
        tpl = (template.subject, template.body, template.body_rich) if template else None
        from bot.blocks.templates import picker_label

        templates = [
            (t.id, picker_label(t, user_id)) for t in list_templates(session, user_id=user_id)
        ]
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
    # What was typed stays; the template's text is added after it (as rich text).
    body = body_value(values, cb.body_block(meta.rotation))
    error: str | None = None
    if tpl is None:
        error = "That template was deleted."
    else:
        rich = render_rich(tpl[0], tpl[2], variables) if tpl[2] else None
        result = rich if rich is not None else render(tpl[0], tpl[1], variables)
        if isinstance(result, TemplateProblem):
            error = f"The template could not be used: {result}"
        else:
            if result[0]:
                subject = result[0]
            added = result[1] if isinstance(result[1], dict) else plain_to_rich_text(result[1])
            body = rich_text_append(body, added, blank_line=True)
    meta.rotation += 1
    form = cb.ComposeForm(
        mode=meta.mode,
        metadata=meta.dump(),
        to=to_text,
        cc=_state_text(values, cb.CC_BLOCK),
        bcc=_state_text(values, cb.BCC_BLOCK),
        subject=subject,
        body_rich=body,
        rotation=meta.rotation,
        context=_context_of(view),
        templates=templates,
        template_error=error,
        forward_attachments=forward_names,
        answering=_section_text(view, cb.ANSWERING_BLOCK),
        signature=_has_signature_hint(view),
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


def _section_text(view: dict[str, Any], block_id: str) -> str:
    for block in view.get("blocks") or []:
        if block.get("block_id") == block_id:
            return str((block.get("text") or {}).get("text") or "")
    return ""


def _has_signature_hint(view: dict[str, Any]) -> bool:
    return any(
        cb.SIGNATURE_HINT.strip() in str((b.get("hint") or {}).get("text") or "")
        for b in view.get("blocks") or []
        if str(b.get("block_id") or "").startswith("body_")
    )


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
