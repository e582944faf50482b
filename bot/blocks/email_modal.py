"""The "Open" modal: one email in full, its headers, body and attachments.

The body is split across sections of at most 3,000 characters; a modal holds 100 blocks and
250 kB, so a very long body is cut with a note saying how much is left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.blocks import ids
from bot.blocks.conversation import (
    Person,
    button,
    chunks,
    context,
    fit,
    human_size,
    open_value,
    people,
    section,
    who,
)
from bot.blocks.text import plain

MAX_BLOCKS = 100
# Blocks kept for headers, attachments and notes around the body.
RESERVED_BLOCKS = 8
# Escaped body characters in one modal: well under the 250 kB view limit even for 3-byte UTF-8.
MAX_BODY_CHARS = 70_000
# Slack's 250 kB counts the view's JSON as UTF-8 bytes: `&`/`<` grow 5x when escaped and an
# emoji takes 4 bytes, so the body is also cut by that measure (security review #19).
MAX_BODY_BYTES = 180_000


@dataclass(frozen=True)
class AttachmentLine:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class EmailView:
    conversation_id: int
    message_id: int
    subject: str
    sender: Person
    to: list[Person] = field(default_factory=list)
    cc: list[Person] = field(default_factory=list)
    reply_to: list[Person] = field(default_factory=list)
    date: datetime | None = None
    account_email: str = ""
    body: str = ""
    attachments: list[AttachmentLine] = field(default_factory=list)
    position: int = 1  # this email's place in the conversation
    total: int = 1
    truncated: bool = False  # the stored copy was cut at the size limit
    defects: list[str] = field(default_factory=list)
    previous_id: int | None = None  # the email before this one in the conversation
    next_id: int | None = None


def _headers(email: EmailView) -> str:
    lines = [
        f"*{fit(email.subject.strip() or '(no subject)', 600)}*",
        f"*From:* {who(email.sender)}",
    ]
    if email.to:
        lines.append(f"*To:* {people(email.to, 600)}")
    if email.cc:
        lines.append(f"*Cc:* {people(email.cc, 600)}")
    if email.reply_to:
        lines.append(f"*Reply-To:* {people(email.reply_to, 300)}")
    date = email.date.strftime("%a, %d %b %Y %H:%M UTC") if email.date else "no date"
    lines.append(f"*Date:* {date}")
    if email.account_email:
        lines.append(f"*Mailbox:* {fit(email.account_email, 320)}")
    return "\n".join(lines)[:3000]


def _attachment_lines(attachments: list[AttachmentLine]) -> str:
    text = "*Attachments*"
    for shown, a in enumerate(attachments):
        name = fit(a.filename or "unnamed", 200)
        line = f"\n• {name} ({fit(a.content_type, 80)}, {human_size(a.size)})"
        if len(text) + len(line) > 2950:
            return text + f"\n…and {len(attachments) - shown} more"
        text += line
    return text


def email_modal(email: EmailView) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [section(_headers(email))]
    if email.total > 1:
        blocks.append(context(f"Email {email.position} of {email.total} in this conversation"))
        steps = []
        if email.previous_id is not None:
            steps.append(
                button(
                    ids.EMAIL_PREV,
                    "◀ Previous",
                    open_value(email.conversation_id, email.previous_id),
                )
            )
        if email.next_id is not None:
            steps.append(
                button(ids.EMAIL_NEXT, "Next ▶", open_value(email.conversation_id, email.next_id))
            )
        if steps:
            blocks.append({"type": "actions", "block_id": "email_steps", "elements": steps})
    blocks.append({"type": "divider"})

    body = email.body if email.body.strip() else "(no text)"
    body_cut = len(body) > MAX_BODY_CHARS
    pieces = chunks(body[:MAX_BODY_CHARS])
    room = MAX_BLOCKS - RESERVED_BLOCKS - len(blocks)
    if len(pieces) > room:
        pieces = pieces[:room]
        body_cut = True
    used = 0
    for n, piece in enumerate(pieces):
        used += len(json.dumps(piece, ensure_ascii=False).encode("utf-8", "replace"))
        if used > MAX_BODY_BYTES:
            pieces, body_cut = pieces[:n], True
            break
    blocks.extend(section(p) for p in pieces)
    if body_cut:
        blocks.append(
            context(
                ":scissors: This email is too long to show in full here; it is kept whole in the mailbox."
            )
        )
    if email.truncated:
        blocks.append(
            context(":warning: The email was over the size limit; only its start was stored.")
        )

    if email.attachments:
        blocks.append({"type": "divider"})
        blocks.append(section(_attachment_lines(email.attachments)))
    if email.defects:
        blocks.append(context(f":grey_question: Read with {len(email.defects)} parse problem(s)."))

    return {
        "type": "modal",
        "callback_id": ids.VIEW_OPEN_EMAIL,
        "title": plain("Email", 24),
        "close": plain("Close", 24),
        "private_metadata": json.dumps(
            {"conversation_id": email.conversation_id, "message_id": email.message_id}
        ),
        "blocks": blocks[:MAX_BLOCKS],
    }


def notice_modal(title: str, text: str) -> dict[str, Any]:
    """A plain message in a modal (refusals, "this email is gone")."""
    return {
        "type": "modal",
        "title": plain(title, 24),
        "close": plain("Close", 24),
        "blocks": [section(fit(text, 3000))],
    }
