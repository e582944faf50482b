"""Store one raw email: dedupe, thread incrementally, keep counters, auto-link a client.

Threading mirrors the pure threader (bot/mail/thread.py) one message at a time:
membership is the connected component over Message-ID / In-Reply-To / References (ghost ids
included), the provider's thread id is a union hint within the account, and a reply-prefixed
message without any threading header may join by subject within SUBJECT_WINDOW. When a new
message connects several stored conversations they are merged into the oldest one.

Dedupe is enforced by the unique constraints (account, provider_id) and (account, message_id):
the insert runs in a SAVEPOINT and a concurrent duplicate (IntegrityError) is resolved to the
row that won, so two workers ingesting the same message never create two rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Text, case, cast, func, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.mail.parse import parse_message
from bot.mail.subject import has_reply_prefix, normalize_subject
from bot.mail.thread import ThreadInput, link_ids, normalize_id
from bot.mail.types import Address, ParsedMessage
from bot.store import audit
from bot.store.clients import auto_link
from bot.store.models import (
    Account,
    Attachment,
    Conversation,
    ConversationLink,
    Direction,
    FolderState,
    Message,
    MessageLocation,
    MessageRaw,
    utcnow,
)

SUBJECT_WINDOW = timedelta(days=7)
# IN (...) lists and OR chains stay bounded; References beyond this are old ancestors that the
# newest ones already connect to.
MAX_LINK_IDS = 60


@dataclass
class IngestResult:
    message: Message
    conversation: Conversation
    created: bool  # False: already known, nothing changed (except maybe a new location)
    new_conversation: bool
    merged_conversation_ids: list[int] = field(default_factory=list)  # merged INTO this one
    linked_client_id: int | None = None  # auto-link made now


def _clean(value: str | None, limit: int | None = None) -> str:
    # PostgreSQL text cannot hold NUL, and psycopg cannot encode lone surrogates.
    if not value:
        return ""
    s = value.replace("\x00", "")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "replace").decode("utf-8")
    return s[:limit] if limit is not None else s


def _addr(a: Address) -> dict[str, str]:
    return {"name": _clean(a.name, 300), "email": _clean(a.email, 320)}


def _effective_date(p: ParsedMessage, received_at: datetime) -> datetime:
    return p.date if p.date is not None else received_at


def _find_existing(
    session: Session, account_id: int, provider_id: str | None, message_id: str
) -> Message | None:
    if provider_id:
        found = session.scalar(
            select(Message).where(
                Message.account_id == account_id, Message.provider_id == provider_id
            )
        )
        if found is not None:
            return found
    return session.scalar(
        select(Message).where(Message.account_id == account_id, Message.message_id == message_id)
    )


def _add_location(
    session: Session,
    message: Message,
    location: tuple[FolderState, int, int] | None,
    flags: Sequence[str],
) -> None:
    if location is None:
        return
    folder, uidvalidity, uid = location
    taken = session.scalar(
        select(MessageLocation.message_id).where(
            MessageLocation.folder_id == folder.id,
            MessageLocation.uidvalidity == uidvalidity,
            MessageLocation.uid == uid,
        )
    )
    if taken is not None:
        return
    try:
        with session.begin_nested():
            session.add(
                MessageLocation(
                    message_id=message.id,
                    folder_id=folder.id,
                    uidvalidity=uidvalidity,
                    uid=uid,
                    flags=[_clean(f, 100) for f in flags],
                )
            )
    except IntegrityError:
        pass  # another worker recorded the same (folder, uidvalidity, uid) first


def _known(
    session: Session,
    message: Message,
    location: tuple[FolderState, int, int] | None,
    flags: Sequence[str],
) -> IngestResult:
    _add_location(session, message, location, flags)
    conversation = session.get(Conversation, message.conversation_id)
    assert conversation is not None
    return IngestResult(
        message=message, conversation=conversation, created=False, new_conversation=False
    )


def _json_has_any(session: Session, column: object, ids: Sequence[str]) -> object:
    """SQL condition: the JSON list `column` contains any of `ids` (a superset is rechecked
    in Python; the index-free scan is the price of not having a message_refs table)."""
    if session.get_bind().dialect.name == "postgresql":
        return column.op("?|")(cast(postgresql.array(list(ids)), postgresql.ARRAY(Text)))  # type: ignore[attr-defined]
    # SQLite stores the list as JSON text (json.dumps, ASCII-escaped): look for the quoted id.
    return or_(*(func.instr(column, json.dumps(i)) > 0 for i in ids))


def _related_conversation_ids(
    session: Session, account_id: int, own: str, links: Sequence[str]
) -> set[int]:
    """Conversations connected to this message by headers: its parents/ancestors (their
    Message-ID is in our links) and messages that name our id or one of our links (children
    that arrived first, and siblings sharing a ghost ancestor)."""
    found: set[int] = set()
    if links:
        found.update(
            session.scalars(
                select(Message.conversation_id).where(
                    Message.account_id == account_id, Message.message_id.in_(list(links))
                )
            )
        )
    ids = [own, *links]
    rows = session.execute(
        select(Message.conversation_id, Message.in_reply_to, Message.references).where(
            Message.account_id == account_id,
            or_(
                _json_has_any(session, Message.references, ids),  # type: ignore[arg-type]
                _json_has_any(session, Message.in_reply_to, ids),  # type: ignore[arg-type]
            ),
        )
    ).all()
    wanted = set(ids)
    for conversation_id, irt, refs in rows:
        if wanted.intersection(irt or ()) or wanted.intersection(refs or ()):
            found.add(conversation_id)
    return found


def _resolve(session: Session, conversation: Conversation) -> Conversation:
    seen = {conversation.id}
    while conversation.merged_into_id is not None:
        nxt = session.get(Conversation, conversation.merged_into_id)
        if nxt is None or nxt.id in seen:
            break
        seen.add(nxt.id)
        conversation = nxt
    return conversation


def _provider_thread_conversations(
    session: Session, account_id: int, provider_thread_id: str | None
) -> set[int]:
    if not provider_thread_id:
        return set()
    convs = session.scalars(
        select(Conversation).where(
            Conversation.account_id == account_id,
            Conversation.provider_thread_id == provider_thread_id,
        )
    ).all()
    return {_resolve(session, c).id for c in convs}


def _subject_conversation(
    session: Session, account_id: int, p: ParsedMessage, when: datetime
) -> Conversation | None:
    """Subject fallback: only for a reply-prefixed message with no threading header, joining a
    conversation with the same base subject active within the window before this message."""
    if p.in_reply_to or p.references or p.date is None:
        return None
    if not has_reply_prefix(p.subject or ""):
        return None
    key = normalize_subject(p.subject or "")[:300]
    if not key:
        return None
    return session.scalar(
        select(Conversation)
        .where(
            Conversation.account_id == account_id,
            Conversation.subject_key == key,
            Conversation.merged_into_id.is_(None),
            Conversation.first_message_at <= when,
            Conversation.last_message_at >= when - SUBJECT_WINDOW,
        )
        .order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
        .limit(1)
    )


def _oldest(conversations: Iterable[Conversation]) -> Conversation:
    far = datetime.max.replace(tzinfo=utcnow().tzinfo)
    return min(conversations, key=lambda c: (c.first_message_at or far, c.id))


def _refresh_root_subject(session: Session, conversation: Conversation) -> None:
    root = session.scalar(
        select(Message.subject)
        .where(Message.conversation_id == conversation.id)
        .order_by(Message.date.is_(None), Message.date, Message.id)
        .limit(1)
    )
    if root is not None:
        conversation.subject = root
        conversation.subject_key = normalize_subject(root)[:300]


def recount(session: Session, conversation: Conversation) -> None:
    """Recompute a conversation's counters from its messages (after merges or flag changes)."""
    count, unread, first, last = session.execute(
        select(
            func.count(Message.id),
            func.coalesce(func.sum(case((Message.is_read.is_(False), 1), else_=0)), 0),
            func.min(func.coalesce(Message.date, Message.received_at)),
            func.max(func.coalesce(Message.date, Message.received_at)),
        ).where(Message.conversation_id == conversation.id)
    ).one()
    conversation.message_count = int(count or 0)
    conversation.unread_count = int(unread or 0)
    if first is not None:
        # SQLite returns aggregates as text/naive values: reload through the typed columns.
        conversation.first_message_at = _as_dt(first)
        conversation.last_message_at = _as_dt(last)


