"""Starting a draft from the store: who a reply goes to, what it quotes, what a forward carries.

Queries only (the caller owns the session). The original is re-read from its raw bytes when we
have them, so quoting and reply-all see exactly what the sender wrote.
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


def parsed_original(session: Session, message: Message) -> ParsedMessage:
    raw = session.get(MessageRaw, message.id)
    if raw is not None:
        return parse_message(raw.raw)

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


def own_addresses(session: Session) -> set[str]:
    """Every mailbox we manage: reply-all never copies our own accounts."""
    return {e.lower() for e in session.scalars(select(Account.email))}


def start_from_conversation(
    session: Session, mode: str, conversation_id: int, message_pk: int | None = None
) -> DraftStart:
    conv = live_conversation(session, conversation_id)
    if conv is None or conv.deleted:
        raise DraftError("This conversation no longer exists.")
    account = session.get(Account, conv.account_id)
    if account is None:
        raise DraftError("The mailbox of this conversation was removed.")
    source = _source_message(session, conv, message_pk)
    original = parsed_original(session, source)
    start = DraftStart(
        mode=mode,
        account=account,
        conversation=conv,
        source=source,
        newest_seen=newest_message_id(session, conv.id),
    )
    if mode == "forward":
        start.subject = forward_subject(original.subject or conv.subject)
        start.forward_attachments = [
            a.filename or "attachment"
            for a in session.scalars(
                select(Attachment).where(Attachment.message_id == source.id).order_by(Attachment.id)
            )
        ]
    else:
        own = own_addresses(session) | {account.email.lower()}
        start.to, start.cc = reply_recipients(original, own, reply_all=mode == "reply_all")
        start.subject = reply_subject(original.subject or conv.subject)
    return start


@dataclass
class BuiltBody:
    text: str
    in_reply_to: str | None
    references: list[str]
    html: str | None = None  # the HTML part, when the typed part came as HTML


def build_body(
    session: Session,
    mode: str,
    source_pk: int | None,
    typed: str,
    *,
    quote: bool,
    typed_html: str | None = None,
) -> BuiltBody:
    """What goes out: what was typed, plus the quote (reply) or original (forward).

    `typed_html` is the HTML fragment of what was typed (bot/mail/richtext.py); with it the
    result has an HTML part too, where a quoted original is a blockquote."""
    if mode == "new" or source_pk is None:
        html = html_document(typed_html) if typed_html is not None else None
        return BuiltBody(typed, None, [], html)
    source = session.get(Message, source_pk)
    if source is None:
        raise DraftError("The message you were answering is gone.")
    original = parsed_original(session, source)
    typed = typed.rstrip()
    if mode == "forward":
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
    if source.message_id_synthetic:
        # The original had no Message-ID: ours is meaningless to other servers.
        return BuiltBody(text, None, list(original.references), html)
    refs = reply_references(original.references, source.message_id)
    return BuiltBody(text, source.message_id, refs, html)


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
