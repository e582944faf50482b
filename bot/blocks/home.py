"""The App Home tab (pure): an inbox overview for everyone, account and client admin for admins.

Slack caps a Home tab at 100 blocks, so every list is paged (HOME_PAGE buttons) and the
builder trims whatever would still overflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.blocks import ids
from bot.blocks.search import FILTER_LABELS, FILTERS, ResultItem, slack_date
from bot.blocks.text import escape_mrkdwn, mrkdwn, plain, truncate

MAX_BLOCKS = 100
ACCOUNTS_PAGE_SIZE = 8
CLIENTS_PAGE_SIZE = 8
CLIENT_QUERY_MAX = 100  # characters kept of the clients search (it lives in private_metadata)
RECENT_LIMIT = 8

STATUS_LABELS = {
    "active": ":large_green_circle: Active",
    "error": ":red_circle: Error",
    "needs_reauth": ":warning: Needs re-authorisation",
    "paused": ":double_vertical_bar: Paused",
}
PROVIDER_LABELS = {"imap": "IMAP/SMTP", "gmail": "Gmail", "graph": "Microsoft 365"}


@dataclass(frozen=True)
class AccountSummary:
    id: int
    email: str
    provider: str
    channel_id: str | None
    status: str
    last_error: str | None = None
    last_sync_at: datetime | None = None
    last_success_at: datetime | None = None
    next_sync_at: datetime | None = None
    sync_interval_seconds: int = 300
    folders: tuple[str, ...] = ()
    # Where an IMAP account connects, ready mrkdwn (bot/blocks/connection.py); never a password.
    servers: tuple[str, ...] = ()
    last_error_at: datetime | None = None


@dataclass(frozen=True)
class ClientSummary:
    id: int
    name: str
    company: str = ""
    addresses: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    conversation_count: int = 0


@dataclass(frozen=True)
class HomePages:
    """Which page of each list a person is looking at (kept in the home view's metadata)."""

    accounts: int = 0
    clients: int = 0
    client_query: str = ""  # what the clients list is narrowed to (the search box)

    def to_metadata(self) -> str:
        data: dict[str, Any] = {"accounts": self.accounts, "clients": self.clients}
        if self.client_query:
            data["cq"] = self.client_query
        return json.dumps(data, ensure_ascii=False)

    @staticmethod
    def from_metadata(text: str | None) -> HomePages:
        try:
            data = json.loads(text or "{}")
            return HomePages(
                max(0, int(data.get("accounts", 0))),
                max(0, int(data.get("clients", 0))),
                str(data.get("cq") or "")[:CLIENT_QUERY_MAX],
            )
        except (ValueError, TypeError, AttributeError):
            return HomePages()


@dataclass(frozen=True)
class HomeData:
    is_admin: bool
    counts: Mapping[str, int] = field(default_factory=dict)
    recent: Sequence[ResultItem] = ()
    visible_accounts: int = 0
    connected_accounts: int = 0  # in the workspace, visible or not
    accounts: Sequence[AccountSummary] = ()  # admins: the current page
    accounts_total: int = 0
    clients: Sequence[ClientSummary] = ()  # admins: the current page
    clients_total: int = 0
    template_blocks: Sequence[dict[str, Any]] = ()
    pages: HomePages = HomePages()
    triage_blocks: Sequence[dict[str, Any]] = ()  # yours / unassigned (bot/blocks/triage.py)


def _interval(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def account_text(acc: AccountSummary) -> str:
    channel = f"<#{acc.channel_id}>" if acc.channel_id else "_no channel_"
    provider = PROVIDER_LABELS.get(acc.provider, acc.provider)
    lines = [
        f"*{escape_mrkdwn(acc.email)}* · {provider} · {channel}",
        STATUS_LABELS.get(acc.status, escape_mrkdwn(acc.status)),
    ]
    if acc.status in {"error", "needs_reauth"} and acc.last_error:
        lines[-1] += f": {escape_mrkdwn(truncate(acc.last_error, 500))}"
    health = [
        "Last successful sync: "
        + (slack_date(acc.last_success_at) if acc.last_success_at else "never")
    ]
    if acc.last_error_at:
        health.append(f"last error: {slack_date(acc.last_error_at)}")
    lines.append(" · ".join(health))
    sync = f"Last sync: {slack_date(acc.last_sync_at) if acc.last_sync_at else 'never'}"
    if acc.status == "paused":
        sync += " · Next sync: paused"
    else:
        sync += f" · Next sync: {slack_date(acc.next_sync_at) if acc.next_sync_at else 'soon'}"
    sync += f" · every {_interval(acc.sync_interval_seconds)}"
    lines.append(sync)
    if acc.folders:
        lines.append("Folders: " + escape_mrkdwn(truncate(", ".join(acc.folders), 300)))
    lines += acc.servers
    return "\n".join(lines)


def account_menu(acc: AccountSummary) -> dict[str, Any]:
    """Overflow (at most 5 options): edit, pause|resume, log, remove; Sync now and Edit
    connection are buttons beside it (`account_buttons`). Gmail / Microsoft 365 rows start with
    Reconnect, always there (peers.md §3 row 14); failing IMAP rows too (a new password)."""
    opts = [("Edit sync settings", "edit")]
    if acc.provider in {"gmail", "graph"} or acc.status in {"needs_reauth", "error"}:
        opts.insert(0, ("Reconnect…", "reconnect"))
    opts.append(("Resume", "resume") if acc.status == "paused" else ("Pause", "pause"))
    opts += [("View sync log", "log"), ("Remove…", "remove")]
    return {
        "type": "overflow",
        "action_id": ids.HOME_ACCOUNT_MENU,
        "options": [
            {"text": plain(label, 75), "value": f"{value}:{acc.id}"} for label, value in opts
        ],
    }


def account_buttons(acc: AccountSummary) -> dict[str, Any]:
    """Sync now for every kind of account; Edit connection for IMAP (OAuth accounts' servers
    are the provider's)."""
    elements: list[dict[str, Any]] = [
        {
            "type": "button",
            "action_id": ids.HOME_ACCOUNT_SYNC_NOW,
            "text": plain("Sync now"),
            "value": str(acc.id),
        }
    ]
    if acc.provider == "imap":
        elements.append(
            {
                "type": "button",
                "action_id": ids.HOME_ACCOUNT_EDIT_CONNECTION,
                "text": plain("Edit connection…"),
                "value": str(acc.id),
            }
        )
    return {"type": "actions", "block_id": f"account_buttons_{acc.id}", "elements": elements}


def _nav(section: str, page: int, total: int, size: int) -> list[dict[str, Any]]:
    buttons = []
    if page > 0:
        buttons.append(
            {
                "type": "button",
                "action_id": f"{ids.HOME_PAGE}:{section}_prev",
                "text": plain("◀ Previous"),
                "value": f"{section}:{page - 1}",
            }
        )
    if (page + 1) * size < total:
        buttons.append(
            {
                "type": "button",
                "action_id": f"{ids.HOME_PAGE}:{section}_next",
                "text": plain("Next ▶"),
                "value": f"{section}:{page + 1}",
            }
        )
    return buttons


def overview_blocks(data: HomeData) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain("Mailroom", 150)},
        {
            "type": "section",
            "text": mrkdwn(
                "Your team's shared inbox. Every email conversation is a thread in its "
                "account's channel. Use `/inbox help` for commands, and the *Compose email* "
                "shortcut to write from anywhere."
            ),
        },
    ]
    if data.connected_accounts == 0:
        if not data.is_admin:  # admins read it in their accounts section below
            text = "No email account is connected yet. Ask a Mailroom admin to add one."
            blocks.append({"type": "section", "text": mrkdwn(text)})
    elif data.visible_accounts == 0:
        text = "You are not in the channel of any connected email account, so no mail shows here."
        if not data.is_admin:
            text += " Ask a Mailroom admin, or join the account's channel."
        blocks.append({"type": "section", "text": mrkdwn(text)})
    filters = [
        {
            "type": "button",
            "action_id": f"{ids.HOME_FILTER}:{f}",
            "text": plain(f"{FILTER_LABELS[f]} ({data.counts.get(f, 0)})", 75),
            "value": f,
        }
        for f in FILTERS
    ]
    filters.append(
        {
            "type": "button",
            "action_id": ids.HOME_SEARCH,
            "text": plain(":mag: Search"),
            "style": "primary",
        }
    )
    if data.visible_accounts:
        filters.append(
            {"type": "button", "action_id": ids.HOME_NEW_EMAIL, "text": plain(":email: New email")}
        )
    blocks.append({"type": "actions", "block_id": "home_filters", "elements": filters})
    if data.recent:
        blocks.append({"type": "header", "text": plain("Recent conversations", 150)})
        for item in data.recent[:RECENT_LIMIT]:
            sender = item.sender_name or item.sender_email or "unknown sender"
            mark = ":envelope: " if item.unread else ""
            text = (
                f"{mark}*{escape_mrkdwn(truncate(item.subject or '(no subject)', 150))}*\n"
                f"{escape_mrkdwn(truncate(sender, 100))} · {slack_date(item.date)} · "
                f"{escape_mrkdwn(item.account_email)}"
            )
            if item.thread_url:
                text += f" · <{item.thread_url}|thread>"
            blocks.append(
                {
                    "type": "section",
                    "text": mrkdwn(text),
                    "accessory": {
                        "type": "button",
                        "action_id": ids.CONV_OPEN,
                        "text": plain("Open"),
                        "value": str(item.conversation_id),
                    },
                }
            )
    return blocks


