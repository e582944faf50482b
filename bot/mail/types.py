"""Plain data types shared by the parse, thread and compose modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Address:
    name: str  # decoded display name, "" if none
    email: str  # addr-spec as given (spaces stripped); compare with .lower()

    def formatted(self) -> str:
        """Human form for quoting lines: 'Name <a@b>' or just 'a@b'."""
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True)
class AttachmentInfo:
    filename: str
    content_type: str
    size: int  # decoded payload size in bytes
    content_id: str | None
    inline: bool
    part_index: int  # index in Message.walk() order, for extract_attachment()


@dataclass
class ParsedMessage:
    message_id: str  # no angle brackets; case preserved; synthetic if missing/invalid
    message_id_synthetic: bool
    in_reply_to: list[str]
    references: list[str]
    subject: str
    from_: Address | None
    reply_to: list[Address]
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    date: datetime | None  # aware, UTC
    text: str
    html: str | None
    attachments: list[AttachmentInfo]
    snippet: str
    defects: list[str]
    size: int
    list_id: str | None
    auto_submitted: bool
    # False when In-Reply-To carried more than one bare <id> (e.g. "Your message of ... <id>"),
    # so threading prefers References for the display parent (notmuch's "dodgy In-Reply-To").
    in_reply_to_clean: bool = True


@dataclass
class FullMessage:
    """Everything the "Open" modal shows: all headers decoded, the untrimmed body."""

    headers: list[tuple[str, str]]
    text: str
    html: str | None
    attachments: list[AttachmentInfo] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
