"""Live search: the search modal re-renders as the person types, picks a filter or pages; and
Next/Previous under ephemeral /inbox results."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks import ids
from bot.blocks.search import PAGE_SIZE, PageState, search_modal, search_state
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
from bot.store.db import read_scope

log = logging.getLogger(__name__)


FILTER_TERMS = {
    "unread": " is:unread",
    "archived": " is:archived",
    "linked": " is:linked",
    "unlinked": " is:unlinked",
    "mine": " is:mine",
    "unassigned": " is:unassigned",
    "waiting": " is:waiting",
    "snoozed": " is:snoozed",
    "unanswered": " is:unanswered",
}


def search_view(
    services: Services,
    client: WebClient,
    user_id: str,
    query: str = "",
    filter_name: str = "all",
    page: int = 0,
) -> dict[str, Any]:
    """The search modal with one page of results the person may see. No query: the
    conversations of the filter; a query: matching emails, the filter added as a term."""
    from bot.store.search import search

    account_ids = visible_account_ids(services, client, user_id)
    error = None
    with read_scope(services.session_factory) as session:
        counts = filter_counts(session, account_ids, user_id)
        if query.strip():
            found = search(
                session,
                query + FILTER_TERMS.get(filter_name, ""),
                visible_account_ids=account_ids,
                user_id=user_id,
                limit=PAGE_SIZE,
                offset=page * PAGE_SIZE,
                per_conversation=True,  # one line per conversation (issue 19)
            )
            items = hit_items(session, found.hits)
            if page == 0:  # internal notes are not emails: shown above the first page
                items = note_items(session, query, account_ids) + items
            has_next = (page + 1) * PAGE_SIZE < found.total
            total: int | None = None if found.capped else found.total
            if found.errors:
                error = "Could not read the query: " + "; ".join(found.errors)
        else:
            convs = list_conversations(
                session,
                account_ids,
                filter_name,
                limit=PAGE_SIZE + 1,
                offset=page * PAGE_SIZE,
                user_id=user_id,
            )
            items = result_items(session, convs[:PAGE_SIZE])
            has_next = len(convs) > PAGE_SIZE
            total = counts.get(filter_name, 0)
    return search_modal(
        query=query,
        filter_name=filter_name,
        items=items,
        page=page,
        has_next=has_next,
        total=total,
        counts=counts,
        error=error if not items else None,
    )


def _update(client: WebClient, view: dict[str, Any], new_view: dict[str, Any]) -> None:
    try:
        client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)
    except SlackApiError as exc:
        # hash_conflict: a newer keystroke already updated the modal; its render wins.
        if exc.response.get("error") != "hash_conflict":
            raise
        log.debug("search modal update superseded")


def search_changed(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """SEARCH_QUERY (typed), SEARCH_FILTER (picked): back to page 0."""
    ack()
    view = body["view"]
    query, filter_name, _ = search_state(view)
    action = body["actions"][0]
    if action.get("action_id") == ids.SEARCH_FILTER and action.get("selected_option"):
        # The action itself is the freshest word on the filter (state may lag behind it).
        filter_name = str(action["selected_option"].get("value") or filter_name)
    elif action.get("action_id") == ids.SEARCH_QUERY and "value" in action:
        query = str(action.get("value") or "")
    _update(
        client,
        view,
        search_view(services_of(context), client, body["user"]["id"], query, filter_name, 0),
    )


def search_paged(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    view = body["view"]
    query, filter_name, _ = search_state(view)
    try:
        page = max(0, int(body["actions"][0].get("value") or 0))
    except ValueError:
        page = 0
    _update(
        client,
        view,
        search_view(services_of(context), client, body["user"]["id"], query, filter_name, page),
    )


def results_paged(
    ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
) -> None:
    """Next/Previous under an ephemeral result list: replace it with the other page."""
    ack()
    from bot.handlers.commands.inbox import UserError, page_for

    state = PageState.from_value(body["actions"][0].get("value"))
    if state is None:
        return
    try:
        message = page_for(services_of(context), client, body["user"]["id"], state)
    except UserError as exc:
        respond(response_type="ephemeral", replace_original=True, text=str(exc))
        return
    respond(response_type="ephemeral", replace_original=True, **message)


def register(app: Any) -> None:
    app.action(ids.SEARCH_QUERY)(search_changed)
    app.action(ids.SEARCH_FILTER)(search_changed)
    app.action(re.compile(rf"^{ids.SEARCH_PAGE}:(prev|next)$"))(search_paged)
    app.action(re.compile(rf"^{ids.RESULTS_PAGE}:(prev|next)$"))(results_paged)
