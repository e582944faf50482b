"""Starting a draft from the store: who a reply goes to, what it quotes, what a forward carries.

Queries only (the caller owns the session). The original is re-read from its raw bytes when we
have them, so quoting and reply-all see exactly what the sender wrote; reading the bytes
(`load_*`) and parsing them (`finish_draft`, `build_body_from`) are separate steps, so the
parse, CPU work of unbounded length for a hostile email, runs after the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.blocks.compose import Arrived
from bot.mail.compose import (
    forward_body,
    forward_subject,
    quote_for_reply,
    reply_attribution,
    reply_recipients,
    reply_references,
    reply_subject,
)
from bot.mail.parse import parse_message
from bot.mail.richtext import html_document, text_block_html
from bot.mail.types import Address, ParsedMessage
from bot.store.models import (
    Account,
    Attachment,
    Conversation,
    ConversationLink,
    Direction,
    Message,
    MessageRaw,
)
from bot.templates import make_variables


class DraftError(Exception):
    """A person-facing reason the draft cannot be started (gone, merged, no message…)."""


@dataclass
class DraftStart:
    mode: str
    account: Account
    conversation: Conversation | None
    source: Message | None
    newest_seen: int | None
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    subject: str = ""
    forward_attachments: list[str] = field(default_factory=list)


def live_conversation(session: Session, conversation_id: int) -> Conversation | None:
    """The conversation, following merges to the one it now lives in."""
    conv = session.get(Conversation, conversation_id)
    seen: set[int] = set()
    while conv is not None and conv.merged_into_id is not None and conv.id not in seen:
        seen.add(conv.id)
        conv = session.get(Conversation, conv.merged_into_id)
    return conv


def newest_message_id(session: Session, conversation_id: int) -> int | None:
    value = session.scalar(
        select(func.max(Message.id)).where(Message.conversation_id == conversation_id)
    )
    return int(value) if value is not None else None


def arrived_since(
    session: Session, conversation_id: int, newest_seen: int | None, *, exclude_message_id: str
) -> list[Arrived]:
    """Messages that came into the conversation after `newest_seen` (our own send excluded)."""
    query = select(Message).where(
        Message.conversation_id == conversation_id, Message.message_id != exclude_message_id
    )
    if newest_seen is not None:
        query = query.where(Message.id > newest_seen)
    rows = session.scalars(query.order_by(Message.id)).all()
    return [
        Arrived(
            sender=(f"{m.from_name} <{m.from_email}>" if m.from_name else m.from_email) or "?",
            date=m.date.strftime("%Y-%m-%d %H:%M UTC") if m.date else "",
            subject=m.subject,
            snippet=m.snippet,
        )
        for m in rows
    ]


def _source_message(session: Session, conv: Conversation, message_pk: int | None) -> Message:
    if message_pk is not None:
        # The email a button named: it must be of this conversation (or one merged into it) and
        # account; a forged or stale id is refused, never swapped for another email.
        msg = session.get(Message, message_pk)
        home = live_conversation(session, msg.conversation_id) if msg is not None else None
        if msg is None or home is None or home.id != conv.id or msg.account_id != conv.account_id:
            raise DraftError("That email is not part of this conversation.")
        return msg
    # The newest email from outside is what one replies to; else the newest of any.
    for direction in (Direction.INBOUND, None):
        query = select(Message).where(Message.conversation_id == conv.id)
        if direction is not None:
            query = query.where(Message.direction == direction)
        msg = session.scalars(query.order_by(Message.date.desc(), Message.id.desc())).first()
        if msg is not None:
            return msg
    raise DraftError("This conversation has no messages to reply to.")


# What `load_original` read: the raw bytes (parsed later, outside the session) or, without
# them, the stored fields as a ParsedMessage.
Original = bytes | ParsedMessage


def load_original(session: Session, message: Message) -> Original:
    """The original's raw bytes (or its stored fields). Parsing is CPU work of unbounded
    length for a hostile email, so it happens in `parse_original`, after the session."""
    raw = session.get(MessageRaw, message.id)
    if raw is not None:
        return bytes(raw.raw)

    def addrs(items: Any) -> list[Address]:
        return [
            Address(str(i.get("name") or ""), str(i.get("email") or ""))
            for i in items or []
            if isinstance(i, dict)
        ]

    return ParsedMessage(
        message_id=message.message_id,
        message_id_synthetic=message.message_id_synthetic,
        in_reply_to=list(message.in_reply_to or []),
        references=list(message.references or []),
        subject=message.subject,
        from_=Address(message.from_name, message.from_email) if message.from_email else None,
        reply_to=addrs(message.reply_to),
        to=addrs(message.to),
        cc=addrs(message.cc),
        bcc=[],
        date=message.date,
        text=message.body_text,
        html=message.body_html,
        attachments=[],
        snippet=message.snippet,
        defects=[],
        size=message.size,
        list_id=None,
        auto_submitted=False,
    )


def parse_original(original: Original) -> ParsedMessage:
    return parse_message(original) if isinstance(original, bytes) else original


def own_addresses(session: Session) -> set[str]:
    """Every mailbox we manage: reply-all never copies our own accounts."""
    return {e.lower() for e in session.scalars(select(Account.email))}


@dataclass
class DraftInputs:
    """What a draft needs from the store; `finish_draft` does the parsing without a session."""

    start: DraftStart
    original: Original
    own: set[str]


def load_draft(
    session: Session, mode: str, conversation_id: int, message_pk: int | None = None
) -> DraftInputs:
    conv = live_conversation(session, conversation_id)
    if conv is None or conv.deleted:
        raise DraftError("This conversation no longer exists.")
    account = session.get(Account, conv.account_id)
    if account is None:
        raise DraftError("The mailbox of this conversation was removed.")
    source = _source_message(session, conv, message_pk)
    start = DraftStart(
        mode=mode,
        account=account,
        conversation=conv,
        source=source,
        newest_seen=newest_message_id(session, conv.id),
    )
    if mode == "forward":
        start.forward_attachments = [
            a.filename or "attachment"
            for a in session.scalars(
                select(Attachment).where(Attachment.message_id == source.id).order_by(Attachment.id)
            )
        ]
    own = own_addresses(session) | {account.email.lower()}
    return DraftInputs(start, load_original(session, source), own)


def finish_draft(inputs: DraftInputs) -> DraftStart:
    start = inputs.start
    original = parse_original(inputs.original)
    subject = original.subject or (start.conversation.subject if start.conversation else "")
    if start.mode == "forward":
        start.subject = forward_subject(subject)
    else:
        reply_all = start.mode == "reply_all"
        start.to, start.cc = reply_recipients(original, inputs.own, reply_all=reply_all)
        start.subject = reply_subject(subject)
    return start


def start_from_conversation(
    session: Session, mode: str, conversation_id: int, message_pk: int | None = None
) -> DraftStart:
    """Both steps in one go (the CLI and tests); Slack listeners call them around the
    session, so the parse runs with no transaction open."""
    return finish_draft(load_draft(session, mode, conversation_id, message_pk))


@dataclass
class BuiltBody:
    text: str
    in_reply_to: str | None
    references: list[str]
    html: str | None = None  # the HTML part, when the typed part came as HTML


@dataclass
class BodySource:
    """The answered message as `build_body_from` needs it, read inside a session."""

    mode: str
    original: Original | None = None
    message_id: str = ""
    message_id_synthetic: bool = False


def load_body_source(session: Session, mode: str, source_pk: int | None) -> BodySource:
    if mode == "new" or source_pk is None:
        return BodySource(mode)
    source = session.get(Message, source_pk)
    if source is None:
        raise DraftError("The message you were answering is gone.")
    return BodySource(
        mode, load_original(session, source), source.message_id, source.message_id_synthetic
    )


def build_body_from(
    src: BodySource, typed: str, *, quote: bool, typed_html: str | None = None
) -> BuiltBody:
    """What goes out: what was typed, plus the quote (reply) or original (forward).
    Pure: the original is parsed here, with no session open.

    `typed_html` is the HTML fragment of what was typed (bot/mail/richtext.py); with it the
    result has an HTML part too, where a quoted original is a blockquote."""
    if src.original is None:
        html = html_document(typed_html) if typed_html is not None else None
        return BuiltBody(typed, None, [], html)
    original = parse_original(src.original)
    typed = typed.rstrip()
    if src.mode == "forward":
        forwarded = forward_body(original)
        text = (typed + "\n\n" if typed else "") + forwarded
        html = None
        if typed_html is not None:
            html = html_document(typed_html + text_block_html(forwarded))
        return BuiltBody(text, None, [], html)
    text = typed + "\n"
    html_parts = [typed_html] if typed_html is not None else None
    if quote:
        text += "\n" + quote_for_reply(original.text, original.from_, original.date)
        if html_parts is not None:
            head = reply_attribution(original.from_, original.date)
            html_parts.append(text_block_html(original.text, head=head, quoted=True))
    html = html_document("".join(html_parts)) if html_parts is not None else None
    if src.message_id_synthetic:
        # The original had no Message-ID: ours is meaningless to other servers.
        return BuiltBody(text, None, list(original.references), html)
    refs = reply_references(original.references, src.message_id)
    return BuiltBody(text, src.message_id, refs, html)


def build_body(
    session: Session,
    mode: str,
    source_pk: int | None,
    typed: str,
    *,
    quote: bool,
    typed_html: str | None = None,
) -> BuiltBody:
    return build_body_from(
        load_body_source(session, mode, source_pk), typed, quote=quote, typed_html=typed_html
    )


def template_variables(
    session: Session,
    *,
    account_id: int | None,
    conversation_id: int | None,
    source_pk: int | None,
    agent_name: str,
    contact: Address | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    account = session.get(Account, account_id) if account_id is not None else None
    conv = session.get(Conversation, conversation_id) if conversation_id is not None else None
    client_name = client_company = ""
    if conv is not None:
        link = session.scalar(
            select(ConversationLink).where(ConversationLink.conversation_id == conv.id)
        )
        if link is not None:
            client_name, client_company = link.client.name, link.client.company
    if contact is None and source_pk is not None:
        msg = session.get(Message, source_pk)
        if msg is not None and msg.direction == Direction.INBOUND:
            contact = Address(msg.from_name, msg.from_email)
        elif msg is not None and msg.to:
            first = msg.to[0]
            contact = Address(str(first.get("name") or ""), str(first.get("email") or ""))
    return make_variables(
        client_name=client_name,
        client_company=client_company,
        contact_name=contact.name if contact else "",
        contact_email=contact.email if contact else "",
        agent_name=agent_name,
        account_email=account.email if account else "",
        account_name=account.display_name if account else "",
        thread_subject=conv.subject if conv else "",
        today=today,
    )
