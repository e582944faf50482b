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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from bot.mail.parse import parse_message
from bot.mail.subject import has_reply_prefix, normalize_subject
from bot.mail.types import ParsedMessage
from bot.store import audit
from bot.store.clients import auto_link, clients_for_addresses, normalize_email
from bot.store.ids import reserve_ids
from bot.store.lists import one_of
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
    MessageRef,
    utcnow,
)
from bot.store.rows import (
    ATTACHMENT_COLUMNS,
    PARSED_COLUMNS,
    STORE_COLUMNS,
    EncodedParse,
    MailFacts,
    RowCodec,
    clean,
    insert_rows,
)
from bot.store.search import index_messages

SUBJECT_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class MessageFacts:
    """What the sync and the Slack announce read of a stored message, as plain values: for a
    batch of new mail they come from the inserted rows, with no ORM objects to load."""

    message_id: str
    date: datetime | None
    received_at: datetime | None
    sent_by: str | None
    has_attachments: bool
    parse_defects: tuple[str, ...]

    @classmethod
    def of(cls, m: Message) -> MessageFacts:
        return cls(
            m.message_id,
            m.date,
            m.received_at,
            m.sent_by,
            m.has_attachments,
            tuple(m.parse_defects or ()),
        )


@dataclass
class IngestResult:
    conversation: Conversation
    created: bool  # False: already known, nothing changed (except maybe a new location)
    new_conversation: bool
    message_pk: int
    facts: MessageFacts
    merged_conversation_ids: list[int] = field(default_factory=list)  # merged INTO this one
    linked_client_id: int | None = None  # auto-link made now
    session: Session | None = field(default=None, repr=False)
    loaded: Message | None = field(default=None, repr=False)

    @property
    def message(self) -> Message:
        """The ORM row, loaded on first use (a history sync of new mail never needs it)."""
        if self.loaded is None:
            assert self.session is not None
            self.loaded = self.session.get_one(Message, self.message_pk)
        return self.loaded

    @classmethod
    def known(cls, message: Message, conversation: Conversation) -> IngestResult:
        return cls(
            conversation=conversation,
            created=False,
            new_conversation=False,
            message_pk=message.id,
            facts=MessageFacts.of(message),
            loaded=message,
        )


def _effective_date(f: MailFacts, received_at: datetime) -> datetime:
    return f.date if f.date is not None else received_at


def _resolve(session: Session, conversation: Conversation) -> Conversation:
    seen = {conversation.id}
    while conversation.merged_into_id is not None:
        nxt = session.get(Conversation, conversation.merged_into_id)
        if nxt is None or nxt.id in seen:
            break
        seen.add(nxt.id)
        conversation = nxt
    return conversation


def _subject_conversation(
    session: Session, account_id: int, f: MailFacts, when: datetime
) -> Conversation | None:
    """Subject fallback: only for a reply-prefixed message with no threading header, joining a
    conversation with the same base subject active within the window before this message."""
    if f.has_thread_headers or f.date is None:
        return None
    if not has_reply_prefix(f.subject or ""):
        return None
    key = normalize_subject(f.subject or "")[:300]
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


def _direction(account: Account, f: MailFacts) -> Direction:
    if f.from_email is not None and f.from_email.lower() == account.email.lower():
        return Direction.OUTBOUND
    return Direction.INBOUND


def _link_address(f: MailFacts, direction: Direction) -> str | None:
    if direction == Direction.INBOUND:
        return f.from_email
    return f.first_recipient


@dataclass
class IngestItem:
    """One raw message to store, with what the provider knows about it (see ingest_message)."""

    raw: bytes
    parsed: ParsedMessage | None = None
    # The parsed part of the rows, when the parse worker encoded it (bot/store/rows.py).
    encoded: EncodedParse | None = None
    provider_id: str | None = None
    provider_thread_id: str | None = None
    is_read: bool = False
    direction: Direction | None = None
    location: tuple[FolderState, int, int] | None = None
    flags: Sequence[str] = ()
    truncated: bool = False
    received_at: datetime | None = None
    sent_by: str | None = None


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
    item = IngestItem(
        raw,
        parsed=parsed,
        provider_id=provider_id,
        provider_thread_id=provider_thread_id,
        is_read=is_read,
        direction=direction,
        location=location,
        flags=flags,
        truncated=truncated,
        received_at=received_at,
        sent_by=sent_by,
    )
    return ingest_batch(session, account, [item])[0]


