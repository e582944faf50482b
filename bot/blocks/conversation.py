"""A conversation in Slack: its parent message (the card) and the emails in its thread.

The parent is built from parts other features can extend: `state_parts` (the state line),
`parent_buttons` and `parent_overflow_options`. People are named as text, never mentioned.

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

# An in-thread email shows its (quote-trimmed) body over up to this many sections; the rest is
# one click away ("Open full email"). 10 x 2,900 characters stays far below Slack's 50 blocks.
THREAD_SECTION_CHARS = 2900
THREAD_MAX_SECTIONS = 10
THREAD_BODY_LIMIT = THREAD_SECTION_CHARS * THREAD_MAX_SECTIONS
PARENT_SNIPPET_LIMIT = 600
# Escaped characters kept of a sender's name and address (each part is cut after escaping, so a
# From header full of "&" cannot push the parent's first section over 3,000 characters).
NAME_LIMIT = 300
ADDRESS_LIMIT = 330
NOTIFICATION_TEXT_LIMIT = 300
MORE = "…"

# Overflow option values are "<verb>:<conversation id>"; the verbs are the action ids.
OVERFLOW_VERBS = (
    ids.CONV_REPLY_ALL,
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
class Activity:
    """Something a person (or the app) did to a conversation, named on the parent's state line.

    `verb`: "read", "archive", "unarchive", "delete", "link" or "returned" (a new email brought
    an archived conversation back to the inbox; no person). `name` is the person's display name,
    shown as plain text: the state line never @-mentions anyone."""

    verb: str
    user_id: str | None = None
    name: str = ""


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
    # The latest of each kind of change, for the state line: read, archive/unarchive/delete/
    # returned, link.
    read_by: Activity | None = None
    state_by: Activity | None = None
    linked_by: Activity | None = None


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
    sent_by: str | None = None  # Slack user id when it was sent from Slack
    sent_by_name: str = ""  # their display name (shown as text, never a mention)
    first: bool = False  # the conversation's first email (the parent shows its start)
    # Sent from Slack: what was written, as escaped mrkdwn (bot/mail/richtext.py), shown in
    # place of the plain text so the thread has the same formatting as the email (issue 20).
    body_mrkdwn: str = ""


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
    return split_escaped(escape_mrkdwn(text), size)


def split_escaped(escaped: str, size: int = SECTION_LIMIT) -> list[str]:
    """Split already-escaped mrkdwn like `chunks` does."""
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
    """Escaped 'Name <email>' (the angle brackets escaped too), or just the address; each part
    cut after escaping."""
    if person.name and person.email:
        return f"{fit(person.name, NAME_LIMIT)} &lt;{fit(person.email, ADDRESS_LIMIT)}&gt;"
    return fit(person.name or person.email or "(unknown sender)", ADDRESS_LIMIT)


def cut_escaped(text: str, limit: int, marker: str = MORE) -> str:
    """Cut already-escaped mrkdwn to `limit` characters without splitting an entity."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(marker))]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + marker


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


def _by(activity: Activity | None) -> str:
    """ " by Ann Lee" (plain text, escaped), or "" when nobody is known."""
    if activity is None or not activity.user_id:
        return ""
    return f" by {fit(activity.name or 'a teammate', 80)}"


def state_parts(card: ConversationCard) -> list[str]:
    """The pieces of the parent's state line, in order. Kept as a list so other features
    (owner, status, snooze) can add their own piece."""
    parts: list[str] = []
    state = card.state_by
    if card.deleted:
        parts.append(
            ":wastebasket: In Trash" + (_by(state) if state and state.verb == "delete" else "")
        )
    elif card.archived:
        parts.append(
            ":white_check_mark: Done · Archived"
            + (_by(state) if state and state.verb == "archive" else "")
        )
    elif state is not None and state.verb == "returned":
        parts.append(":leftwards_arrow_with_hook: *Back in the inbox*: a new email arrived")
    elif state is not None and state.verb == "unarchive":
        parts.append(":inbox_tray: Back in the inbox" + _by(state))
    if card.unread:
        parts.append(":envelope: Unread")
    else:
        read = card.read_by
        parts.append(":eyes: Read" + (_by(read) if read and read.verb == "read" else ""))
    if card.client_name:
        parts.append(
            f":bust_in_silhouette: {fit(card.client_name, 150)}"
            + (f" (linked{_by(card.linked_by)})" if _by(card.linked_by) else "")
        )
    else:
        parts.append("No client linked")
    if card.message_count > 1:
        parts.append(f"{card.message_count} emails")
    if card.has_attachments:
        parts.append(":paperclip: attachments")
    return parts