def _as_dt(value: object) -> datetime:
    from datetime import UTC

    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def merge_conversations(
    session: Session, target: Conversation, others: Sequence[Conversation], *, actor: str = "system"
) -> list[int]:
    """Move every message of `others` into `target`; the others keep their rows (and Slack
    threads) with merged_into_id set and zero counters. Returns the merged ids."""
    other_ids = [c.id for c in others if c.id != target.id]
    if not other_ids:
        return []
    session.execute(
        update(Message)
        .where(Message.conversation_id.in_(other_ids))
        .values(conversation_id=target.id)
        .execution_options(synchronize_session="fetch")
    )
    session.execute(
        update(Conversation)
        .where(Conversation.merged_into_id.in_(other_ids))
        .values(merged_into_id=target.id)
        .execution_options(synchronize_session="fetch")
    )
    moved_link: int | None = None
    for other in others:
        if other.id == target.id:
            continue
        if target.link is None and other.link is not None:
            old = other.link
            moved_link = old.client_id
            other.link = None
            session.flush()
            target.link = ConversationLink(
                client_id=old.client_id,
                method=old.method,
                linked_by=old.linked_by,
                linked_at=old.linked_at,
            )
        if not target.provider_thread_id and other.provider_thread_id:
            target.provider_thread_id = other.provider_thread_id
        other.merged_into_id = target.id
        other.message_count = 0
        other.unread_count = 0
    session.flush()
    recount(session, target)
    _refresh_root_subject(session, target)
    audit.record(
        session,
        actor,
        "merge",
        account_id=target.account_id,
        conversation_id=target.id,
        details={"into": target.id, "merged_ids": other_ids, "moved_link_client_id": moved_link},
    )
    return other_ids