@dataclass
class _Prepared:
    index: int
    item: IngestItem
    enc: EncodedParse
    provider_id: str | None
    provider_thread_id: str | None
    when: datetime
    received_at: datetime

    @property
    def message_id(self) -> str:
        return self.enc.message_id

    @property
    def facts(self) -> MailFacts:
        return self.enc.facts

    @property
    def links(self) -> tuple[str, ...]:
        """Ids this message points at (In-Reply-To, References), capped for lookups."""
        return self.enc.links

    @property
    def refs(self) -> tuple[str, ...]:
        """The same, all of them, for message_refs."""
        return self.enc.refs


def _prepare(codec: RowCodec, index: int, item: IngestItem) -> _Prepared:
    enc = item.encoded
    if enc is None or enc.dialect != codec.key:
        p = item.parsed if item.parsed is not None else parse_message(item.raw)
        enc = codec.encode(p, len(item.raw))
    received_at = item.received_at or utcnow()
    return _Prepared(
        index=index,
        item=item,
        enc=enc,
        provider_id=clean(item.provider_id, 200) or None,
        provider_thread_id=clean(item.provider_thread_id, 200) or None,
        when=_effective_date(enc.facts, received_at),
        received_at=received_at,
    )


def _existing_messages(
    session: Session, account_id: int, batch: Sequence[_Prepared]
) -> tuple[dict[str, int], dict[str, int]]:
    """(Message-ID → message pk, provider id → message pk) of stored messages in the batch."""
    by_mid: dict[str, int] = {}
    by_pid: dict[str, int] = {}
    mids = sorted({b.message_id for b in batch})
    rows = session.execute(
        select(Message.message_id, Message.id).where(
            Message.account_id == account_id, one_of(session, Message.message_id, mids)
        )
    )
    by_mid.update({mid: pk for mid, pk in rows})
    pids = sorted({b.provider_id for b in batch if b.provider_id})
    if pids:
        rows = session.execute(
            select(Message.provider_id, Message.id).where(
                Message.account_id == account_id, one_of(session, Message.provider_id, pids)
            )
        )
        by_pid.update({pid: pk for pid, pk in rows if pid})
    return by_mid, by_pid


def _add_locations(
    session: Session, pairs: Sequence[tuple[int, tuple[FolderState, int, int], Sequence[str]]]
) -> None:
    """Record (folder, uidvalidity, uid) slots for messages; a taken slot is left alone (the
    sync's rescan fixes stale slots): the unique constraint on the slot decides, in the one
    INSERT, rather than a lookup before it."""
    if not pairs:
        return
    codec = RowCodec.for_session(session)
    bound: dict[tuple[str, ...], Any] = {}  # most messages share one of a few flag sets
    rows: list[tuple[Any, ...]] = []
    for pk, (folder, uidvalidity, uid), flags in pairs:
        key = tuple(flags)
        if key not in bound:
            bound[key] = codec.bind_to(MessageLocation, "flags", [clean(f, 100) for f in flags])
        rows.append((pk, folder.id, uidvalidity, uid, bound[key]))
    insert_rows(
        session,
        MessageLocation,
        ("message_id", "folder_id", "uidvalidity", "uid", "flags"),
        rows,
        skip_conflicts=True,
    )


def _related_conversations(
    session: Session, account_id: int, batch: Sequence[_Prepared]
) -> dict[str, set[int]]:
    """For every id the batch mentions (own ids and links): the stored conversations connected
    to it — the conversation of the message with that Message-ID, and those of messages that
    reference it (children that arrived first, siblings sharing a ghost ancestor)."""
    wanted = sorted({i for b in batch for i in (b.message_id, *b.links)})
    found: dict[str, set[int]] = {}
    for mid, conv in session.execute(
        select(Message.message_id, Message.conversation_id).where(
            Message.account_id == account_id, one_of(session, Message.message_id, wanted)
        )
    ):
        found.setdefault(mid, set()).add(conv)
    for ref, conv in session.execute(
        select(MessageRef.ref_id, Message.conversation_id)
        .join(Message, Message.id == MessageRef.message_id)
        .where(MessageRef.account_id == account_id, one_of(session, MessageRef.ref_id, wanted))
    ):
        found.setdefault(ref, set()).add(conv)
    return found