def accounts_blocks(data: HomeData) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "divider"},
        {"type": "header", "text": plain("Email accounts (admin)", 150)},
    ]
    if not data.accounts:
        blocks.append({"type": "section", "text": mrkdwn("No email account is connected yet.")})
    for acc in data.accounts:
        blocks.append(
            {
                "type": "section",
                "block_id": f"account_{acc.id}",
                "text": mrkdwn(account_text(acc)),
                "accessory": account_menu(acc),
            }
        )
        blocks.append(account_buttons(acc))
    elements: list[dict[str, Any]] = [
        {
            "type": "button",
            "action_id": ids.HOME_ADD_ACCOUNT,
            "text": plain("Add email account"),
            "style": "primary",
        }
    ]
    elements += _nav("accounts", data.pages.accounts, data.accounts_total, ACCOUNTS_PAGE_SIZE)
    blocks.append({"type": "actions", "block_id": "home_accounts_actions", "elements": elements})
    return blocks


def _client_menu(c: ClientSummary, *, is_admin: bool) -> dict[str, Any]:
    options = [
        {"text": plain("Edit"), "value": f"edit:{c.id}"},
        {"text": plain("Timeline"), "value": f"timeline:{c.id}"},
    ]
    if is_admin:
        options.append({"text": plain("Delete…"), "value": f"delete:{c.id}"})
    return {"type": "overflow", "action_id": ids.HOME_CLIENT_EDIT, "options": options}


