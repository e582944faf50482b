"""Search and list results: ephemeral result messages and the live search modal (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.blocks import ids
from bot.blocks.state import state_values
from bot.blocks.text import escape_mrkdwn, mrkdwn, plain, truncate

FILTERS: tuple[str, ...] = ("all", "unread", "archived", "linked", "unlinked")
FILTER_LABELS = {
    "all": "All",
    "unread": "Unread",
    "archived": "Archived",
    "linked": "Linked",
    "unlinked": "Unlinked",
}
# Team triage views (issue 16): what is left to do, for the person asking.
TRIAGE_FILTERS: tuple[str, ...] = ("mine", "unassigned", "waiting", "snoozed", "unanswered")
FILTER_LABELS.update(
    mine="Mine",
    unassigned="Unassigned",
    waiting="Waiting",
    snoozed="Snoozed",
    unanswered="Unanswered",
)
FILTERS += TRIAGE_FILTERS
PAGE_SIZE = 10  # two blocks per result: a page stays well inside 50 (message) / 100 (modal)
SEARCH_BLOCK = "search_q"  # block_id of the query input; kept stable so typed text survives
FILTER_BLOCK = "search_f"
RESULTS_MAX_QUERY = 1500  # paging value must stay under the 2000-char button value limit
BUTTON_VALUE_MAX = 2000  # Slack: a button's value
METADATA_MAX = 3000  # Slack: a view's private_metadata


def fit_json(data: dict[str, Any], key: str, limit: int) -> str:
    """`data` as JSON within `limit` UTF-8 bytes, cutting the text under `key` as needed.
    Non-ASCII stays as itself (ensure_ascii=False): a `\\uXXXX` escape is 6 characters for
    one letter, which put a query of ~500 Cyrillic letters over the limit (review #19)."""

    def encoded(text: str) -> str:
        return json.dumps({**data, key: text}, ensure_ascii=False)

    text = str(data.get(key) or "")
    out = encoded(text)
    if len(out.encode("utf-8", "replace")) <= limit:
        return out
    lo, hi = 0, len(text)  # the longest prefix that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(encoded(text[:mid]).encode("utf-8", "replace")) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return encoded(text[:lo])


@dataclass(frozen=True)
class ResultItem:
    """One conversation as a result line."""

    conversation_id: int
    subject: str
    sender_name: str
    sender_email: str
    date: datetime | None
    snippet: str
    account_email: str
    client_name: str | None = None
    thread_url: str | None = None
    unread: bool = False
    archived: bool = False
    message_count: int = 1
    message_id: int | None = None  # a search hit: Open shows this email
    note: str = ""  # an internal note on the conversation: "Name: text" (plain)
    matches: int = 0  # a search hit grouped per conversation: its emails that match

    @property
    def open_value(self) -> str:
        """The Open button's value, as bot.blocks.conversation.open_value writes it."""
        if self.message_id is None:
            return str(self.conversation_id)
        return f"{self.conversation_id}:{self.message_id}"


@dataclass(frozen=True)
class PageState:
    """What a Next/Previous button needs to redo the query: kind is search|list|client."""

    kind: str
    query: str
    page: int = 0

    def to_value(self) -> str:
        data = {"k": self.kind, "q": truncate(self.query, RESULTS_MAX_QUERY, ""), "p": self.page}
        return fit_json(data, "q", BUTTON_VALUE_MAX)

    @staticmethod
    def from_value(value: str | None) -> PageState | None:
        try:
            data = json.loads(value or "")
            kind, query, page = str(data["k"]), str(data["q"]), int(data["p"])
        except (ValueError, KeyError, TypeError):
            return None
        if kind not in {"search", "list", "client"} or page < 0:
            return None
        return PageState(kind, query, page)


def slack_date(when: datetime | None) -> str:
    """A date every reader sees in their own time zone (Slack date formatting)."""
    if when is None:
        return "no date"
    fallback = when.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def thread_url(channel_id: str | None, ts: str | None) -> str | None:
    """The archive URL of a Slack message, without an API call (Slack redirects to the team)."""
    if not channel_id or not ts:
        return None
    return f"https://slack.com/archives/{channel_id}/p{ts.replace('.', '')}"


def result_blocks(item: ResultItem) -> list[dict[str, Any]]:
    """Two blocks: the headline with an Open button, and a context line with where it lives."""
    sender = item.sender_name or item.sender_email or "unknown sender"
    marks = (":envelope: " if item.unread else "") + (":file_folder: " if item.archived else "")
    subject = escape_mrkdwn(truncate(item.subject or "(no subject)", 200))
    lines = [
        f"{marks}*{subject}*",
        f"{escape_mrkdwn(truncate(sender, 120))}"
        + (
            f" &lt;{escape_mrkdwn(item.sender_email)}&gt;"
            if item.sender_name and item.sender_email
            else ""
        )
        + f" · {slack_date(item.date)}",
    ]
    if item.snippet:
        lines.append(f"_{escape_mrkdwn(truncate(' '.join(item.snippet.split()), 280))}_")
    if item.note:
        lines.append(f":memo: Note: {escape_mrkdwn(truncate(' '.join(item.note.split()), 280))}")
    # The id `/inbox link|unlink|assign #42` accepts: shown here, where people find conversations.
    context = [f"#{item.conversation_id}", f":inbox_tray: {escape_mrkdwn(item.account_email)}"]
    context.append(
        f":bust_in_silhouette: {escape_mrkdwn(truncate(item.client_name, 80))}"
        if item.client_name
        else "no client"
    )
    if item.matches > 1:
        context.append(f"{item.matches} of {max(item.message_count, item.matches)} emails match")
    elif item.message_count > 1:
        context.append(f"{item.message_count} messages")
    if item.thread_url:
        context.append(f"<{item.thread_url}|View thread in Slack>")
    return [
        {
            "type": "section",
            "block_id": f"res_{item.open_value}",
            "text": mrkdwn("\n".join(lines)),
            "accessory": {
                "type": "button",
                "action_id": ids.CONV_OPEN,
                "text": plain("Open"),
                "value": item.open_value,
            },
        },
        {"type": "context", "elements": [mrkdwn(" · ".join(context))]},
    ]


def _nav(prefix: str, prev_value: str | None, next_value: str | None) -> list[dict[str, Any]]:
    buttons: list[dict[str, Any]] = []
    if prev_value is not None:
        buttons.append(
            {
                "type": "button",
                "action_id": f"{prefix}:prev",
                "text": plain("◀ Previous"),
                "value": prev_value,
            }
        )
    if next_value is not None:
        buttons.append(
            {
                "type": "button",
                "action_id": f"{prefix}:next",
                "text": plain("Next ▶"),
                "value": next_value,
            }
        )
    return [{"type": "actions", "block_id": "nav", "elements": buttons}] if buttons else []


def page_label(page: int, page_size: int, shown: int, total: int | None) -> str:
    if shown == 0:
        return "Nothing found."
    first = page * page_size + 1
    last = first + shown - 1
    return f"{first}-{last} of {total}" if total is not None else f"{first}-{last}"


def results_message(
    *,
    title: str,
    items: Sequence[ResultItem],
    state: PageState,
    has_next: bool,
    total: int | None = None,
    page_size: int = PAGE_SIZE,
    empty_text: str = "Nothing found.",
    counts: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """An ephemeral message (text + blocks) with one page of results and Next/Previous."""
    head = f"*{escape_mrkdwn(truncate(title, 500))}*"
    if items:
        head += f"  ({page_label(state.page, page_size, len(items), total)})"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": mrkdwn(head)}]
    if counts:
        blocks.append({"type": "context", "elements": [mrkdwn(counts_line(counts))]})
    if not items:
        blocks.append({"type": "section", "text": mrkdwn(empty_text)})
    for item in items:
        blocks.extend(result_blocks(item))
    prev_v = (
        PageState(state.kind, state.query, state.page - 1).to_value() if state.page > 0 else None
    )
    next_v = PageState(state.kind, state.query, state.page + 1).to_value() if has_next else None
    blocks.extend(_nav(ids.RESULTS_PAGE, prev_v, next_v))
    return {"text": truncate(title, 3000), "blocks": blocks}


def counts_line(counts: Mapping[str, int]) -> str:
    return " · ".join(f"{FILTER_LABELS[f]}: *{counts.get(f, 0)}*" for f in FILTERS)


def filter_option(name: str, counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    label = FILTER_LABELS[name] + (f" ({counts.get(name, 0)})" if counts is not None else "")
    return {"text": plain(label, 75), "value": name}


def search_modal(
    *,
    query: str = "",
    filter_name: str = "all",
    items: Sequence[ResultItem] = (),
    page: int = 0,
    has_next: bool = False,
    total: int | None = None,
    counts: Mapping[str, int] | None = None,
    error: str | None = None,
    page_size: int = PAGE_SIZE,
) -> dict[str, Any]:
    """The search modal. Typing dispatches SEARCH_QUERY on each character: the handler answers
    with views.update (with the view's hash) carrying this view rebuilt with fresh results."""
    filter_name = filter_name if filter_name in FILTERS else "all"
    query_input: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": ids.SEARCH_QUERY,
        "placeholder": plain("from:anna@example.com invoice is:unread", 150),
        "dispatch_action_config": {
            "trigger_actions_on": ["on_character_entered", "on_enter_pressed"]
        },
        "max_length": 500,
    }
    if query:
        query_input["initial_value"] = truncate(query, 500, "")
    blocks: list[dict[str, Any]] = [
        {
            "type": "input",
            "block_id": SEARCH_BLOCK,
            "dispatch_action": True,
            "optional": True,
            "label": plain("Search"),
            "element": query_input,
            "hint": plain(
                'Words, "exact phrases", from: to: subject: client: account: '
                "has:attachment is:unread before:/after:YYYY-MM-DD"
            ),
        },
        {
            "type": "actions",
            "block_id": FILTER_BLOCK,
            "elements": [
                {
                    "type": "static_select",
                    "action_id": ids.SEARCH_FILTER,
                    "options": [filter_option(f, counts) for f in FILTERS],
                    "initial_option": filter_option(filter_name, counts),
                }
            ],
        },
    ]
    if error:
        blocks.append({"type": "section", "text": mrkdwn(f":warning: {escape_mrkdwn(error)}")})
    elif not items:
        text = "Nothing matches." if (query or filter_name != "all") else "No conversations yet."
        blocks.append({"type": "section", "text": mrkdwn(text)})
    else:
        blocks.append(
            {
                "type": "context",
                "elements": [mrkdwn(page_label(page, page_size, len(items), total))],
            }
        )
        blocks.append({"type": "divider"})
        for item in items:
            blocks.extend(result_blocks(item))
    blocks.extend(
        _nav(
            ids.SEARCH_PAGE,
            str(page - 1) if page > 0 else None,
            str(page + 1) if has_next else None,
        )
    )
    return {
        "type": "modal",
        "callback_id": ids.VIEW_SEARCH,
        "title": plain("Search mail", 24),
        "submit": plain("Search", 24),  # Slack wants one with an input; Enter lands here
        "close": plain("Close", 24),
        "private_metadata": fit_json(
            {"q": truncate(query, 1000, ""), "f": filter_name, "p": page}, "q", METADATA_MAX
        ),
        "blocks": blocks,
    }


def search_state(view: Mapping[str, Any]) -> tuple[str, str, int]:
    """(query, filter, page) of a search modal, preferring what is typed over the metadata."""
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        meta = {}
    query = str(meta.get("q") or "")
    filter_name = str(meta.get("f") or "all")
    try:
        page = max(0, int(meta.get("p") or 0))
    except (TypeError, ValueError):
        page = 0
    values = state_values(view)
    typed = (values.get(SEARCH_BLOCK) or {}).get(ids.SEARCH_QUERY)
    if typed is not None:
        query = typed.get("value") or ""
    picked = (values.get(FILTER_BLOCK) or {}).get(ids.SEARCH_FILTER)
    if picked and picked.get("selected_option"):
        filter_name = picked["selected_option"].get("value") or filter_name
    if filter_name not in FILTERS:
        filter_name = "all"
    return query, filter_name, page