def _direction(account: Account, p: ParsedMessage) -> Direction:
    if p.from_ is not None and p.from_.email.lower() == account.email.lower():
        return Direction.OUTBOUND
    return Direction.INBOUND


def _link_address(p: ParsedMessage, direction: Direction) -> str | None:
    if direction == Direction.INBOUND:
        return p.from_.email if p.from_ is not None else None
    for a in (*p.to, *p.cc):
        if a.email:
            return a.email
    return None


def ingest_message(
    session: Session,
    account: Account,
    raw: bytes,
    *,
    parsed: ParsedMessage | None = None,
    provider_id: str | None = None,
    provider_thread_id: str | None = None,
    is_read: bool = False,
    direction: Direction | None = None,
    location: tuple[FolderState, int, int] | None = None,
    flags: Sequence[str] = (),
    truncated: bool = False,
    received_at: datetime | None = None,
    sent_by: str | None = None,
) -> IngestResult:
    """Store `raw` for `account` (see module doc). Never commits; idempotent."""
    p = parsed if parsed is not None else parse_message(raw)
    message_id = _clean(normalize_id(p.message_id), 998)
    provider_id = _clean(provider_id, 200) or None
    existing = _find_existing(session, account.id, provider_id, message_id)
    if existing is not None:
        return _known(session, existing, location, flags)
    try:
        with session.begin_nested():
            return _insert(
                session,
                account,
                raw,
                p,
                message_id=message_id,
                provider_id=provider_id,
                provider_thread_id=_clean(provider_thread_id, 200) or None,
                is_read=is_read,
                direction=direction,
                location=location,
                flags=flags,
                truncated=truncated,
                received_at=received_at or utcnow(),
                sent_by=sent_by,
            )
    except IntegrityError:
        # Lost a race with another writer (or a duplicate inside this batch): use the winner.
        existing = _find_existing(session, account.id, provider_id, message_id)
        if existing is None:
            raise
        return _known(session, existing, location, flags)


