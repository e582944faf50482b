"""Team triage in Block Kit: the parent's owner/status/snooze line and buttons, the Assign and
Snooze modals, notes in the thread, the assignment DM and the history in the Open modal.

Pure builders: plain data in, Block Kit dicts out. User ids are rendered as Slack mentions
(`<@U…>`), which Slack resolves itself; they come from Slack, never from an email.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.blocks.text import escape_mrkdwn, plain, truncate

# action_id / callback_id / block_id (kept here so the shared ids module stays untouched)
TAKE = "triage_take"  # value: conversation id
ASSIGN = "triage_assign"  # value: conversation id; opens the Assign modal
MENU = "triage_menu"  # snooze overflow; option value "<verb>:<conversation id>"
STATUS = "triage_status"  # Done / Reopen button; value "<verb>:<conversation id>"
VIEW_ASSIGN = "view_triage_assign"
VIEW_SNOOZE = "view_triage_snooze"
ASSIGN_BLOCK = "triage_assignee"
ASSIGN_SELECT = "triage_assignee_pick"
SNOOZE_DATE_BLOCK = "triage_snooze_date"
SNOOZE_DATE = "triage_snooze_date_pick"
SNOOZE_TIME_BLOCK = "triage_snooze_time"
SNOOZE_TIME = "triage_snooze_time_pick"
HOME_DMS = "home_triage_dms"  # value: "on" | "off"
NOBODY = "-"
NOBODY_LABEL = "Nobody (unassign)"
# Slack's cap on a static_select's options and on an options load's answer.
MAX_OPTIONS = 100

# Overflow verbs
LATER_TODAY = "later_today"
TOMORROW = "tomorrow"
NEXT_WEEK = "next_week"
PICK = "pick"
UNSNOOZE = "unsnooze"
DONE = "done"
REOPEN = "reopen"
UNASSIGN = "unassign"
MENU_VERBS = (LATER_TODAY, TOMORROW, NEXT_WEEK, PICK, UNSNOOZE, DONE, REOPEN, UNASSIGN)

STATUS_LABELS = {
    "open": ":large_green_circle: Open",
    "waiting": ":hourglass_flowing_sand: Waiting on customer",
    "done": ":white_check_mark: Done",
}


@dataclass(frozen=True)
class TriageState:
    """What the parent shows about ownership. `replying_user` is set only while the mark is
    live (the renderer drops an expired one)."""

    conversation_id: int
    status: str = "open"
    assignee: str | None = None
    waiting_since: datetime | None = None
    snoozed_until: datetime | None = None
    replying_user: str | None = None
    back_from_snooze: bool = False  # woke, and nothing else changed since
    # Display names of the people above, looked up outside the database session: the parent
    # names people as plain text and never @-mentions them (issue 14, quiet by default).
    names: Mapping[str, str] = field(default_factory=dict)

    def user_ids(self) -> set[str]:
        return {u for u in (self.assignee, self.replying_user) if u}


def ago(when: datetime) -> str:
    """Slack renders `{ago}` relative to each reader's now ("3 hours ago"), so the parent
    never goes stale between updates."""
    fallback = when.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{{ago}}|since {fallback}>"


def at(when: datetime) -> str:
    fallback = when.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def mention(user_id: str | None) -> str:
    return f"<@{user_id}>" if user_id else "nobody"


def named(user_id: str | None, names: Mapping[str, str]) -> str:
    """A person by display name, as escaped plain text (no mention, no notification)."""
    if not user_id:
        return "nobody"
    return escape_mrkdwn(truncate(names.get(user_id) or "a teammate", 80))


def state_line(state: TriageState) -> str:
    """ ":large_green_circle: Open · Owner @ann · Customer waiting since 3 hours ago"."""
    parts = [STATUS_LABELS.get(state.status, state.status)]
    parts.append(f"Owner {named(state.assignee, state.names)}" if state.assignee else "Unassigned")
    if state.waiting_since is not None and state.status != "done":
        parts.append(f":alarm_clock: Customer waiting since {ago(state.waiting_since)}")
    if state.snoozed_until is not None:
        parts.append(f":zzz: Snoozed until {at(state.snoozed_until)}")
    elif state.back_from_snooze:
        parts.append(":alarm_clock: *Back from snooze*")
    if state.replying_user:
        parts.append(f":pencil2: {named(state.replying_user, state.names)} is replying")
    return " · ".join(parts)


def menu_value(verb: str, conversation_id: int) -> str:
    return f"{verb}:{conversation_id}"


def parse_menu_value(value: str) -> tuple[str, int] | None:
    verb, _, rest = value.partition(":")
    if verb not in MENU_VERBS or not rest.isdigit():
        return None
    return verb, int(rest)


def _option(label: str, value: str) -> dict[str, Any]:
    return {"text": plain(label, 75), "value": value}


def triage_blocks(state: TriageState) -> list[dict[str, Any]]:
    """A context line with the state and an actions row: Take it, Assign… and a Snooze menu
    (Slack allows five options per overflow). Done is the card's own top-level button (an
    archived conversation is Done; Move to inbox reopens it)."""
    cid = state.conversation_id
    line = {
        "type": "context",
        "block_id": f"triage_state_{cid}",
        "elements": [{"type": "mrkdwn", "text": state_line(state), "verbatim": True}],
    }
    options = [
        _option("Snooze: later today", menu_value(LATER_TODAY, cid)),
        _option("Snooze: tomorrow morning", menu_value(TOMORROW, cid)),
        _option("Snooze: next week", menu_value(NEXT_WEEK, cid)),
        _option("Snooze until…", menu_value(PICK, cid)),
    ]
    if state.snoozed_until is not None:
        options.append(_option("Unsnooze", menu_value(UNSNOOZE, cid)))
    elements: list[dict[str, Any]] = []
    if state.assignee is None:
        elements.append(
            {"type": "button", "action_id": TAKE, "text": plain("Take it"), "value": str(cid)}
        )
    elements.append(
        {
            "type": "button",
            "action_id": ASSIGN,
            "text": plain("Reassign…" if state.assignee else "Assign…"),
            "value": str(cid),
        }
    )
    # Unassign is "Nobody" in the Assign… modal.
    elements.append({"type": "overflow", "action_id": MENU, "options": options[:5]})
    return [line, {"type": "actions", "block_id": f"triage_actions_{cid}", "elements": elements}]


# -- modals --------------------------------------------------------------------------------


def _meta(conversation_id: int, channel_id: str | None) -> str:
    return json.dumps({"c": conversation_id, "ch": channel_id}, separators=(",", ":"))


def parse_meta(text: str | None) -> tuple[int, str | None] | None:
    try:
        data = json.loads(text or "")
        return int(data["c"]), (str(data["ch"]) if data.get("ch") else None)
    except (ValueError, KeyError, TypeError):
        return None


def assignee_option(user_id: str, label: str) -> dict[str, Any]:
    return _option(truncate(label or user_id, 70), user_id)


def assignee_options(choices: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The ack body's options for the Assign picker's options load: (value, label) pairs."""
    return [assignee_option(value, label) for value, label in choices[:MAX_OPTIONS]]


