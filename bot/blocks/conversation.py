"""A conversation in Slack: its parent message, the emails in its thread, state-change notes.

Pure builders: plain data in, Block Kit dicts out. Every piece of email-derived text goes through
`escape_mrkdwn` (an email must not ping `<!channel>` or show a fake `<https://evil|bank>` link)
and is cut *after* escaping, without splitting an `&amp;`-style entity, so it fits the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.blocks import ids
from bot.blocks.text import SECTION_LIMIT, escape_mrkdwn, plain
from bot.blocks.triage import TriageState, triage_blocks

# One in-thread email keeps its body to one section; the rest is one click away (Open).
THREAD_BODY_LIMIT = 2800
PARENT_SNIPPET_LIMIT = 600
NOTIFICATION_TEXT_LIMIT = 300
MORE = "…"

# Overflow option values are "<verb>:<conversation id>"; the verbs are the action ids.
OVERFLOW_VERBS = (
    ids.CONV_ARCHIVE,
    ids.CONV_UNARCHIVE,
    ids.CONV_MARK_UNREAD,
    ids.CONV_DELETE,
    ids.CONV_LINK,
    ids.CONV_UNLINK,
)


@dataclass(frozen=True)
class Person:
    name: str
    email: str


@dataclass(frozen=True)
class ConversationCard:
    """What the parent message shows about a conversation."""

    conversation_id: int
    account_email: str
    subject: str
    sender: Person
    to: list[Person] = field(default_factory=list)
    cc: list[Person] = field(default_factory=list)
    date: datetime | None = None
    snippet: str = ""
    message_count: int = 1
    unread: bool = True
    archived: bool = False
    deleted: bool = False
    client_name: str | None = None
    has_attachments: bool = False
    merged_into_id: int | None = None
    triage: TriageState | None = None  # owner, status, snooze (bot/blocks/triage.py)


@dataclass(frozen=True)
class EmailCard:
    """One email posted in a conversation's thread."""

    conversation_id: int
    message_id: int
    sender: Person
    to: list[Person] = field(default_factory=list)
    cc: list[Person] = field(default_factory=list)
    date: datetime | None = None
    body: str = ""  # already trimmed of quoted history by the caller
    attachment_names: list[str] = field(default_factory=list)
    outbound: bool = False


# -- text helpers ---------------------------------------------------------------------------


def fit(text: str, limit: int, marker: str = MORE) -> str:
    """Escape `text` for mrkdwn and cut it to at most `limit` characters (marker included)."""
    escaped = escape_mrkdwn(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: max(0, limit - len(marker))]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]  # never leave half an entity such as "&am"
    return cut + marker


def chunks(text: str, size: int = SECTION_LIMIT) -> list[str]:
    """Escape `text` and split it into pieces of at most `size` characters each, preferring
    line breaks and never splitting an entity."""
    escaped = escape_mrkdwn(text)
    out: list[str] = []
    while len(escaped) > size:
        cut = escaped.rfind("\n", size // 2, size)
        if cut == -1:
            cut = size
            amp = escaped.rfind("&", cut - 5, cut)
            if amp != -1 and ";" not in escaped[amp:cut]:
                cut = amp
        out.append(escaped[:cut])
        escaped = escaped[cut:].lstrip("\n")
    if escaped or not out:
        out.append(escaped)
    return out


def who(person: Person) -> str:
    """Escaped 'Name <email>' (the angle brackets escaped too), or just the address."""
    if person.name and person.email:
        return f"{escape_mrkdwn(person.name)} &lt;{escape_mrkdwn(person.email)}&gt;"
    return escape_mrkdwn(person.name or person.email or "(unknown sender)")


def people(persons: list[Person], limit: int = 500) -> str:
    text = ", ".join(escape_mrkdwn(p.name) if p.name else escape_mrkdwn(p.email) for p in persons)
    if len(text) <= limit:
        return text
    return fit(", ".join(p.name or p.email for p in persons), limit)


def when(date: datetime | None) -> str:
    """Slack renders <!date^…> in each reader's own time zone; the fallback is UTC."""
    if date is None:
        return "no date"
    fallback = date.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(date.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text or " ", "verbatim": True}}