def _insert(
    session: Session,
    account: Account,
    raw: bytes,
    p: ParsedMessage,
    *,
    message_id: str,
    provider_id: str | None,
    provider_thread_id: str | None,
    is_read: bool,
    direction: Direction | None,
    location: tuple[FolderState, int, int] | None,
    flags: Sequence[str],
    truncated: bool,
    received_at: datetime,
    sent_by: str | None,
) -> IngestResult:
    when = _effective_date(p, received_at)
    tin = ThreadInput(
        key="",
        message_id=message_id,
        in_reply_to=tuple(p.in_reply_to),
        references=tuple(p.references),
        subject=p.subject,
        date=p.date,
        in_reply_to_clean=p.in_reply_to_clean,
    )
    all_ids = [_clean(i, 998) for i in link_ids(tin)]
    links = [i for i in all_ids if i != message_id]
    if len(links) > MAX_LINK_IDS:
        links = links[: MAX_LINK_IDS // 2] + links[-MAX_LINK_IDS // 2 :]

    related = _related_conversation_ids(session, account.id, message_id, links)
    related |= _provider_thread_conversations(session, account.id, provider_thread_id)
    conversations = [
        _resolve(session, c)
        for c in session.scalars(select(Conversation).where(Conversation.id.in_(related)))
    ]
    conversations = list({c.id: c for c in conversations}.values())
    if not conversations:
        by_subject = _subject_conversation(session, account.id, p, when)
        if by_subject is not None:
            conversations = [by_subject]

    new_conversation = not conversations
    merged: list[int] = []
    if new_conversation:
        conversation = Conversation(
            account_id=account.id,
            subject=_clean(p.subject),
            subject_key=normalize_subject(_clean(p.subject))[:300],
            provider_thread_id=provider_thread_id,
            first_message_at=when,
            last_message_at=when,
        )
        session.add(conversation)
        session.flush()
    else:
        conversation = _oldest(conversations)
        merged = merge_conversations(session, conversation, conversations)

    direction = direction or _direction(account, p)
    read = is_read or direction == Direction.OUTBOUND
    defects = [_clean(d, 500) for d in p.defects]
    if truncated:
        defects.append("truncated: over the size limit, body incomplete")
    if p.date is None:
        # Sorting and the date index need a date: use the arrival time, and say so.
        defects.append("no usable Date header: the received time is used as the date")
    message = Message(
        account_id=account.id,
        conversation_id=conversation.id,
        message_id=message_id,
        message_id_synthetic=p.message_id_synthetic,
        provider_id=provider_id,
        provider_thread_id=provider_thread_id,
        in_reply_to=[_clean(i, 998) for i in p.in_reply_to],
        references=[_clean(i, 998) for i in p.references],
        subject=_clean(p.subject),
        from_email=_clean(p.from_.email.lower(), 320) if p.from_ else "",
        from_name=_clean(p.from_.name, 300) if p.from_ else "",
        to=[_addr(a) for a in p.to],
        cc=[_addr(a) for a in p.cc],
        bcc=[_addr(a) for a in p.bcc],
        reply_to=[_addr(a) for a in p.reply_to],
        date=when,
        received_at=received_at,
        snippet=_clean(p.snippet),
        body_text=_clean(p.text),
        body_html=_clean(p.html) if p.html is not None else None,
        size=p.size or len(raw),
        has_attachments=any(not a.inline for a in p.attachments),
        is_read=read,
        is_flagged="\\Flagged" in flags,
        direction=direction,
        sent_by=sent_by,
        parse_defects=defects,
        truncated=truncated,
    )
    message.attachments = [
        Attachment(
            filename=_clean(a.filename, 500),
            content_type=_clean(a.content_type, 200) or "application/octet-stream",
            size=a.size,
            content_id=_clean(a.content_id, 500) or None,
            inline=a.inline,
            part_index=a.part_index,
        )
        for a in p.attachments
    ]
    session.add(message)
    session.flush()  # IntegrityError here means a duplicate: the caller's savepoint undoes all
    session.add(MessageRaw(message_id=message.id, raw=bytes(raw)))
    _add_location_new(session, message, location, flags)

    # Counters: a merge above recounted the stored messages; add this one.
    conversation.message_count += 1
    if not read:
        conversation.unread_count += 1
    if conversation.first_message_at is None or when < conversation.first_message_at:
        if not new_conversation:
            conversation.subject = message.subject  # the root message names the conversation
            conversation.subject_key = normalize_subject(message.subject)[:300]
        conversation.first_message_at = when
    if conversation.last_message_at is None or when > conversation.last_message_at:
        conversation.last_message_at = when
    if not conversation.provider_thread_id and provider_thread_id:
        conversation.provider_thread_id = provider_thread_id

    linked: int | None = None
    if new_conversation and account.auto_link:
        linked = auto_link(session, conversation, _link_address(p, direction), is_new=True)
    session.flush()
    return IngestResult(
        message=message,
        conversation=conversation,
        created=True,
        new_conversation=new_conversation,
        merged_conversation_ids=merged,
        linked_client_id=linked,
    )


def _add_location_new(
    session: Session,
    message: Message,
    location: tuple[FolderState, int, int] | None,
    flags: Sequence[str],
) -> None:
    # A brand-new message: if the (folder, uidvalidity, uid) slot is somehow taken by another
    # row, keep the message and leave the stale slot for the sync's rescan to fix.
    if location is None:
        return
    folder, uidvalidity, uid = location
    taken = session.scalar(
        select(MessageLocation.id).where(
            MessageLocation.folder_id == folder.id,
            MessageLocation.uidvalidity == uidvalidity,
            MessageLocation.uid == uid,
        )
    )
    if taken is None:
        session.add(
            MessageLocation(
                message_id=message.id,
                folder_id=folder.id,
                uidvalidity=uidvalidity,
                uid=uid,
                flags=[_clean(f, 100) for f in flags],
            )
        )
