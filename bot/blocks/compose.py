"""The compose modal (new mail, reply, reply all, forward) and the send-result posts.

Body: a multiline `plain_text_input` (max 3000 characters), not `rich_text_input`. Email goes out
as text/plain, so rich text would have to be flattened anyway, and a plain input round-trips a
template exactly. The 3000-character cap is for what the person writes: the quoted original (reply)
or the forwarded message (forward) is added when the mail is built, not put in the box, so a long
thread never overflows the input.

Inputs whose initial value a template replaces (subject, body) carry a rotation number in their
block_id: Slack keeps what was typed in a block_id it has seen, so a new id makes the new initial
value show (docs: block_id "should be unique for each … iteration of a view").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.blocks import ids
from bot.blocks.text import escape_mrkdwn, mrkdwn, plain, truncate

BODY_MAX = 3000
TO_BLOCK = "to"
CC_BLOCK = "cc"
BCC_BLOCK = "bcc"
FROM_BLOCK = "from"
TEMPLATE_BLOCK = "template"
QUOTE_BLOCK = "quote"
FILES_BLOCK = "files"
VALUE = "value"  # action_id of the plain inputs
QUOTE_OPTION = "include"

TITLES = {"new": "New email", "reply": "Reply", "reply_all": "Reply all", "forward": "Forward"}


def subject_block(rotation: int) -> str:
    return f"subject_{rotation}"


def body_block(rotation: int) -> str:
    return f"body_{rotation}"


@dataclass
class ComposeForm:
    """What the modal shows; the handler fills it from the store."""

    mode: str  # new | reply | reply_all | forward
    metadata: dict[str, Any]  # ids only, JSON in private_metadata
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    rotation: int = 0
    context: str = ""  # mrkdwn line above the form, already escaped
    from_options: list[tuple[int, str]] = field(default_factory=list)  # (account id, label)
    from_selected: int | None = None
    templates: list[tuple[int, str]] = field(default_factory=list)  # (template id, name)
    forward_attachments: list[str] = field(default_factory=list)  # filenames
    template_error: str | None = None


def _option(value: str, text: str) -> dict[str, Any]:
    return {"text": plain(truncate(text, 75), 75), "value": value}


def _text_input(
    block_id: str,
    label: str,
    value: str,
    *,
    optional: bool = False,
    multiline: bool = False,
    placeholder: str | None = None,
    max_length: int = 3000,
    hint: str | None = None,
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": VALUE,
        "multiline": multiline,
        "max_length": max_length,
    }
    if value:
        element["initial_value"] = value[:max_length]
    if placeholder:
        element["placeholder"] = plain(placeholder, 150)
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": plain(label, 2000),
        "element": element,
    }
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def compose_view(form: ComposeForm) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    if form.context:
        blocks.append({"type": "context", "elements": [mrkdwn(form.context)]})
    if form.mode == "new":
        options = [_option(str(aid), label) for aid, label in form.from_options[:100]]
        element: dict[str, Any] = {
            "type": "static_select",
            "action_id": ids.COMPOSE_FROM,
            "options": options,
        }
        selected = next((o for o in options if o["value"] == str(form.from_selected)), None)
        if selected is not None:
            element["initial_option"] = selected
        blocks.append(
            {
                "type": "input",
                "block_id": FROM_BLOCK,
                "label": plain("From"),
                "element": element,
            }
        )
    if form.templates:
        blocks.append(
            {
                "type": "input",
                "block_id": TEMPLATE_BLOCK,
                "optional": True,
                "dispatch_action": True,
                "label": plain("Template"),
                "hint": plain("Fills the subject and the body; you can still edit both."),
                "element": {
                    "type": "static_select",
                    "action_id": ids.COMPOSE_TEMPLATE_PICK,
                    "placeholder": plain("Start from a template"),
                    "options": [_option(str(tid), name) for tid, name in form.templates[:100]],
                },
            }
        )
    if form.template_error:
        blocks.append(
            {"type": "section", "text": mrkdwn(":warning: " + escape_mrkdwn(form.template_error))}
        )
    address_hint = (
        "Addresses separated by commas, e.g. Jane Doe <jane@example.com>, bob@example.com"
    )
    hint = address_hint if form.mode in ("new", "forward") else None
    blocks.append(_text_input(TO_BLOCK, "To", form.to, hint=hint))
    blocks.append(_text_input(CC_BLOCK, "Cc", form.cc, optional=True))
    blocks.append(_text_input(BCC_BLOCK, "Bcc", form.bcc, optional=True))
    blocks.append(
        _text_input(subject_block(form.rotation), "Subject", form.subject, max_length=998)
    )
    body_label = "Note" if form.mode == "forward" else "Message"
    blocks.append(
        _text_input(
            body_block(form.rotation),
            body_label,
            form.body,
            multiline=True,
            max_length=BODY_MAX,
            optional=form.mode == "forward",
        )
    )
    if form.mode in ("reply", "reply_all"):
        include = _option(QUOTE_OPTION, "Quote the original message below my reply")
        blocks.append(
            {
                "type": "input",
                "block_id": QUOTE_BLOCK,
                "optional": True,
                "label": plain("Original"),
                "element": {
                    "type": "checkboxes",
                    "action_id": VALUE,
                    "options": [include],
                    "initial_options": [include],
                },
            }
        )
    if form.mode == "forward":
        names = ", ".join(form.forward_attachments) or "none"
        blocks.append(
            {
                "type": "context",
                "elements": [
                    mrkdwn(
                        "The original message is forwarded below your note, with its "
                        f"attachments: {escape_mrkdwn(truncate(names, 2500))}"
                    )
                ],
            }
        )
    blocks.append(
        {
            "type": "input",
            "block_id": FILES_BLOCK,
            "optional": True,
            "label": plain("Attachments"),
            "element": {"type": "file_input", "action_id": VALUE, "max_files": 10},
        }
    )
    return {
        "type": "modal",
        "callback_id": ids.VIEW_COMPOSE,
        "title": plain(TITLES.get(form.mode, "Email"), 24),
        "submit": plain("Send", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps(form.metadata, separators=(",", ":")),
        "blocks": blocks,
    }


@dataclass(frozen=True)
class Arrived:
    """A message that came into the conversation after the reply was started."""

    sender: str
    date: str
    subject: str
    snippet: str


def _arrived_blocks(arrived: list[Arrived]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for item in arrived[:5]:
        text = (
            f"*{escape_mrkdwn(item.sender)}* · {escape_mrkdwn(item.date)}\n"
            f"{escape_mrkdwn(item.subject)}\n>{escape_mrkdwn(truncate(item.snippet, 300))}"
        )
        blocks.append({"type": "section", "text": mrkdwn(text)})
    if len(arrived) > 5:
        blocks.append({"type": "context", "elements": [mrkdwn(f"…and {len(arrived) - 5} more")]})
    return blocks


def held_view(arrived: list[Arrived], outbox_id: int | str) -> dict[str, Any]:
    """Shown instead of closing the modal when new mail arrived after it was opened.
    `outbox_id`: the row's id, or its Message-ID when the row is written after the ack."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": mrkdwn(
                ":hand: *Not sent yet.* New mail arrived in this conversation after you "
                "started writing. Read it first; your email is kept."
            ),
        },
        *_arrived_blocks(arrived),
        {
            "type": "actions",
            "block_id": "held",
            "elements": [
                {
                    "type": "button",
                    "action_id": ids.SEND_ANYWAY,
                    "text": plain("Send anyway", 75),
                    "style": "primary",
                    "value": str(outbox_id),
                }
            ],
        },
    ]
    return {
        "type": "modal",
        "callback_id": ids.VIEW_COMPOSE + "_held",
        "title": plain("Email held", 24),
        "close": plain("Close", 24),
        "blocks": blocks,
    }