def assign_modal(
    conversation_id: int,
    subject: str,
    members: list[tuple[str, str]],
    current: str | None,
    channel_id: str | None,
) -> dict[str, Any]:
    """A picker of the account channel's members (user id, name) only, plus "Nobody".

    Up to 99 people (100 options with Nobody, Slack's limit) it is a static_select: the whole
    list shows on the first click. A bigger channel gets an external_select whose options
    Slack loads as the person types (`ASSIGN_SELECT`'s options listener: the channel's
    members matching the text, at most 100)."""
    nobody = _option(NOBODY_LABEL, NOBODY)
    select: dict[str, Any]
    if len(members) < MAX_OPTIONS:
        options = [nobody] + [assignee_option(uid, name) for uid, name in members]
        select = {
            "type": "static_select",
            "action_id": ASSIGN_SELECT,
            "placeholder": plain("Choose a member of the channel"),
            "options": options,
        }
        for opt in options:
            if current and opt["value"] == current:
                select["initial_option"] = opt
    else:
        select = {
            "type": "external_select",
            "action_id": ASSIGN_SELECT,
            "placeholder": plain("Type a channel member's name"),
            "min_query_length": 0,
        }
        names = dict(members)
        if current and current in names:  # as the static list: only a member still there
            select["initial_option"] = assignee_option(current, names[current])
    return {
        "type": "modal",
        "callback_id": VIEW_ASSIGN,
        "private_metadata": _meta(conversation_id, channel_id),
        "title": plain("Assign conversation", 24),
        "submit": plain("Assign"),
        "close": plain("Cancel"),
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*{escape_mrkdwn(truncate(subject or '(no subject)', 300))}*",
                    "verbatim": True,
                },
            },
            {
                "type": "input",
                "block_id": ASSIGN_BLOCK,
                "label": plain("Owner"),
                "element": select,
            },
        ],
    }


def snooze_modal(
    conversation_id: int, subject: str, tz_label: str, day: str, channel_id: str | None
) -> dict[str, Any]:
    """A date and a time, read in the person's own Slack time zone (`tz_label`)."""
    return {
        "type": "modal",
        "callback_id": VIEW_SNOOZE,
        "private_metadata": _meta(conversation_id, channel_id),
        "title": plain("Snooze until…", 24),
        "submit": plain("Snooze"),
        "close": plain("Cancel"),
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*{escape_mrkdwn(truncate(subject or '(no subject)', 300))}*\n"
                    f"It comes back at this time ({escape_mrkdwn(tz_label)}), or sooner if "
                    "new mail arrives.",
                    "verbatim": True,
                },
            },
            {
                "type": "input",
                "block_id": SNOOZE_DATE_BLOCK,
                "label": plain("Day"),
                "element": {"type": "datepicker", "action_id": SNOOZE_DATE, "initial_date": day},
            },
            {
                "type": "input",
                "block_id": SNOOZE_TIME_BLOCK,
                "label": plain("Time"),
                "element": {
                    "type": "timepicker",
                    "action_id": SNOOZE_TIME,
                    "initial_time": "09:00",
                },
            },
        ],
    }