def _thread_hint_conversations(
    session: Session, account_id: int, batch: Sequence[_Prepared]
) -> dict[str, set[int]]:
    hints = sorted({b.provider_thread_id for b in batch if b.provider_thread_id})
    found: dict[str, set[int]] = {}
    if not hints:
        return found
    for hint, conv in session.execute(
        select(Conversation.provider_thread_id, Conversation.id).where(
            Conversation.account_id == account_id,
            one_of(session, Conversation.provider_thread_id, hints),
        )
    ):
        if hint:
            found.setdefault(hint, set()).add(conv)
    return found


class _Components:
    """Union-find over batch positions; each set becomes one conversation."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    @classmethod
    def linked(cls, batch: Sequence[_Prepared], *, thread_hints: bool) -> _Components:
        """Positions sharing any id (own or referenced), or the provider's thread id when
        `thread_hints`, end up in one set."""
        comps = cls(len(batch))
        owner: dict[str, int] = {}
        for pos, b in enumerate(batch):
            keys = [b.message_id, *b.links]
            if thread_hints and b.provider_thread_id:
                keys.append("thread:" + b.provider_thread_id)
            for key in keys:
                if key in owner:
                    comps.union(owner[key], pos)
                else:
                    owner[key] = pos
        return comps

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _wants_subject_fallback(b: _Prepared) -> bool:
    f = b.facts
    return not b.links and f.date is not None and has_reply_prefix(f.subject or "")


def ingest_batch(
    session: Session, account: Account, items: Sequence[IngestItem]
) -> list[IngestResult]:
    """Store many messages of one account in a few statements (the sync and import hot path).

    The result for each item is what `ingest_message` would have returned had the items been
    stored one by one in order: a message already stored (or seen earlier in the batch) is
    `created=False` and only gains its location; new messages are threaded together with the
    stored conversations, merging conversations they connect. Never commits.
    """
    codec = RowCodec.for_session(session)
    prepared = [_prepare(codec, i, item) for i, item in enumerate(items)]
    results: list[IngestResult | None] = [None] * len(prepared)
    by_mid, by_pid = _existing_messages(session, account.id, prepared)

    # Split into known messages (stored before, or a duplicate earlier in this batch) and new.
    fresh: list[_Prepared] = []
    first_in_batch: dict[str, _Prepared] = {}
    duplicates: list[_Prepared] = []
    for b in prepared:
        pk = (by_pid.get(b.provider_id) if b.provider_id else None) or by_mid.get(b.message_id)
        if pk is not None:
            continue
        seen = first_in_batch.get(b.message_id) or (
            first_in_batch.get("pid:" + b.provider_id) if b.provider_id else None
        )
        if seen is not None:
            duplicates.append(b)
            continue
        first_in_batch[b.message_id] = b
        if b.provider_id:
            first_in_batch["pid:" + b.provider_id] = b
        fresh.append(b)

    main, deferred, comps = _split_for_subject_fallback(fresh)
    if any(b.provider_thread_id for b in main):
        comps = None  # thread ids group too: _insert_new groups again
    if main:
        try:
            with session.begin_nested():
                _insert_new(session, account, main, results, comps=comps)
        except IntegrityError:
            # Another writer stored some of these meanwhile: fall back to one at a time, each
            # resolving to whichever row won.
            for b in main:
                results[b.index] = _one_by_one(session, account, b)
    for b in deferred:
        results[b.index] = _one_by_one(session, account, b)

    _resolve_known(session, account, prepared, results)
    return [r for r in results if r is not None]


def _split_for_subject_fallback(
    fresh: Sequence[_Prepared],
) -> tuple[list[_Prepared], list[_Prepared], _Components | None]:
    """(stored together, stored one at a time in input order, and when nothing is set aside
    the grouping of the first, for `_insert_new` to reuse).

    A reply-prefixed message without threading headers may join a conversation by subject,
    and then the replies that reference it follow it there. So the whole group connected to
    such a message (by Message-ID, In-Reply-To, References) goes one at a time after the rest,
    in input order: it can find the conversations the rest of the batch makes, and its
    replies find it where one-by-one storing would have put it."""
    comps = _Components.linked(fresh, thread_hints=False)
    slow = {comps.find(pos) for pos, b in enumerate(fresh) if _wants_subject_fallback(b)}
    if not slow:
        return list(fresh), [], comps
    main = [b for pos, b in enumerate(fresh) if comps.find(pos) not in slow]
    deferred = [b for pos, b in enumerate(fresh) if comps.find(pos) in slow]
    return main, deferred, None


def _one_by_one(session: Session, account: Account, b: _Prepared) -> IngestResult:
    by_mid, by_pid = _existing_messages(session, account.id, [b])
    pk = (by_pid.get(b.provider_id) if b.provider_id else None) or by_mid.get(b.message_id)
    if pk is not None:
        return _known_result(session, pk, b)
    results: list[IngestResult | None] = [None] * (b.index + 1)
    try:
        with session.begin_nested():
            # As a batch of one would: only a message that wants it may join by subject.
            _insert_new(session, account, [b], results, subject_fallback=_wants_subject_fallback(b))
    except IntegrityError:
        by_mid, by_pid = _existing_messages(session, account.id, [b])
        pk = (by_pid.get(b.provider_id) if b.provider_id else None) or by_mid.get(b.message_id)
        if pk is None:
            raise
        return _known_result(session, pk, b)
    result = results[b.index]
    assert result is not None
    return result


def _known_result(session: Session, pk: int, b: _Prepared) -> IngestResult:
    if b.item.location is not None:
        _add_locations(session, [(pk, b.item.location, b.item.flags)])
    message = session.get(Message, pk)
    assert message is not None
    conversation = session.get(Conversation, message.conversation_id)
    assert conversation is not None
    return IngestResult.known(message, conversation)


def _resolve_known(
    session: Session,
    account: Account,
    prepared: Sequence[_Prepared],
    results: list[IngestResult | None],
) -> None:
    """Fill in the results of messages that were already stored (before or earlier in the
    batch): they only gain a location."""
    pending = [b for b in prepared if results[b.index] is None]
    if not pending:
        return
    by_mid, by_pid = _existing_messages(session, account.id, pending)
    locations = []
    pks: dict[int, int] = {}
    for b in pending:
        pk = (by_pid.get(b.provider_id) if b.provider_id else None) or by_mid.get(b.message_id)
        if pk is None:  # cannot happen: every new message was inserted above
            raise RuntimeError(f"message {b.message_id!r} was neither stored nor inserted")
        pks[b.index] = pk
        if b.item.location is not None:
            locations.append((pk, b.item.location, b.item.flags))
    _add_locations(session, locations)
    messages = {
        m.id: m for m in session.scalars(select(Message).where(Message.id.in_(set(pks.values()))))
    }
    conv_ids = {m.conversation_id for m in messages.values()}
    conversations = {
        c.id: c for c in session.scalars(select(Conversation).where(Conversation.id.in_(conv_ids)))
    }
    for b in pending:
        message = messages[pks[b.index]]
        results[b.index] = IngestResult.known(message, conversations[message.conversation_id])


_CONVERSATION_ATTRS = [
    (prop.key, prop.columns[0]) for prop in sa_inspect(Conversation).column_attrs
]


def _column_default(column: Any) -> Any:
    """The Python-side default the ORM's flush would give an unset column (None if none)."""
    default = column.default
    if default is None:
        return None
    if default.is_callable:
        return default.arg(None)  # SQLAlchemy wraps a no-argument callable to take a context
    if default.is_scalar:
        return default.arg
    raise NotImplementedError(f"conversations.{column.name}: default {default!r}")