def notice_view(title: str, text: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": plain(truncate(title, 24), 24),
        "close": plain("Close", 24),
        "blocks": [{"type": "section", "text": mrkdwn(text)}],
    }


# -- posts in the conversation's Slack thread -------------------------------------------------


def _recipients(emails: list[str]) -> str:
    return escape_mrkdwn(truncate(", ".join(emails), 1000))


def sent_post(user_id: str, to: list[str], subject: str) -> tuple[str, list[dict[str, Any]]]:
    text = f"Sent by <@{user_id}> to {_recipients(to)}"
    blocks = [
        {
            "type": "context",
            "elements": [mrkdwn(f":outbox_tray: {text} · {escape_mrkdwn(truncate(subject, 500))}")],
        }
    ]
    return text, blocks


def failed_post(user_id: str, error: str, outbox_id: int) -> tuple[str, list[dict[str, Any]]]:
    # The error is the mail server's or provider's words: escaped in the notification text too.
    text = f"Not sent: the email <@{user_id}> wrote was refused. {escape_mrkdwn(truncate(error, 2500))}"
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": mrkdwn(
                f":x: *Not sent.* The email <@{user_id}> wrote could not be sent:\n"
                f"```{escape_mrkdwn(truncate(error, 2500))}```"
            ),
        },
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": ids.SEND_RETRY,
                    "text": plain("Retry", 75),
                    "value": str(outbox_id),
                }
            ],
        },
    ]
    return text, blocks


def held_post(
    user_id: str, arrived: list[Arrived], outbox_id: int
) -> tuple[str, list[dict[str, Any]]]:
    text = f"The email <@{user_id}> wrote is held: new mail arrived in this conversation first."
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": mrkdwn(":hand: " + text)},
        *_arrived_blocks(arrived),
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": ids.SEND_ANYWAY,
                    "text": plain("Send anyway", 75),
                    "style": "primary",
                    "value": str(outbox_id),
                }
            ],
        },
    ]
    return text, blocks