# -- notes, DMs and history ----------------------------------------------------------------


def _note(text: str) -> dict[str, Any]:
    return {
        "text": text,
        "blocks": [{"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}],
    }


def woke_channel_message(subject: str, url: str | None, reason: str) -> dict[str, Any]:
    """The channel is told when a snoozed conversation comes back."""
    why = "new mail arrived" if reason == "mail" else "its snooze ended"
    title = escape_mrkdwn(truncate(subject or "(no subject)", 200))
    link = f"<{url}|{title}>" if url else f"*{title}*"
    text = f":alarm_clock: Back from snooze ({why}): {link}"
    return {**_note(text), "unfurl_links": False, "unfurl_media": False}


def assignment_dm(actor: str, subject: str, url: str | None) -> dict[str, Any]:
    title = escape_mrkdwn(truncate(subject or "(no subject)", 200))
    link = f"<{url}|{title}>" if url else f"*{title}*"
    text = f"{mention(actor)} assigned you an email conversation: {link}"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "Turn these messages off in Mailroom's Home tab.",
                    }
                ],
            },
        ],
    }


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    actor: str
    action: str  # "triage.assign", "conversation.archive", …
    before: Any = None
    after: Any = None
    reason: str | None = None


def _value(action: str, value: Any) -> str:
    if value is None or value == "":
        return "none"
    if action == "triage.assign":
        return mention(str(value))
    if action in ("triage.snooze", "triage.wake"):
        try:
            return at(datetime.fromisoformat(str(value)))
        except ValueError:
            return escape_mrkdwn(str(value))
    return escape_mrkdwn(str(value))


def history_line(entry: HistoryEntry) -> str:
    who = "Mailroom" if entry.actor in ("system", "cli") else mention(entry.actor)
    what = entry.action.split(".", 1)[-1].replace("_", " ")
    names = {"assign": "owner", "status": "status", "snooze": "snooze", "wake": "back from snooze"}
    if entry.action.startswith("triage."):
        name = names.get(what, what)
        if what == "wake":
            text = f"{who}: back from snooze ({escape_mrkdwn(entry.reason or 'time')})"
        else:
            before, after = _value(entry.action, entry.before), _value(entry.action, entry.after)
            text = f"{who}: {name} {before} → {after}"
    else:
        text = f"{who}: {escape_mrkdwn(what)}"
    return f"{at(entry.at)} · {text}"


def history_blocks(entries: list[HistoryEntry], room: int) -> list[dict[str, Any]]:
    """The conversation's history for the Open modal, in at most `room` blocks."""
    if not entries or room < 2:
        return []
    lines = [history_line(e) for e in entries]
    blocks: list[dict[str, Any]] = [{"type": "divider"}]
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == 10:  # a context block holds ten elements
            blocks.append(_history_context(chunk))
            chunk = []
    if chunk:
        blocks.append(_history_context(chunk))
    blocks.insert(1, {"type": "section", "text": {"type": "mrkdwn", "text": "*History*"}})
    return blocks[:room]


def _history_context(lines: list[str]) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in lines]}


def home_blocks(
    mine: list[dict[str, Any]], unassigned: list[dict[str, Any]], dms_on: bool
) -> list[dict[str, Any]]:
    """The App Home's "Yours" and "Unassigned" lists (section blocks built by the caller's
    result builder) and the DM preference button."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain("Assigned to you", 150)},
        *(
            mine
            or [
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": "Nothing assigned to you."}],
                }
            ]
        ),
        {"type": "header", "text": plain("Unassigned", 150)},
        *(
            unassigned
            or [
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "Nothing unassigned."}]}
            ]
        ),
        {
            "type": "actions",
            "block_id": "home_triage_prefs",
            "elements": [
                {
                    "type": "button",
                    "action_id": HOME_DMS,
                    "text": plain(
                        "Turn off assignment DMs" if dms_on else "Turn on assignment DMs"
                    ),
                    "value": "off" if dms_on else "on",
                }
            ],
        },
    ]
    return blocks


def home_item(
    conversation_id: int,
    subject: str,
    sender: str,
    account_email: str,
    waiting_since: datetime | None,
    status: str,
    url: str | None,
) -> dict[str, Any]:
    title = escape_mrkdwn(truncate(subject or "(no subject)", 150))
    text = f"*{title}*\n{escape_mrkdwn(truncate(sender, 100))} · {escape_mrkdwn(account_email)}"
    text += f" · {STATUS_LABELS.get(status, status)}"
    if waiting_since is not None:
        text += f" · waiting since {ago(waiting_since)}"
    if url:
        text += f" · <{url}|thread>"
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": text},
        "accessory": {
            "type": "button",
            "action_id": "conv_open",
            "text": plain("Open"),
            "value": str(conversation_id),
        },
    }
