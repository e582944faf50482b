"""Build outgoing mail with the stdlib EmailMessage API (never string-assembled headers)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime

from bot.mail.html_safe import sanitize_html
from bot.mail.subject import forward_subject, reply_subject
from bot.mail.types import Address, ParsedMessage

__all__ = [
    "Draft",
    "HeaderError",
    "OutgoingAttachment",
    "build_mime",
    "envelope_recipients",
    "forward_body",
    "forward_subject",
    "make_message_id",
    "parse_address_list",
    "quote_for_reply",
    "reply_attribution",
    "reply_recipients",
    "reply_references",
    "reply_subject",
]

REFERENCES_MAX_CHARS = 900
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# ASCII local parts only: a UTF-8 local part needs SMTPUTF8, which many servers lack.
_LOCAL_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+$")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_NAMED_RE = re.compile(r'^\s*(?:"((?:[^"\\]|\\.)*)"|([^<>"]*?))\s*<([^<>]*)>\s*$')
_SPLIT_RE = re.compile(r'[,;\n]|"(?:[^"\\]|\\.)*"|<[^<>]*>|[^,;\n"<]+|[<"]')


class HeaderError(ValueError):
    """A header field value that must not be sent (CR/LF, bad address...)."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field_name = field_name
        self.reason = reason


@dataclass
class OutgoingAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Draft:
    from_: Address
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    subject: str
    body: str
    message_id: str  # without angle brackets, from make_message_id()
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    attachments: list[OutgoingAttachment] = field(default_factory=list)
    date: datetime | None = None
    html_body: str | None = None


# --- addresses -----------------------------------------------------------------------------------


def _domain_error(domain: str) -> str | None:
    if not domain:
        return "missing domain"
    if domain.startswith("[") and domain.endswith("]"):
        return None  # address literal
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return f"bad domain {domain!r}"
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.match(label) for label in labels):
        return f"bad domain {domain!r}"
    return None


def address_error(email: str) -> str | None:
    """Why an addr-spec cannot be used, or None if it is fine."""
    if _CONTROL_RE.search(email):
        return "contains a line break or control character"
    if email.count("@") != 1:
        return "missing @" if "@" not in email else "more than one @"
    local, domain = email.split("@")
    if not local or not _LOCAL_RE.match(local) or ".." in local:
        return f"bad local part {local!r}"
    return _domain_error(domain)


def _split_list(text: str) -> list[str]:
    """Split on , ; and newlines, but not inside quotes or angle brackets."""
    pieces: list[str] = []
    current: list[str] = []
    for token in _SPLIT_RE.findall(text):
        if token in (",", ";", "\n"):
            pieces.append("".join(current))
            current = []
        else:
            current.append(token)
    pieces.append("".join(current))
    return [p.strip(" \t\r") for p in pieces if p.strip(" \t\r")]


def parse_address_list(text: str) -> tuple[list[Address], list[str]]:
    """(valid addresses, one error string per bad entry) for modal validation."""
    valid: list[Address] = []
    errors: list[str] = []
    seen: set[str] = set()
    for piece in _split_list(text or ""):
        m = _NAMED_RE.match(piece)
        if m:
            name = (m.group(1) if m.group(1) is not None else m.group(2) or "").strip()
            name = name.replace('\\"', '"').replace("\\\\", "\\")
            email = m.group(3).strip()
        else:
            name, email = "", piece
        problem = address_error(email)
        if problem is None and _CONTROL_RE.search(name):
            problem = "name contains a line break or control character"
        if problem:
            errors.append(f"{piece!r}: {problem}")
            continue
        if email.lower() not in seen:
            seen.add(email.lower())
            valid.append(Address(name=name, email=email))
    return valid, errors


# --- ids -------------------------------------------------------------------------------------


def make_message_id(domain: str) -> str:
    """A fresh Message-ID (no brackets): time-ordered, random, at the sender's domain."""
    problem = _domain_error(domain.strip()) if not _CONTROL_RE.search(domain) else "line break"
    if problem:
        raise HeaderError("Message-ID", problem)
    return f"{time.time_ns():x}.{secrets.token_hex(8)}@{domain.strip().lower()}"