def _insert_conversations(
    session: Session, conversations: Sequence[Conversation], ids: Sequence[int]
) -> None:
    """Insert brand-new conversations with their reserved ids in one statement, then attach
    the objects to the session as persistent rows, every column loaded: what the ORM's flush
    would do, without its unit of work (a fifth of the storing thread's Python in a history
    sync). Unset columns get their Python defaults, as the flush would give them
    (`eager_defaults` is off for conversations: the ORM read nothing back either)."""
    codec = RowCodec.for_session(session)
    columns = tuple(column.name for _key, column in _CONVERSATION_ATTRS)
    rows: list[tuple[Any, ...]] = []
    for conv, new_id in zip(conversations, ids, strict=True):
        conv.id = new_id
        state = conv.__dict__
        values = []
        for key, column in _CONVERSATION_ATTRS:
            if key in state:
                value = state[key]
            else:
                value = _column_default(column)
                setattr(conv, key, value)
            values.append(codec.bind_to(Conversation, column.name, value))
        rows.append(tuple(values))
    insert_rows(session, Conversation, columns, rows)
    for conv in conversations:
        make_transient_to_detached(conv)  # its identity from the id; loaded values committed
        session.add(conv)
        # Brand new: no Slack thread, no client link. Saying so spares lazy loads.
        set_committed_value(conv, "slack_thread", None)
        set_committed_value(conv, "link", None)


