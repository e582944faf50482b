"""The compose modal (new mail, reply, reply all, forward) and the send-result posts.

Body: a `rich_text_input`, Slack's own editor (bold, italic, strike, code, links, lists, quotes,
emoji), sent as multipart/alternative: styled HTML plus a plain-text copy (bot/mail/richtext.py).
Slack documents no length limit for rich_text_input (the plain_text_input it replaces stopped at
3,000 characters); the quoted original (reply) or the forwarded message (forward) is added when
the mail is built, not put in the box, so a long thread never fills the input.

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
from bot.mail.richtext import clean_rich_text, is_blank, plain_to_rich_text

BODY_HINT = (
    "Formatting (bold, lists, links, quotes, code, emoji) is sent as formatted email with a "
    "plain-text copy. No 3,000-character limit here: Slack sets none for this box."
)
SIGNATURE_HINT = " The mailbox's signature is added below."
SENT_BODY_MAX = 2900  # of the mrkdwn shown in the "sent" post (a section holds 3,000)
TO_BLOCK = "to"
CC_BLOCK = "cc"
BCC_BLOCK = "bcc"
FROM_BLOCK = "from"
TEMPLATE_BLOCK = "template"
QUOTE_BLOCK = "quote"
FILES_BLOCK = "files"
ANSWERING_BLOCK = "answering"  # the email being answered, shown above the form
DRAFT_BLOCK = "draft"  # "a draft you closed is filled in" + Discard
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
    body: str = ""  # plain text; used when body_rich is None
    body_rich: dict[str, Any] | None = None  # a rich_text value for the body input
    rotation: int = 0
    context: str = ""  # mrkdwn line above the form, already escaped
    from_options: list[tuple[int, str]] = field(default_factory=list)  # (account id, label)
    from_selected: int | None = None
    templates: list[tuple[int, str]] = field(default_factory=list)  # (template id, name)
    forward_attachments: list[str] = field(default_factory=list)  # filenames
    template_error: str | None = None
    answering: str = ""  # mrkdwn (escaped): the email being answered, see answering_text
    draft_id: int | None = None  # a saved draft is filled in: offer to discard it
    draft_saved: str = ""  # when it was saved, for the notice
    signature: bool = False  # the mailbox adds a signature: say so


def answering_text(sender: str, date: str, body: str, *, lines: int = 6) -> str:
    """The email being answered: who, when, and its first lines, quoted (escaped mrkdwn)."""
    first = [ln.rstrip() for ln in body.strip().splitlines() if ln.strip()][:lines]
    head = f"*{escape_mrkdwn(truncate(sender, 300))}*" + (
        f" · {escape_mrkdwn(date)}" if date else ""
    )
    quoted = "\n".join(">" + escape_mrkdwn(truncate(ln, 300)) for ln in first)
    return truncate(head + ("\n" + quoted if quoted else ""), 2900)


def _answering_block(text: str) -> dict[str, Any]:
    return {"type": "section", "block_id": ANSWERING_BLOCK, "text": mrkdwn(text)}


def _draft_block(form: ComposeForm) -> dict[str, Any]:
    when = f" on {escape_mrkdwn(form.draft_saved)}" if form.draft_saved else ""
    return {
        "type": "section",
        "block_id": DRAFT_BLOCK,
        "text": mrkdwn(f":memo: Your unsent draft from{when} is filled in below."),
        "accessory": {
            "type": "button",
            "action_id": ids.COMPOSE_DISCARD_DRAFT,
            "text": plain("Discard draft", 75),
            "value": str(form.draft_id),
        },
    }


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


def _body_input(form: ComposeForm, label: str) -> dict[str, Any]:
    value = clean_rich_text(
        form.body_rich if form.body_rich is not None else plain_to_rich_text(form.body)
    )
    element: dict[str, Any] = {"type": "rich_text_input", "action_id": VALUE}
    if not is_blank(value):
        element["initial_value"] = value
    return {
        "type": "input",
        "block_id": body_block(form.rotation),
        "optional": form.mode == "forward",
        "label": plain(label, 2000),
        "hint": plain(BODY_HINT + (SIGNATURE_HINT if form.signature else ""), 2000),
        "element": element,
    }


def compose_view(form: ComposeForm) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    if form.context:
        blocks.append({"type": "context", "elements": [mrkdwn(form.context)]})
    if form.answering:
        blocks.append(_answering_block(form.answering))
    if form.draft_id is not None:
        blocks.append(_draft_block(form))
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
                "hint": plain(
                    "Added below what you typed (the subject too, if it has one); "
                    "you can still edit both."
                ),
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
    blocks.append(_body_input(form, body_label))
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
        # Closing with text in it keeps a draft (view_closed): only answers have a place
        # (the conversation) to offer it back from.
        "notify_on_close": form.mode != "new",
        "blocks": blocks,
    }


# -- typing in the thread: the author's ephemeral prompt --------------------------------------


def typed_prompt(
    draft_id: int, text: str, reply_to: str, reply_all_to: str | None
) -> tuple[str, list[dict[str, Any]]]:
    """Asked of a person who typed in a conversation's thread: nothing was emailed yet.

    `reply_to` / `reply_all_to`: plain recipient labels ("Ann <ann@x>"); reply all is offered
    only when it writes to more people than a reply. Buttons carry the draft id only."""
    value = str(draft_id)
    fallback = "This message was not emailed. Send it as a reply, or keep it as an internal note?"
    buttons: list[dict[str, Any]] = [
        {
            "type": "button",
            "action_id": ids.TYPED_SEND,
            "style": "primary",
            "text": plain(truncate(f"Send as reply to {reply_to}", 75), 75),
            "value": value,
        }
    ]
    if reply_all_to is not None:
        buttons.append(
            {
                "type": "button",
                "action_id": ids.TYPED_SEND_ALL,
                "text": plain("Reply all", 75),
                "value": value,
            }
        )
    buttons += [
        {
            "type": "button",
            "action_id": ids.TYPED_EDIT,
            "text": plain("Edit first", 75),
            "value": value,
        },
        {
            "type": "button",
            "action_id": ids.TYPED_NOTE,
            "text": plain("Keep as internal note", 75),
            "value": value,
        },
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": mrkdwn(
                ":envelope: *Not emailed yet.* What you wrote in this thread is only in Slack:\n>"
                + escape_mrkdwn(truncate(" ".join(text.split()), 500))
            ),
        },
        {"type": "actions", "block_id": "typed", "elements": buttons},
    ]
    if reply_all_to is not None:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    mrkdwn("Reply all writes to " + escape_mrkdwn(truncate(reply_all_to, 1500)))
                ],
            }
        )
    return fallback, blocks


def typed_done(text: str) -> tuple[str, list[dict[str, Any]]]:
    """What the prompt becomes once the author chose (plain words, no buttons)."""
    return text, [{"type": "section", "text": mrkdwn(escape_mrkdwn(text))}]


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


def _cut_mrkdwn(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a line end so no link or mark is left half open."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip() + "\n…"


def sent_post(
    sender_name: str, to: list[str], subject: str, body_mrkdwn: str = ""
) -> tuple[str, list[dict[str, Any]]]:
    """The thread post for a sent email; `body_mrkdwn` (from rich_text_to_mrkdwn, already
    escaped) shows what was written with the same formatting. By name, not <@mention>: the
    sender needs no notification for their own action."""
    text = (
        f"Sent by {escape_mrkdwn(truncate(sender_name or 'a teammate', 80))} to {_recipients(to)}"
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "context",
            "elements": [mrkdwn(f":outbox_tray: {text} · {escape_mrkdwn(truncate(subject, 500))}")],
        }
    ]
    if body_mrkdwn.strip():
        blocks.append({"type": "section", "text": mrkdwn(_cut_mrkdwn(body_mrkdwn, SENT_BODY_MAX))})
    return text, blocks


def _author(name: str) -> str:
    # By name, never a mention: the thread's followers are not pinged; the author gets a DM.
    return escape_mrkdwn(truncate(name or "a teammate", 80))


def failed_post(author_name: str, error: str, outbox_id: int) -> tuple[str, list[dict[str, Any]]]:
    # The error is the mail server's or provider's words: escaped in the notification text too.
    who = _author(author_name)
    text = f"Not sent: the email {who} wrote was refused. {escape_mrkdwn(truncate(error, 2500))}"
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": mrkdwn(
                f":x: *Not sent.* The email {who} wrote could not be sent:\n"
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


def author_dm(text: str, thread_url: str | None) -> dict[str, Any]:
    """What the author of a failed or held email is told directly (the thread post names
    them without a mention)."""
    link = f" <{thread_url}|Open the thread>" if thread_url else ""
    return {"text": text, "blocks": [{"type": "section", "text": mrkdwn(text + link)}]}


def held_post(
    author_name: str, arrived: list[Arrived], outbox_id: int
) -> tuple[str, list[dict[str, Any]]]:
    who = _author(author_name)
    text = f"The email {who} wrote is held: new mail arrived in this conversation first."
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