def _strip_id(value: str) -> str:
    v = value.strip()
    return v[1:-1] if v.startswith("<") and v.endswith(">") else v


def _valid_reference(ident: str) -> bool:
    return not _CONTROL_RE.search(ident) and not any(c.isspace() or c in "<>" for c in ident)


def reply_references(
    parent_references: Sequence[str], parent_message_id: str, *, max_ids: int = 20
) -> list[str]:
    """References for a reply: the parent's chain plus the parent, capped.

    Keeps the first id (the conversation root) and the most recent ones, as RFC 5322 §3.6.4
    suggests, so long threads do not grow a header that servers reject.
    """
    ids: list[str] = []
    seen: set[str] = set()
    for raw in (*parent_references, parent_message_id):
        ident = _strip_id(raw)
        # An id no header may carry (a control character, a space, a bracket: a sender can put
        # them in References) is dropped here, or every reply to that mail could not be built.
        if not ident or ident in seen or not _valid_reference(ident):
            continue
        seen.add(ident)
        ids.append(ident)
    max_ids = max(max_ids, 2)
    if len(ids) > max_ids:
        ids = [ids[0], *ids[-(max_ids - 1) :]]
    while len(ids) > 2 and len(" ".join(f"<{i}>" for i in ids)) > REFERENCES_MAX_CHARS:
        del ids[1]
    return ids


# --- MIME --------------------------------------------------------------------------------------