@dataclass(frozen=True)
class _Row:
    values: tuple[Any, ...]  # _MESSAGE_COLUMNS, driver-ready
    defects: tuple[str, ...]


_MESSAGE_COLUMNS = ("id", *STORE_COLUMNS, *PARSED_COLUMNS)


def _message_row(
    codec: RowCodec,
    pk: int,
    account_id: int,
    b: _Prepared,
    conversation_id: int,
    direction: Direction,
    read: bool,
) -> _Row:
    item, enc = b.item, b.enc
    defects = list(enc.defects)
    if item.truncated:
        defects.append("truncated: over the size limit, body incomplete")
    if b.facts.date is None:
        # Sorting and the date index need a date: use the arrival time, and say so.
        defects.append("no usable Date header: the received time is used as the date")
    bind, flag = codec.bind, codec.bind_flag
    # Usually nothing was added: the list the worker already encoded is the one to store.
    bound_defects = (
        enc.defects_bound if len(defects) == len(enc.defects) else bind("parse_defects", defects)
    )
    store = (
        pk,
        account_id,
        conversation_id,
        b.message_id,
        b.provider_id,
        b.provider_thread_id,
        enc.date if b.facts.date is not None else bind("date", b.when),
        bind("received_at", b.received_at),
        flag("is_read", read),
        flag("is_flagged", "\\Flagged" in item.flags),
        flag("direction", direction),
        bind("sent_by", item.sent_by),
        bound_defects,
        flag("truncated", item.truncated),
        flag("deleted", False),
    )
    return _Row(store + enc.values, tuple(defects))


