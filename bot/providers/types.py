"""Plain data that providers return. No protocol objects leak past ``bot/providers/``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Security = Literal["ssl", "starttls", "plain"]

#: Folder roles a provider can report; ``None`` means an ordinary folder.
ROLES: tuple[str, ...] = ("inbox", "sent", "archive", "trash", "drafts", "junk", "all")


@dataclass(frozen=True)
class ImapSettings:
    """Where and how to reach an IMAP server. The password is passed separately.

    ``ca_file`` names extra trusted CA certificates (PEM) for servers with a private
    CA; the system trust store is always used as well.
    """

    host: str
    port: int
    security: Security
    username: str
    timeout: float = 30.0
    ca_file: str | None = None


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to reach an SMTP submission server. No AUTH when ``username`` is empty."""

    host: str
    port: int
    security: Security
    username: str
    timeout: float = 30.0
    ca_file: str | None = None


@dataclass(frozen=True)
class FolderInfo:
    name: str
    role: str | None
    delimiter: str
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    exists: int
    highestmodseq: int | None


@dataclass(frozen=True)
class FetchedMessage:
    """One message as fetched.

    ``truncated`` is True when the message was larger than the fetch limit: ``raw``
    then holds only the header block and ``size`` is the full size on the server.
    """

    uid: int
    flags: frozenset[str]
    internaldate: datetime | None
    size: int
    raw: bytes
    truncated: bool


@dataclass(frozen=True)
class FlagChange:
    uid: int
    flags: frozenset[str]


@dataclass(frozen=True)
class ConnectionReport:
    """Result of a settings check. ``message`` is for a person: what is wrong, what to do.

    ``step`` names the step that failed (or the last one on success): ``"dns"``,
    ``"connect"``, ``"tls"``, ``"login"``, ``"folders"``, ``"send"``.
    """

    ok: bool
    step: str
    message: str
    folders: tuple[FolderInfo, ...] = ()