def state_line(card: ConversationCard) -> str:
    return cut_escaped(" · ".join(state_parts(card)), 2000)


def parent_overflow_options(card: ConversationCard) -> list[dict[str, Any]]:
    """The ⋯ menu: the less common actions (at most 5)."""
    cid = card.conversation_id
    options = []
    if not card.deleted:
        options.append(_option("Reply all", overflow_value(ids.CONV_REPLY_ALL, cid)))
        if not card.unread:
            options.append(_option("Mark unread", overflow_value(ids.CONV_MARK_UNREAD, cid)))
        options.append(_option("Delete", overflow_value(ids.CONV_DELETE, cid)))
    options.append(
        _option(
            "Change client" if card.client_name else "Link to client",
            overflow_value(ids.CONV_LINK, cid),
        )
    )
    if card.client_name:
        options.append(_option("Unlink client", overflow_value(ids.CONV_UNLINK, cid)))
    return options[:5]


def parent_buttons(card: ConversationCard) -> list[dict[str, Any]]:
    """The top-level buttons. A trashed conversation can only be opened (nothing to answer)."""
    cid = str(card.conversation_id)
    buttons = [button(ids.CONV_OPEN, "Open", cid, style="primary")]
    if card.deleted:
        return buttons
    buttons.append(button(ids.CONV_REPLY, "Reply", cid))
    if card.archived:
        buttons.append(button(ids.CONV_UNARCHIVE, "Move to inbox", cid))
    else:
        buttons.append(button(ids.CONV_ARCHIVE, "Done", cid))
    buttons.append(button(ids.CONV_FORWARD, "Forward", cid))
    return buttons


def parent_actions(card: ConversationCard) -> dict[str, Any]:
    elements: list[dict[str, Any]] = parent_buttons(card)
    options = parent_overflow_options(card)
    if options:
        elements.append({"type": "overflow", "action_id": ids.CONV_MORE, "options": options})
    return {
        "type": "actions",
        "block_id": f"conv_actions_{card.conversation_id}",
        "elements": elements[:25],
    }


def parent_head(card: ConversationCard) -> str:
    """Subject, sender, recipients: each part cut after escaping, and the whole capped."""
    subject = card.subject.strip() or "(no subject)"
    recipients = people(card.to)
    if card.cc:
        recipients += f" · cc {people(card.cc)}"
    head = f"*{fit(subject, 500)}*\nFrom {who(card.sender)}"
    if recipients:
        head += f"\nTo {recipients}"
    return cut_escaped(head, SECTION_LIMIT)


