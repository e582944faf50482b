"""`/inbox`: search, list, link/unlink, client timelines, add client, compose.

Every answer is ephemeral (only the caller sees it) and every listing is limited to the accounts
whose channel the caller is a member of. Unknown input gets the help, never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient
from sqlalchemy import select

from bot.access import AccessDenied
from bot.blocks.clients import client_modal, timeline_message
from bot.blocks.search import FILTER_LABELS, PAGE_SIZE, PageState, results_message
from bot.blocks.text import escape_mrkdwn, mrkdwn
from bot.handlers.commands.parse import (
    HELP,
    Command,
    looks_like_address,
    parse_command,
    parse_thread_ref,
)
from bot.handlers.middleware import services_of
from bot.home import (
    filter_counts,
    hit_items,
    list_conversations,
    note_items,
    result_items,
    visible_account_ids,
)
from bot.services import Services
from bot.store.db import read_scope, session_scope
from bot.store.models import (
    Client,
    Conversation,
    ConversationLink,
    Message,
    SlackPost,
    SlackThread,
)

log = logging.getLogger(__name__)


class UserError(Exception):
    """A message for the person (bad reference, unknown client…)."""


def ephemeral(text: str, blocks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"response_type": "ephemeral", "text": text}
    if blocks is not None:
        msg["blocks"] = blocks
    return msg


# -- pages of results (also used by the Next/Previous buttons) -------------------------------


def search_page(
    services: Services, client: WebClient, user_id: str, query: str, page: int
) -> dict[str, Any]:
    from bot.store.search import search

    account_ids = visible_account_ids(services, client, user_id)
    with read_scope(services.session_factory) as session:
        found = search(
            session,
            query,
            visible_account_ids=account_ids,
            user_id=user_id,
            limit=PAGE_SIZE,
            offset=page * PAGE_SIZE,
            per_conversation=True,  # one line per conversation (issue 19)
        )
        items = hit_items(session, found.hits)
        if page == 0:  # internal notes are not emails: shown above the first page
            items = note_items(session, query, account_ids) + items
    empty = "Nothing you can see matches that search."
    if found.errors:
        empty = "Could not read the query: " + escape_mrkdwn("; ".join(found.errors))
    return results_message(
        title=f"Search: {query}",
        items=items,
        state=PageState("search", query, page),
        has_next=(page + 1) * PAGE_SIZE < found.total,
        total=None if found.capped else found.total,
        empty_text=empty,
    )


def list_page(
    services: Services, client: WebClient, user_id: str, filter_name: str, page: int
) -> dict[str, Any]:
    account_ids = visible_account_ids(services, client, user_id)
    with read_scope(services.session_factory) as session:
        counts = filter_counts(session, account_ids, user_id)
        convs = list_conversations(
            session,
            account_ids,
            filter_name,
            limit=PAGE_SIZE + 1,
            offset=page * PAGE_SIZE,
            user_id=user_id,
        )
        items = result_items(session, convs[:PAGE_SIZE])
    return results_message(
        title=f"{FILTER_LABELS[filter_name]} conversations",
        items=items,
        state=PageState("list", filter_name, page),
        has_next=len(convs) > PAGE_SIZE,
        total=counts.get(filter_name, 0),
        counts=counts,
        empty_text="No conversations here."
        if account_ids
        else "You are not in the channel of any email account.",
    )


def find_client(session: Any, name: str) -> Client:
    from bot.store.clients import list_clients

    wanted = name.strip().lower()
    candidates = list_clients(session, query=name.strip(), limit=20)
    exact = [c for c in candidates if c.name.strip().lower() == wanted]
    if len(exact) == 1:
        return exact[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UserError(
            f"No client called “{escape_mrkdwn(name)}”. Add one with `/inbox clients add`."
        )
    names = ", ".join(escape_mrkdwn(c.name) for c in candidates[:10])
    raise UserError(f"“{escape_mrkdwn(name)}” matches several clients: {names}. Be more precise.")


def client_page(
    services: Services,
    client: WebClient,
    user_id: str,
    name: str,
    page: int,
    *,
    client_id: int | None = None,
) -> dict[str, Any]:
    account_ids = visible_account_ids(services, client, user_id)
    with read_scope(services.session_factory) as session:
        target = session.get(Client, client_id) if client_id is not None else None
        if target is None:
            target = find_client(session, name)
        convs = list_conversations(
            session,
            account_ids,
            "all",
            client_id=target.id,
            limit=PAGE_SIZE + 1,
            offset=page * PAGE_SIZE,
        )
        items = result_items(session, convs[:PAGE_SIZE])
        return timeline_message(
            name=target.name,
            company=target.company,
            items=items,
            state=PageState("client", name, page),
            has_next=len(convs) > PAGE_SIZE,
            total=None,
        )


CLIENTS_LISTED = 20


def clients_message(
    services: Services, client: WebClient, user_id: str, query: str
) -> dict[str, Any]:
    """Clients (everyone may browse and edit them), each with Edit / Timeline (and Delete for
    admins): the same rows as the App Home."""
    from bot.blocks.home import client_row
    from bot.home import client_summaries
    from bot.store.clients import count_clients, list_clients

    is_admin = services.access.is_admin(client, user_id)
    with read_scope(services.session_factory) as session:
        rows = list_clients(session, query=query or None, limit=CLIENTS_LISTED)
        total = count_clients(session, query=query or None)
        summaries = client_summaries(session, rows)
    found = f"matching “{escape_mrkdwn(query)}”" if query else ""
    head = f"*{total} client{'s' if total != 1 else ''}* {found}".strip()
    if total > len(summaries):
        head += f" (the first {len(summaries)}; narrow it with `/inbox clients WORD`)"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": mrkdwn(head)}]
    blocks += [client_row(c, is_admin=is_admin) for c in summaries]
    return {"text": f"{total} clients", "blocks": blocks}


def page_for(
    services: Services, client: WebClient, user_id: str, state: PageState
) -> dict[str, Any]:
    if state.kind == "search":
        return search_page(services, client, user_id, state.query, state.page)
    if state.kind == "client":
        return client_page(services, client, user_id, state.query, state.page)
    return list_page(services, client, user_id, state.query, state.page)


# -- link / unlink -------------------------------------------------------------------------------


def resolve_conversation(services: Services, ref_text: str) -> int | None:
    """A conversation id from `#42` or a Slack link to its parent or a reply; None if the text
    is not a thread reference at all. UserError when it is one that matches nothing."""
    ref = parse_thread_ref(ref_text)
    if ref is None:
        return None
    if ref.conversation_id is not None:
        return ref.conversation_id
    with read_scope(services.session_factory) as session:
        conv_id = session.scalar(
            select(SlackThread.conversation_id).where(
                SlackThread.channel_id == ref.channel_id, SlackThread.ts == ref.ts
            )
        )
        if conv_id is None:
            conv_id = session.scalar(
                select(SlackPost.conversation_id).where(
                    SlackPost.channel_id == ref.channel_id, SlackPost.ts == ref.ts
                )
            )
    if conv_id is None:
        raise UserError("That Slack link is not an email conversation Mailroom knows.")
    return int(conv_id)


def _address_conversations(
    session: Any, account_ids: list[int], address: str, linked_to: int | None = None
) -> list[int]:
    """Visible conversations with mail from this address (optionally: linked to a client)."""
    if not account_ids:
        return []
    stmt = select(Conversation.id).where(
        Conversation.account_id.in_(account_ids),
        Conversation.deleted.is_(False),
        Conversation.merged_into_id.is_(None),
        Conversation.id.in_(select(Message.conversation_id).where(Message.from_email == address)),
    )
    if linked_to is not None:
        stmt = stmt.where(
            Conversation.id.in_(
                select(ConversationLink.conversation_id).where(
                    ConversationLink.client_id == linked_to
                )
            )
        )
    return list(session.scalars(stmt.order_by(Conversation.id)))


def do_link(
    services: Services, client: WebClient, user_id: str, target: str, client_name: str
) -> str:
    from bot.inbox import actions
    from bot.store import clients as store_clients

    with read_scope(services.session_factory) as session:
        found = find_client(session, client_name)
        client_id, name = found.id, found.name
    conv_id = resolve_conversation(services, target)
    if conv_id is not None:
        try:
            changed = actions.link_client(services, client, user_id, conv_id, client_id)
        except actions.NotFound as exc:
            raise UserError(f"No conversation {escape_mrkdwn(target)}.") from exc
        return (
            f"Linked conversation #{conv_id} to *{escape_mrkdwn(name)}*."
            if changed
            else f"Conversation #{conv_id} already was linked to *{escape_mrkdwn(name)}*."
        )
    if not looks_like_address(target):
        raise UserError(
            "The first argument must be an email address, `#ID` or a Slack thread link."
        )
    address = store_clients.normalize_email(target)
    with session_scope(services.session_factory) as session:
        owner = store_clients.find_client_for_address(session, address)
        exact_owner = owner is not None and any(a.email == address for a in owner.addresses)
        if exact_owner and owner is not None and owner.id != client_id:
            raise UserError(
                f"{escape_mrkdwn(address)} belongs to {escape_mrkdwn(owner.name)}; "
                f"unlink it first with `/inbox unlink {escape_mrkdwn(address)}`."
            )
        if not exact_owner:
            store_clients.edit_client(session, client_id, add_emails=[address], actor=user_id)
    account_ids = visible_account_ids(services, client, user_id)
    with read_scope(services.session_factory) as session:
        conv_ids = _address_conversations(session, account_ids, address)
    linked = sum(
        1 for cid in conv_ids if actions.link_client(services, client, user_id, cid, client_id)
    )
    return (
        f"{escape_mrkdwn(address)} now belongs to *{escape_mrkdwn(name)}*; "
        f"{linked} conversation{'s' if linked != 1 else ''} linked."
    )


def do_unlink(services: Services, client: WebClient, user_id: str, target: str) -> str:
    from bot.inbox import actions
    from bot.store import clients as store_clients

    conv_id = resolve_conversation(services, target)
    if conv_id is not None:
        try:
            changed = actions.unlink_client(services, client, user_id, conv_id)
        except actions.NotFound as exc:
            raise UserError(f"No conversation {escape_mrkdwn(target)}.") from exc
        return (
            f"Conversation #{conv_id} is no longer linked to a client."
            if changed
            else f"Conversation #{conv_id} was not linked to a client."
        )
    if not looks_like_address(target):
        raise UserError("Give an email address, `#ID` or a Slack thread link to unlink.")
    address = store_clients.normalize_email(target)
    with session_scope(services.session_factory) as session:
        owner = store_clients.find_client_for_address(session, address)
        if owner is None or not any(a.email == address for a in owner.addresses):
            raise UserError(f"{escape_mrkdwn(address)} does not belong to any client.")
        client_id, name = owner.id, owner.name
        store_clients.edit_client(session, client_id, remove_emails=[address], actor=user_id)
    account_ids = visible_account_ids(services, client, user_id)
    with read_scope(services.session_factory) as session:
        conv_ids = _address_conversations(session, account_ids, address, linked_to=client_id)
    unlinked = sum(1 for cid in conv_ids if actions.unlink_client(services, client, user_id, cid))
    return (
        f"{escape_mrkdwn(address)} no longer belongs to *{escape_mrkdwn(name)}*; "
        f"{unlinked} conversation{'s' if unlinked != 1 else ''} unlinked."
    )


# -- assign ------------------------------------------------------------------------------------


def _user_by_name(client: WebClient, name: str) -> str:
    wanted = name.strip().lower()
    cursor = None
    for _ in range(20):
        page = client.users_list(limit=200, cursor=cursor)
        for u in page.get("members") or []:
            profile = u.get("profile") or {}
            names = {
                str(u.get("name") or "").lower(),
                str(profile.get("display_name") or "").lower(),
                str(profile.get("real_name") or u.get("real_name") or "").lower(),
            }
            if wanted in names and not u.get("deleted"):
                return str(u["id"])
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    raise UserError(f"I don't know anyone called “{escape_mrkdwn(name)}”.")


def do_assign(services: Services, client: WebClient, user_id: str, target: str, who: str) -> str:
    """`/inbox assign THREAD WHO`: the same rules as the Assign… button."""
    from bot.inbox import actions, triage

    conv_id = resolve_conversation(services, target)
    if conv_id is None:
        raise UserError("Say which conversation: `#42` or a Slack thread link.")
    if who == "me":
        assignee: str | None = user_id
    elif who == "nobody":
        assignee = None
    elif who.startswith("id:"):
        assignee = who[3:]
    else:
        assignee = _user_by_name(client, who[len("name:") :])
    try:
        outcome = triage.assign(services, client, user_id, conv_id, assignee)
    except triage.NotMember as exc:
        raise UserError(str(exc)) from exc
    except actions.NotFound as exc:
        raise UserError(f"No conversation {escape_mrkdwn(target)}.") from exc
    return outcome.text


# -- the listener ------------------------------------------------------------------------------


def run_command(
    services: Services,
    client: WebClient,
    user_id: str,
    text: str,
    trigger_id: str,
    respond: Callable[..., Any],
    channel_id: str | None = None,
) -> None:
    cmd: Command = parse_command(text)
    if cmd.error:
        respond(**ephemeral(cmd.error + "\n\n" + HELP))
        return
    if cmd.name in {"help", "unknown"}:
        prefix = (
            f"I don't know `{escape_mrkdwn(cmd.args[0][:100])}`.\n\n"
            if cmd.name == "unknown"
            else ""
        )
        respond(**ephemeral(prefix + HELP))
        return
    if cmd.name == "clients_add":
        client.views_open(trigger_id=trigger_id, view=client_modal())
        return
    if cmd.name == "compose":
        from bot.compose import open_compose

        open_compose(client, trigger_id, user_id, services, channel_id=channel_id)
        return
    try:
        if cmd.name == "search":
            respond(**ephemeral_message(search_page(services, client, user_id, cmd.args[0], 0)))
        elif cmd.name == "list":
            respond(**ephemeral_message(list_page(services, client, user_id, cmd.args[0], 0)))
        elif cmd.name == "clients":
            respond(**ephemeral_message(clients_message(services, client, user_id, cmd.args[0])))
        elif cmd.name == "client":
            respond(**ephemeral_message(client_page(services, client, user_id, cmd.args[0], 0)))
        elif cmd.name == "link":
            respond(**ephemeral(do_link(services, client, user_id, cmd.args[0], cmd.args[1])))
        elif cmd.name == "unlink":
            respond(**ephemeral(do_unlink(services, client, user_id, cmd.args[0])))
        elif cmd.name == "assign":
            respond(**ephemeral(do_assign(services, client, user_id, cmd.args[0], cmd.args[1])))
    except UserError as exc:
        respond(**ephemeral(str(exc)))
    except AccessDenied as exc:
        respond(**ephemeral(str(exc)))


def ephemeral_message(message: dict[str, Any]) -> dict[str, Any]:
    return {"response_type": "ephemeral", **message}


def inbox_command(
    ack: Ack,
    command: dict[str, Any],
    respond: Respond,
    client: WebClient,
    context: BoltContext,
) -> None:
    ack()  # within 3 s; the answer follows through the response_url
    try:
        run_command(
            services_of(context),
            client,
            command["user_id"],
            command.get("text") or "",
            command.get("trigger_id") or "",
            respond,
            channel_id=command.get("channel_id"),
        )
    except Exception:
        log.exception("/inbox failed")
        respond(
            **ephemeral(
                "Sorry, that did not work; it has been logged. Try again, or `/inbox help`."
            )
        )