def context(*texts: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": t or " ", "verbatim": True} for t in texts[:10]],
    }


def button(action_id: str, label: str, value: str, style: str | None = None) -> dict[str, Any]:
    el: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": plain(label, 75),
        "value": value,
    }
    if style:
        el["style"] = style
    return el


def overflow_value(verb: str, conversation_id: int) -> str:
    return f"{verb}:{conversation_id}"


def parse_overflow_value(value: str) -> tuple[str, int] | None:
    verb, _, rest = value.partition(":")
    if verb not in OVERFLOW_VERBS or not rest.isdigit():
        return None
    return verb, int(rest)


def _option(label: str, value: str) -> dict[str, Any]:
    return {"text": plain(label, 75), "value": value}


# -- the parent message ---------------------------------------------------------------------


def _state_line(card: ConversationCard) -> str:
    parts = []
    if card.deleted:
        parts.append(":wastebasket: In Trash")
    elif card.archived:
        parts.append(":file_cabinet: Archived")
    parts.append(":envelope: Unread" if card.unread else ":white_check_mark: Read")
    if card.client_name:
        parts.append(f":bust_in_silhouette: {fit(card.client_name, 150)}")
    else:
        parts.append("No client linked")
    if card.message_count > 1:
        parts.append(f"{card.message_count} emails")
    if card.has_attachments:
        parts.append(":paperclip: attachments")
    return " · ".join(parts)


def parent_actions(card: ConversationCard) -> dict[str, Any]:
    cid = str(card.conversation_id)
    options = []
    if card.archived:
        options.append(
            _option("Unarchive", overflow_value(ids.CONV_UNARCHIVE, card.conversation_id))
        )
    elif not card.deleted:
        options.append(_option("Archive", overflow_value(ids.CONV_ARCHIVE, card.conversation_id)))
    if not card.unread:
        options.append(
            _option("Mark unread", overflow_value(ids.CONV_MARK_UNREAD, card.conversation_id))
        )
    if not card.deleted:
        options.append(_option("Delete", overflow_value(ids.CONV_DELETE, card.conversation_id)))
    options.append(
        _option(
            "Change client" if card.client_name else "Link to client",
            overflow_value(ids.CONV_LINK, card.conversation_id),
        )
    )
    if card.client_name:
        options.append(
            _option("Unlink client", overflow_value(ids.CONV_UNLINK, card.conversation_id))
        )
    elements: list[dict[str, Any]] = [
        button(ids.CONV_OPEN, "Open", cid, style="primary"),
        button(ids.CONV_REPLY, "Reply", cid),
        button(ids.CONV_REPLY_ALL, "Reply all", cid),
        button(ids.CONV_FORWARD, "Forward", cid),
        {"type": "overflow", "action_id": ids.CONV_MORE, "options": options[:5]},
    ]
    return {"type": "actions", "block_id": f"conv_actions_{cid}", "elements": elements}