def parent_message(card: ConversationCard) -> dict[str, Any]:
    """The channel message that heads the conversation's thread: chat.postMessage/update kwargs
    (text, blocks, unfurl flags). It keeps the first email's sender and snippet for good; later
    emails are in the thread."""
    subject = card.subject.strip() or "(no subject)"
    blocks: list[dict[str, Any]] = [section(parent_head(card))]
    if card.snippet.strip():
        blocks.append(section(fit(card.snippet.strip(), PARENT_SNIPPET_LIMIT)))
    blocks.append(
        context(
            f":inbox_tray: {fit(card.account_email, 330)} · {when(card.date)}",
            state_line(card),
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


def minimal_parent_message(conversation_id: int, subject: str) -> dict[str, Any]:
    """What is posted when Slack refused the full parent: a short subject and the buttons, so
    the conversation (and every email waiting for its thread) still reaches Slack."""
    shown = fit(subject.strip() or "(no subject)", 200)
    blocks = [
        section(f"*{shown}*\nThis email's headers are too unusual to show here; open it to read."),
        {
            "type": "actions",
            "block_id": f"conv_actions_{conversation_id}",
            "elements": [button(ids.CONV_OPEN, "Open", str(conversation_id), style="primary")],
        },
    ]
    return {
        "text": fit(f"New email: {subject}", NOTIFICATION_TEXT_LIMIT),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


# -- emails in the thread -------------------------------------------------------------------


def open_value(conversation_id: int, message_id: int | None = None) -> str:
    """The Open button's value: "<conversation>" or "<conversation>:<message>"."""
    return str(conversation_id) if message_id is None else f"{conversation_id}:{message_id}"


def parse_open_value(value: str) -> tuple[int, int | None] | None:
    conv, _, msg = value.partition(":")
    if not conv.isdigit() or (msg and not msg.isdigit()):
        return None
    return int(conv), (int(msg) if msg else None)


def _email_head(email: EmailCard) -> str:
    if email.outbound:
        if email.sent_by:
            # By name, as text: a mention would notify the person for their own action.
            head = (
                f":outbox_tray: *Sent by {fit(email.sent_by_name or 'a teammate', 80)}* from Slack"
            )
        else:
            head = f":outbox_tray: *Sent* from a mail client as {who(email.sender)}"
        head += f" · {when(email.date)}"
        if email.to:
            head += f"\nTo {people(email.to)}"
    else:
        head = f":incoming_envelope: *{who(email.sender)}* · {when(email.date)}"
        if email.to:
            head += f"\nTo {people(email.to)}"
    if email.cc:
        head += f" · cc {people(email.cc)}"
    return cut_escaped(head, 2900)


def email_buttons(email: EmailCard, *, cut: bool) -> dict[str, Any]:
    """Open, Reply, Reply all and Forward for THIS email (value "<conversation>:<message>")."""
    value = open_value(email.conversation_id, email.message_id)
    return {
        "type": "actions",
        "block_id": f"email_actions_{email.message_id}",
        "elements": [
            button(ids.CONV_OPEN, "Open full email" if cut else "Open", value),
            button(ids.CONV_REPLY, "Reply", value),
            button(ids.CONV_REPLY_ALL, "Reply all", value),
            button(ids.CONV_FORWARD, "Forward", value),
        ],
    }


def thread_email_message(email: EmailCard) -> dict[str, Any]:
    """An email in the conversation's thread: who, when, to whom, its text over as many sections
    as Slack allows (within THREAD_BODY_LIMIT), its attachments' names and its own buttons."""
    body = email.body.strip() or "(no text)"
    # Escaping only grows text, so the first THREAD_BODY_LIMIT raw characters are all that can
    # be shown (and a megabyte body is not escaped and split for nothing).
    shown = body[:THREAD_BODY_LIMIT]
    if email.body_mrkdwn.strip():
        written = email.body_mrkdwn.strip()
        shown = written[:THREAD_BODY_LIMIT]
        pieces = split_escaped(shown, THREAD_SECTION_CHARS)
        cut = len(shown) < len(written) or len(pieces) > THREAD_MAX_SECTIONS
    else:
        pieces = chunks(shown, THREAD_SECTION_CHARS)
        cut = len(shown) < len(body) or len(pieces) > THREAD_MAX_SECTIONS
    pieces = pieces[:THREAD_MAX_SECTIONS]
    blocks: list[dict[str, Any]] = [context(_email_head(email))]
    blocks.extend(section(p) for p in pieces)
    if cut:
        blocks.append(
            context(":scissors: The email continues: *Open full email* to read the rest.")
        )
    if email.attachment_names:
        names = ", ".join(email.attachment_names)
        blocks.append(context(f":paperclip: {fit(names, 2000)}"))
    blocks.append(email_buttons(email, cut=cut))
    if email.outbound:
        lead = f"Sent by {email.sent_by_name or 'a teammate'}" if email.sent_by else "Sent"
    elif email.first:
        lead = email.sender.name or email.sender.email or "unknown sender"
    else:
        lead = f"New email from {email.sender.name or email.sender.email or 'unknown sender'}"
    text = fit(f"{lead}: {body}", NOTIFICATION_TEXT_LIMIT)
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


def state_note(action: str, actor_name: str, client_name: str | None = None) -> dict[str, Any]:
    """A short note naming the person as text (no @-mention, so nobody is notified).

    The app no longer posts these for state changes (the parent's state line shows them); kept
    for callers that want a one-line note."""
    template = NOTE_TEXTS.get(action, action)
    client = f"*{fit(client_name, 150)}*" if client_name else "a client"
    text = f"{fit(actor_name or 'Someone', 80)} {template.format(client=client)}"
    return {
        "text": text,
        "blocks": [context(text)],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def attachments_note(
    uploaded: list[str],
    too_big: list[tuple[str, int]],
    limit: int,
    not_uploaded: list[str] | None = None,
) -> str:
    """The comment under uploaded attachments, naming the ones too large to upload and the ones
    past the per-email file cap (they stay in the mailbox and in the Open modal's list)."""
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
    if not_uploaded:
        lines.append(
            f":file_folder: {len(not_uploaded)} more file(s) not uploaded here (too many for "
            f"one email); they stay in the mailbox: {fit(', '.join(not_uploaded), 1200)}"
        )
    return "\n".join(lines)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