def _insert_new(
    session: Session,
    account: Account,
    batch: Sequence[_Prepared],
    results: list[IngestResult | None],
    *,
    subject_fallback: bool = False,
    comps: _Components | None = None,
) -> None:
    """Thread `batch` (all new to the store) against the stored conversations and insert it.
    `comps`: the batch's grouping when the caller has it already."""
    related = _related_conversations(session, account.id, batch)
    hints = _thread_hint_conversations(session, account.id, batch)

    # 1. Group the batch: messages sharing any id (own or referenced) or a provider thread id.
    if comps is None:
        comps = _Components.linked(batch, thread_hints=True)
    directions = [b.item.direction or _direction(account, b.facts) for b in batch]
    read = [
        b.item.is_read or d == Direction.OUTBOUND for b, d in zip(batch, directions, strict=True)
    ]

    # 2. Each group's stored conversations (resolved through earlier merges).
    root_of = [comps.find(pos) for pos in range(len(batch))]
    groups: dict[int, list[int]] = {}
    for pos, root in enumerate(root_of):
        groups.setdefault(root, []).append(pos)
    stored_ids: dict[int, set[int]] = {}
    for root, members in groups.items():
        ids: set[int] = set()
        for pos in members:
            b = batch[pos]
            for key in (b.message_id, *b.links):
                ids |= related.get(key, set())
            if b.provider_thread_id:
                ids |= hints.get(b.provider_thread_id, set())
        stored_ids[root] = ids
    wanted = set().union(*stored_ids.values()) if stored_ids else set()
    loaded = (
        {
            c.id: _resolve(session, c)
            for c in session.scalars(
                select(Conversation).where(one_of(session, Conversation.id, sorted(wanted)))
            )
        }
        if wanted
        else {}
    )

    # 3. One conversation per group: the oldest stored one (merging the others into it), a
    #    subject match for a header-less reply, or a new one.
    conversation_of: dict[int, Conversation] = {}
    new_group: dict[int, bool] = {}
    merged_of: dict[int, list[int]] = {}
    new_conversations: list[tuple[int, Conversation]] = []
    for root, members in groups.items():
        convs = list({loaded[i].id: loaded[i] for i in stored_ids[root] if i in loaded}.values())
        if not convs and subject_fallback:
            first = batch[members[0]]
            found = _subject_conversation(session, account.id, first.facts, first.when)
            if found is not None:
                convs = [found]
        if convs:
            target = _oldest(convs)
            merged_of[root] = merge_conversations(session, target, convs)
            conversation_of[root] = target
            new_group[root] = False
        else:
            # Brand new: its counters are the group's, set now, so the flush that gives it an
            # id is its only write.
            earliest = min((batch[p] for p in members), key=lambda b: (b.when, b.index))
            conv = Conversation(
                account_id=account.id,
                subject=earliest.enc.subject,
                subject_key=normalize_subject(earliest.enc.subject)[:300],
                provider_thread_id=next(
                    (batch[p].provider_thread_id for p in members if batch[p].provider_thread_id),
                    None,
                ),
                first_message_at=earliest.when,
                last_message_at=max(batch[p].when for p in members),
                message_count=len(members),
                unread_count=sum(1 for p in members if not read[p]),
            )
            new_conversations.append((root, conv))
            conversation_of[root] = conv
            new_group[root] = True
    if new_conversations:
        # Ids set in advance (bot/store/ids.py), the rows inserted in one statement.
        new_ids = reserve_ids(session, Conversation, len(new_conversations))
        _insert_conversations(session, [c for _root, c in new_conversations], new_ids)
        session.flush()  # whatever else is pending (merges): before the messages

    # 4. Insert the messages and everything hanging off them: driver-ready rows in one
    #    executemany each (bot/store/rows.py), with ids reserved in advance (no per-row
    #    RETURNING, which SQLite sends as one statement per row, and no reading them back).
    codec = RowCodec.for_session(session)
    account_id = account.id  # an ORM attribute: read once, not per row below
    pks = reserve_ids(session, Message, len(batch))
    rows = [
        _message_row(
            codec,
            pk,
            account_id,
            b,
            conversation_of[root_of[pos]].id,
            directions[pos],
            read[pos],
        )
        for pos, (pk, b) in enumerate(zip(pks, batch, strict=True))
    ]
    insert_rows(session, Message, _MESSAGE_COLUMNS, [r.values for r in rows])
    index_messages(session, pks)
    insert_rows(
        session,
        MessageRaw,
        ("message_id", "raw"),
        [
            (pk, codec.bind_to(MessageRaw, "raw", bytes(b.item.raw)))
            for pk, b in zip(pks, batch, strict=True)
        ],
    )
    insert_rows(
        session,
        Attachment,
        ("message_id", *ATTACHMENT_COLUMNS),
        [(pk, *a) for pk, b in zip(pks, batch, strict=True) for a in b.enc.attachments],
    )
    insert_rows(
        session,
        MessageRef,
        ("account_id", "message_id", "ref_id"),
        [(account_id, pk, ref) for pk, b in zip(pks, batch, strict=True) for ref in b.refs],
    )
    _add_locations(
        session,
        [
            (pk, b.item.location, b.item.flags)
            for pk, b in zip(pks, batch, strict=True)
            if b.item.location
        ],
    )

    # 5. Counters, the root subject, auto-link; then the results in input order.
    for root, members in groups.items():
        if new_group[root]:
            continue  # counted when it was made
        conv = conversation_of[root]
        for pos in sorted(members, key=lambda p: (batch[p].when, batch[p].index)):
            b = batch[pos]
            conv.message_count += 1
            if not read[pos]:
                conv.unread_count += 1
            if conv.first_message_at is None or b.when < conv.first_message_at:
                conv.subject = b.enc.subject
                conv.subject_key = normalize_subject(b.enc.subject)[:300]
                conv.first_message_at = b.when
            if conv.last_message_at is None or b.when > conv.last_message_at:
                conv.last_message_at = b.when
            if not conv.provider_thread_id and b.provider_thread_id:
                conv.provider_thread_id = b.provider_thread_id
    session.flush()
    first_of = {
        root: min(members, key=lambda p: batch[p].index) for root, members in groups.items()
    }
    link_address: dict[int, str] = {}
    if account.auto_link:
        for root, first_pos in first_of.items():
            address = _link_address(batch[first_pos].facts, directions[first_pos])
            if new_group[root] and address:
                link_address[root] = address
    owners = clients_for_addresses(session, link_address.values()) if link_address else {}
    for root, members in groups.items():
        conv = conversation_of[root]
        first_pos = first_of[root]
        linked: int | None = None
        owner_id = owners.get(normalize_email(link_address.get(root, "")))
        if owner_id is not None:
            linked = auto_link(session, conv, link_address[root], is_new=True, client_id=owner_id)
        for pos in members:
            b = batch[pos]
            results[b.index] = IngestResult(
                message_pk=pks[pos],
                facts=MessageFacts(
                    b.message_id,
                    b.when,
                    b.received_at,
                    b.item.sent_by,
                    b.enc.has_attachments,
                    rows[pos].defects,
                ),
                session=session,
                conversation=conv,
                created=True,
                new_conversation=new_group[root] and pos == first_pos,
                merged_conversation_ids=merged_of.get(root, []) if pos == first_pos else [],
                linked_client_id=linked if pos == first_pos else None,
            )