def client_line(c: ClientSummary) -> str:
    who = escape_mrkdwn(truncate(c.name, 150))
    if c.company:
        who += f" · {escape_mrkdwn(truncate(c.company, 150))}"
    detail = ", ".join([*c.addresses, *(f"@{d}" for d in c.domains)]) or "no addresses"
    count = f"{c.conversation_count} conversation{'s' if c.conversation_count != 1 else ''}"
    return f"*{who}*\n{escape_mrkdwn(truncate(detail, 400))} · {count}"


def client_row(c: ClientSummary, *, is_admin: bool) -> dict[str, Any]:
    """One client with Edit / Timeline (everyone) and Delete (admins) in its menu."""
    return {
        "type": "section",
        "block_id": f"client_{c.id}",
        "text": mrkdwn(client_line(c)),
        "accessory": _client_menu(c, is_admin=is_admin),
    }


def clients_blocks(data: HomeData) -> list[dict[str, Any]]:
    """Everyone browses, searches, adds and edits clients; admins also delete and import."""
    query = data.pages.client_query
    search: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": ids.HOME_CLIENT_SEARCH,
        "placeholder": plain("Name, company, address or domain", 150),
        "max_length": CLIENT_QUERY_MAX,
        "dispatch_action_config": {"trigger_actions_on": ["on_enter_pressed"]},
    }
    if query:
        search["initial_value"] = query
    blocks: list[dict[str, Any]] = [
        {"type": "divider"},
        {"type": "header", "text": plain("Clients", 150)},
        {
            "type": "input",
            # A new block_id per query, so Slack shows the query it was given, not the last typed.
            "block_id": f"home_client_search_{len(query)}",
            "dispatch_action": True,
            "optional": True,
            "label": plain("Find a client (press Enter)"),
            "element": search,
        },
    ]
    if not data.clients:
        text = f"No client matches “{escape_mrkdwn(query)}”." if query else "No clients yet."
        blocks.append({"type": "section", "text": mrkdwn(text)})
    for c in data.clients:
        blocks.append(client_row(c, is_admin=data.is_admin))
    elements: list[dict[str, Any]] = [
        {"type": "button", "action_id": ids.HOME_CLIENT_NEW, "text": plain("Add client")}
    ]
    if data.is_admin:
        elements.append(
            {"type": "button", "action_id": ids.HOME_CLIENT_IMPORT, "text": plain("Import CSV…")}
        )
    if query:
        elements.append(
            {
                "type": "button",
                "action_id": ids.HOME_CLIENT_SEARCH_CLEAR,
                "text": plain("Show all clients"),
            }
        )
    elements += _nav("clients", data.pages.clients, data.clients_total, CLIENTS_PAGE_SIZE)
    blocks.append({"type": "actions", "block_id": "home_clients_actions", "elements": elements})
    return blocks


def home_view(data: HomeData) -> dict[str, Any]:
    blocks = overview_blocks(data) + list(data.triage_blocks)
    if data.is_admin:
        blocks += accounts_blocks(data)
        tail = clients_blocks(data)
        # Templates get whatever room the fixed parts leave; a note says when some are cut.
        room = MAX_BLOCKS - len(blocks) - len(tail) - 2
        templates = list(data.template_blocks)
        if templates:
            blocks.append({"type": "divider"})
            if len(templates) > room:
                templates = templates[: max(0, room - 1)]
                templates.append(
                    {
                        "type": "context",
                        "elements": [mrkdwn("More templates than fit here; use `/inbox compose`.")],
                    }
                )
            blocks += templates
        blocks += tail
    else:
        blocks += clients_blocks(data)
    if len(blocks) > MAX_BLOCKS:  # last resort; paging keeps us far from this
        note = {"type": "context", "elements": [mrkdwn("Some items were cut to fit.")]}
        blocks = [*blocks[: MAX_BLOCKS - 1], note]
    return {
        "type": "home",
        "callback_id": "home",
        "private_metadata": data.pages.to_metadata(),
        "blocks": blocks,
    }
