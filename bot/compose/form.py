"""Reading and checking what a person typed in the compose modal (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.mail.compose import parse_address_list
from bot.mail.richtext import clean_rich_text, is_blank, plain_to_rich_text, rich_text_to_text
from bot.mail.types import Address

MODES = ("new", "reply", "reply_all", "forward")


@dataclass
class ComposeMeta:
    """The modal's private_metadata: ids only, the state itself lives in the store."""

    mode: str
    message_id: str  # the Message-ID chosen when the modal opened (idempotency key)
    account_id: int | None = None
    conversation_id: int | None = None
    source_message: int | None = None  # Message pk replied to / forwarded
    newest_seen: int | None = None  # newest Message pk of the conversation at open
    rotation: int = 0
    thread_draft: int | None = None  # "Edit first" on a message typed in the thread

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "mid": self.message_id, "r": self.rotation}
        for key, value in (
            ("a", self.account_id),
            ("c", self.conversation_id),
            ("m", self.source_message),
            ("n", self.newest_seen),
            ("d", self.thread_draft),
        ):
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def load(cls, text: str | None) -> ComposeMeta | None:
        try:
            data = json.loads(text or "")
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("mode") not in MODES or not data.get("mid"):
            return None

        def num(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        return cls(
            mode=data["mode"],
            message_id=str(data["mid"]),
            account_id=num("a"),
            conversation_id=num("c"),
            source_message=num("m"),
            newest_seen=num("n"),
            rotation=num("r") or 0,
            thread_draft=num("d"),
        )


@dataclass
class SlackFile:
    id: str
    name: str
    mimetype: str
    url: str
    size: int = 0  # bytes, as Slack reports it (0 when unknown)


@dataclass
class Submission:
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    subject: str
    body: str  # the plain-text form of body_rich (names unresolved: for checks, not sending)
    quote: bool
    from_account: int | None
    files: list[SlackFile] = field(default_factory=list)
    body_rich: dict[str, Any] = field(default_factory=lambda: plain_to_rich_text(""))
    names: dict[str, str] = field(default_factory=dict)  # mention id → name (the handler's)


def _value(values: dict[str, Any], block_id: str, action_id: str = cb.VALUE) -> Any:
    return (values.get(block_id) or {}).get(action_id) or {}


def _text(values: dict[str, Any], block_id: str) -> str:
    return str(_value(values, block_id).get("value") or "")


def body_value(values: dict[str, Any], block_id: str) -> dict[str, Any]:
    """The body as a cleaned rich_text value: `rich_text_value` from a rich_text_input, or the
    `value` of a plain input (an older modal still open when the app was updated)."""
    entry = _value(values, block_id)
    if isinstance(entry.get("rich_text_value"), dict):
        return clean_rich_text(entry["rich_text_value"])
    return plain_to_rich_text(str(entry.get("value") or ""))


def read_submission(values: dict[str, Any], meta: ComposeMeta) -> tuple[Submission, dict[str, str]]:
    """The typed values, and errors keyed by the block_id they belong next to."""
    errors: dict[str, str] = {}
    parsed: dict[str, list[Address]] = {}
    for block in (cb.TO_BLOCK, cb.CC_BLOCK, cb.BCC_BLOCK):
        addresses, problems = parse_address_list(_text(values, block))
        parsed[block] = addresses
        if problems:
            errors[block] = "Not an email address: " + "; ".join(problems)
    if cb.TO_BLOCK not in errors and not parsed[cb.TO_BLOCK]:
        errors[cb.TO_BLOCK] = "Add at least one recipient."
    subject_block = cb.subject_block(meta.rotation)
    subject = _text(values, subject_block)
    if "\r" in subject or "\n" in subject:
        errors[subject_block] = "The subject must be one line."
    body_rich = body_value(values, cb.body_block(meta.rotation))
    body = rich_text_to_text(body_rich)
    if meta.mode != "forward" and is_blank(body_rich):
        errors[cb.body_block(meta.rotation)] = "Write a message."
    quote_state = _value(values, cb.QUOTE_BLOCK)
    quote = any(
        (o or {}).get("value") == cb.QUOTE_OPTION for o in quote_state.get("selected_options") or []
    )
    from_account: int | None = None
    if meta.mode == "new":
        chosen = _value(values, cb.FROM_BLOCK, ids.COMPOSE_FROM).get("selected_option") or {}
        try:
            from_account = int(str(chosen.get("value")))
        except (TypeError, ValueError):
            errors[cb.FROM_BLOCK] = "Choose the mailbox to send from."
    files = [
        SlackFile(
            id=str(f.get("id") or ""),
            name=str(f.get("name") or f.get("title") or "attachment"),
            mimetype=str(f.get("mimetype") or "application/octet-stream"),
            url=str(f.get("url_private_download") or f.get("url_private") or ""),
            size=int(f.get("size") or 0) if str(f.get("size") or "0").isdigit() else 0,
        )
        for f in _value(values, cb.FILES_BLOCK).get("files") or []
        if isinstance(f, dict)
    ]
    return (
        Submission(
            to=parsed[cb.TO_BLOCK],
            cc=parsed[cb.CC_BLOCK],
            bcc=parsed[cb.BCC_BLOCK],
            subject=" ".join(subject.split()),
            body=body,
            quote=quote,
            from_account=from_account,
            files=files,
            body_rich=body_rich,
        ),
        errors,
    )


def format_addresses(addresses: list[Address]) -> str:
    """For the To/Cc inputs: 'Name <a@b>, c@d' (names with specials quoted)."""
    out = []
    for a in addresses:
        if a.name:
            name = a.name
            if any(c in name for c in ',;<>"@'):
                name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
            out.append(f"{name} <{a.email}>")
        else:
            out.append(a.email)
    return ", ".join(out)


def addresses_to_json(addresses: list[Address]) -> list[dict[str, str]]:
    return [{"name": a.name, "email": a.email} for a in addresses]


def addresses_from_json(items: Any) -> list[Address]:
    return [
        Address(name=str(i.get("name") or ""), email=str(i.get("email") or ""))
        for i in items or []
        if isinstance(i, dict) and i.get("email")
    ]