def _check(field_name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderError(field_name, "contains CR/LF")
    if _CONTROL_RE.search(value):
        raise HeaderError(field_name, "contains a control character")
    return value


def _header_address(field_name: str, addr: Address) -> HeaderAddress:
    _check(field_name, addr.name)
    _check(field_name, addr.email)
    problem = address_error(addr.email)
    if problem:
        raise HeaderError(field_name, f"{addr.email!r}: {problem}")
    try:
        return HeaderAddress(display_name=addr.name, addr_spec=addr.email)
    except Exception as exc:  # headerregistry is stricter than our check in rare cases
        raise HeaderError(field_name, f"{addr.email!r}: {exc}") from exc


def _addresses(field_name: str, addrs: Iterable[Address]) -> list[HeaderAddress]:
    return [_header_address(field_name, a) for a in addrs]


def _bracket(field_name: str, ident: str) -> str:
    ident = _strip_id(_check(field_name, ident))
    if not ident or any(c.isspace() or c in "<>" for c in ident):
        raise HeaderError(field_name, f"invalid message id {ident!r}")
    return f"<{ident}>"


def _cte(text: str) -> str:
    return (
        "7bit"
        if text.isascii() and all(len(ln) < 990 for ln in text.splitlines())
        else ("quoted-printable")
    )


def build_mime(draft: Draft, *, keep_bcc: bool = False) -> bytes:
    """RFC 5322 bytes for sending. Bcc goes only to the envelope, never into the headers,
    unless ``keep_bcc``: the Gmail and Microsoft Graph send APIs have no envelope and take the
    recipients from To, Cc and Bcc (they drop Bcc from the copies they deliver)."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = _header_address("From", draft.from_)
    if draft.to:
        msg["To"] = _addresses("To", draft.to)
    if draft.cc:
        msg["Cc"] = _addresses("Cc", draft.cc)
    bcc = _addresses("Bcc", draft.bcc)  # validated; written only for the API senders
    if keep_bcc and bcc:
        msg["Bcc"] = bcc
    msg["Subject"] = _check("Subject", draft.subject)
    msg["Date"] = format_datetime((draft.date or datetime.now(UTC)).astimezone(UTC))
    msg["Message-ID"] = _bracket("Message-ID", draft.message_id)
    if draft.in_reply_to:
        msg["In-Reply-To"] = _bracket("In-Reply-To", draft.in_reply_to)
    if draft.references:
        msg["References"] = " ".join(_bracket("References", r) for r in draft.references)
    msg["MIME-Version"] = "1.0"
    # Quoted-printable for non-ASCII text: 8bit needs 8BITMIME end to end, which is not a given.
    msg.set_content(draft.body, cte=_cte(draft.body))
    if draft.html_body is not None:
        # multipart/alternative: text first, HTML last (the one clients prefer). The HTML is
        # generated escaped; the allow-list pass is the second lock on what leaves.
        html_part = sanitize_html(draft.html_body)
        msg.add_alternative(html_part, subtype="html", cte=_cte(html_part))
    for att in draft.attachments:
        _check("attachment filename", att.filename)
        maintype, _, subtype = (att.content_type or "").lower().partition("/")
        if not maintype or not subtype or "/" in subtype:
            maintype, subtype = "application", "octet-stream"
        if (maintype, subtype) == ("message", "rfc822"):
            inner = BytesParser(policy=policy.default).parsebytes(att.data)
            msg.add_attachment(inner, filename=att.filename)
        else:
            msg.add_attachment(att.data, maintype=maintype, subtype=subtype, filename=att.filename)
    return msg.as_bytes(policy=policy.SMTP)


def envelope_recipients(draft: Draft) -> list[str]:
    """RCPT TO addresses: To, Cc and Bcc, de-duplicated case-insensitively, order kept."""
    seen: set[str] = set()
    out: list[str] = []
    for addr in (*draft.to, *draft.cc, *draft.bcc):
        if addr.email.lower() not in seen:
            seen.add(addr.email.lower())
            out.append(addr.email)
    return out


# --- reply and forward helpers ----------------------------------------------------------------


def _when(date: datetime) -> str:
    return date.strftime("%a, %-d %b %Y at %H:%M %Z").strip()


def reply_attribution(sender: Address | None, date: datetime | None) -> str:
    """'On <date>, <sender> wrote:' (the line above a quoted original)."""
    who = sender.formatted() if sender else "the sender"
    return f"On {_when(date)}, {who} wrote:" if date else f"{who} wrote:"


def quote_for_reply(original_text: str, sender: Address | None, date: datetime | None) -> str:
    """'On <date>, <sender> wrote:' followed by the original, every line quoted."""
    head = reply_attribution(sender, date)
    lines = original_text.replace("\r\n", "\n").rstrip("\n").split("\n")
    quoted = [
        (">" + line) if line.startswith(">") else ("> " + line if line else ">") for line in lines
    ]
    return head + "\n" + "\n".join(quoted) + "\n"


def forward_body(original: ParsedMessage) -> str:
    """The Gmail-style forwarded block: a header summary, then the original text."""
    lines = ["---------- Forwarded message ---------"]
    if original.from_:
        lines.append(f"From: {original.from_.formatted()}")
    if original.date:
        lines.append(f"Date: {_when(original.date)}")
    lines.append(f"Subject: {original.subject}")
    if original.to:
        lines.append("To: " + ", ".join(a.formatted() for a in original.to))
    if original.cc:
        lines.append("Cc: " + ", ".join(a.formatted() for a in original.cc))
    return "\n".join(lines) + "\n\n" + original.text.rstrip("\n") + "\n"


def reply_recipients(
    original: ParsedMessage, own_addresses: Collection[str], *, reply_all: bool
) -> tuple[list[Address], list[Address]]:
    """(to, cc) for a reply. Reply-To is honoured; replying to our own message goes to its
    recipients; reply-all adds the original To/Cc minus our own addresses and duplicates."""
    own = {a.lower() for a in own_addresses}
    seen: set[str] = set()

    def take(addrs: Iterable[Address]) -> list[Address]:
        out: list[Address] = []
        for a in addrs:
            key = a.email.lower()
            if key and key not in own and key not in seen:
                seen.add(key)
                out.append(a)
        return out

    from_us = original.from_ is not None and original.from_.email.lower() in own
    if from_us:
        primary: list[Address] = list(original.to)
    else:
        primary = list(original.reply_to) or ([original.from_] if original.from_ else [])
    to = take(primary)
    cc: list[Address] = []
    if reply_all:
        rest = [*original.cc] if from_us else [*original.to, *original.cc]
        cc = take(rest)
        if not to and cc:
            to, cc = cc[:1], cc[1:]
    return to, cc