def parent_message(card: ConversationCard) -> dict[str, Any]:
    """The channel message that heads the conversation's thread: chat.postMessage/update kwargs
    (text, blocks, unfurl flags)."""
    subject = card.subject.strip() or "(no subject)"
    recipients = people(card.to)
    if card.cc:
        recipients += f" · cc {people(card.cc)}"
    head = f"*{fit(subject, 500)}*\nFrom {who(card.sender)}"
    if recipients:
        head += f"\nTo {recipients}"
    blocks: list[dict[str, Any]] = [section(head)]
    if card.snippet.strip():
        blocks.append(section(fit(card.snippet.strip(), PARENT_SNIPPET_LIMIT)))
    blocks.append(
        context(
            f":inbox_tray: {escape_mrkdwn(card.account_email)} · {when(card.date)}",
            _state_line(card),
        )
    )
    if card.merged_into_id is not None:
        blocks.append(context("This conversation was merged into another thread."))
    blocks.append(parent_actions(card))
    if card.triage is not None:
        blocks.extend(triage_blocks(card.triage))
    sender = card.sender.name or card.sender.email or "unknown sender"
    text = fit(f"{sender}: {subject}", NOTIFICATION_TEXT_LIMIT)
    return {"text": text, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


# -- emails and notes in the thread ---------------------------------------------------------


def open_value(conversation_id: int, message_id: int | None = None) -> str:
    """The Open button's value: "<conversation>" or "<conversation>:<message>"."""
    return str(conversation_id) if message_id is None else f"{conversation_id}:{message_id}"


def parse_open_value(value: str) -> tuple[int, int | None] | None:
    conv, _, msg = value.partition(":")
    if not conv.isdigit() or (msg and not msg.isdigit()):
        return None
    return int(conv), (int(msg) if msg else None)


def thread_email_message(email: EmailCard) -> dict[str, Any]:
    """An email in the conversation's thread: who, when, the body cut to one section."""
    arrow = ":outbox_tray: Sent" if email.outbound else ":incoming_envelope:"
    head = f"{arrow} {who(email.sender)} · {when(email.date)}"
    if email.to:
        head += f"\nTo {people(email.to)}"
    if email.cc:
        head += f" · cc {people(email.cc)}"
    body = email.body.strip() or "(no text)"
    escaped = escape_mrkdwn(body)
    cut = len(escaped) > THREAD_BODY_LIMIT
    blocks: list[dict[str, Any]] = [context(head[:3000]), section(fit(body, THREAD_BODY_LIMIT))]
    if email.attachment_names:
        names = ", ".join(email.attachment_names)
        blocks.append(context(f":paperclip: {fit(names, 2000)}"))
    label = "Open full email" if cut else "Open"
    blocks.append(
        {
            "type": "actions",
            "block_id": f"email_actions_{email.message_id}",
            "elements": [
                button(ids.CONV_OPEN, label, open_value(email.conversation_id, email.message_id))
            ],
        }
    )
    sender = email.sender.name or email.sender.email or "unknown sender"
    text = fit(f"{sender}: {body}", NOTIFICATION_TEXT_LIMIT)
    return {"text": text, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


NOTE_TEXTS = {
    "read": "opened this conversation",
    "mark_unread": "marked this conversation unread",
    "archive": "archived this conversation",
    "unarchive": "moved this conversation back to the inbox",
    "delete": "moved this conversation to Trash",
    "link": "linked this conversation to {client}",
    "unlink": "unlinked {client} from this conversation",
}


def state_note(action: str, user_id: str, client_name: str | None = None) -> dict[str, Any]:
    """A short note in the thread: "@person archived this conversation"."""
    template = NOTE_TEXTS.get(action, action)
    client = f"*{fit(client_name, 150)}*" if client_name else "a client"
    text = f"<@{user_id}> {template.format(client=client)}"
    return {
        "text": text,
        "blocks": [context(text)],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def attachments_note(uploaded: list[str], too_big: list[tuple[str, int]], limit: int) -> str:
    """The comment under uploaded attachments, naming the ones too large to upload."""
    lines = []
    if uploaded:
        lines.append(f":paperclip: {fit(', '.join(uploaded), 1500)}")
    for name, size in too_big[:20]:
        lines.append(
            f":no_entry_sign: {fit(name or 'unnamed', 200)} ({human_size(size)}) is over "
            f"the {human_size(limit)} upload limit; it stays in the mailbox."
        )
    if len(too_big) > 20:
        lines.append(f"…and {len(too_big) - 20} more")
    return "\n".join(lines)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
