"""The whole domain as SQLAlchemy 2 models.

One declarative base with a naming convention (so constraint names are stable across SQLite and
PostgreSQL and Alembic can diff them), timezone-aware UTC datetimes everywhere, enums stored by
value, and every dedupe rule expressed as a unique constraint rather than a check-then-insert.

Search indexes (PostgreSQL `tsvector` + GIN, SQLite FTS5) are dialect specific and live in the
migrations only; `bot/store/search.py` queries them.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC; SQLite hands back naive values, which we re-tag as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSON that is JSONB on PostgreSQL (indexable, compact) and plain JSON text elsewhere.
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
        list[str]: JSONType,
    }


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored by value (e.g. "active"), as a VARCHAR + CHECK, so adding a member is a cheap migration.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Provider(enum.StrEnum):
    IMAP = "imap"
    GMAIL = "gmail"
    GRAPH = "graph"


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    ERROR = "error"
    NEEDS_REAUTH = "needs_reauth"
    PAUSED = "paused"


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class LinkMethod(enum.StrEnum):
    AUTO = "auto"
    MANUAL = "manual"


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    OK = "ok"
    PARTIAL = "partial"  # finished, but some messages were kept with defects or skipped
    ERROR = "error"


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # gave up after retries, or a permanent error; a person may retry
    HELD = "held"  # waiting for a person (e.g. new mail arrived since the reply was written)
    CANCELLED = "cancelled"


class Account(Base):
    """A connected mailbox and its sync settings."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[Provider] = mapped_column(_enum(Provider, "provider"))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    # Non-secret connection settings (hosts, ports, security, username, tenant…).
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Passwords / OAuth tokens, Fernet-encrypted JSON (bot/crypto.py). Never logged or shown.
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary)
    channel_id: Mapped[str | None] = mapped_column(String(32))
    sync_interval_seconds: Mapped[int] = mapped_column(Integer, default=300)
    folders: Mapped[list[str]] = mapped_column(
        default=list
    )  # empty: the defaults (Inbox, Sent, Archive)
    auto_link: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[AccountStatus] = mapped_column(
        _enum(AccountStatus, "account_status"), default=AccountStatus.ACTIVE
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    capabilities: Mapped[list[str]] = mapped_column(default=list)
    # Mail dated before this is imported as history, not announced in Slack.
    announce_after: Mapped[datetime | None]
    last_sync_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    next_sync_at: Mapped[datetime | None] = mapped_column(index=True)
    # Lease: which worker is syncing this account, until when (see bot/store/leases.py).
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Added below what is sent from Slack; Jinja2 (bot/templates.py sandbox). Set by admins.
    # `signature` is its plain text; `signature_rich` the cleaned Slack rich text that is sent
    # (bot/mail/richtext.py). None: no signature (or, rich None, a plain one).
    signature: Mapped[str | None] = mapped_column(Text)
    signature_rich: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)

    folder_states: Mapped[list[FolderState]] = relationship(
        back_populates="account", cascade="all, delete-orphan"
    )


class FolderState(Base):
    """Sync cursor of one folder (IMAP: UIDVALIDITY/UID/MODSEQ; Graph: delta link; Gmail: one
    row named "" holding the historyId). Advanced in the same transaction as its messages."""

    __tablename__ = "folder_states"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(500))
    role: Mapped[str | None] = mapped_column(String(20))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    uidnext: Mapped[int | None] = mapped_column(BigInteger)
    highestmodseq: Mapped[int | None] = mapped_column(BigInteger)
    exists_count: Mapped[int | None] = mapped_column(Integer)
    cursor: Mapped[str | None] = mapped_column(Text)
    last_full_scan_at: Mapped[datetime | None]
    synced_at: Mapped[datetime | None]

    account: Mapped[Account] = relationship(back_populates="folder_states")


class Conversation(Base):
    """An email thread; one Slack thread."""

    __tablename__ = "conversations"
    # The server default of `status` (0010) is for rows that existed before; new rows get the
    # Python default, so there is nothing to read back and batch ingest stays one executemany.
    __mapper_args__ = {"eager_defaults": False}
    __table_args__ = (
        Index("ix_conversations_account_last", "account_id", "last_message_at"),
        Index("ix_conversations_subject_key", "account_id", "subject_key"),
        # The triage views (bot/store/triage.py) and the lists: conversations not done, newest
        # activity first, with every column a view tests (its page and count read the index
        # alone). The WHERE as the queries render it: SQLite needs the same terms (0017).
        Index(
            "ix_conversations_open",
            "last_message_at",
            "id",
            "account_id",
            "assignee",
            "status",
            "waiting_since",
            "snoozed_until",
            "merged_into_id",
            "deleted",
            sqlite_where=text("archived IS 0 AND status != 'done'"),
            postgresql_where=text("archived IS false AND status <> 'done'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(Text, default="")
    subject_key: Mapped[str] = mapped_column(String(300), default="")  # normalised subject
    provider_thread_id: Mapped[str | None] = mapped_column(String(200))
    first_message_at: Mapped[datetime | None]
    last_message_at: Mapped[datetime | None]
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    unread_count: Mapped[int] = mapped_column(Integer, default=0)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)  # moved to Trash
    # Set when this conversation turned out to be part of another and was merged into it.
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # -- team triage (issue 16, migration 0010; bot/store/triage.py) --------------------------
    # Owner (a Slack user), status "open" | "waiting" | "done", and since when the customer's
    # oldest unanswered email has waited (None: the last email is ours).
    assignee: Mapped[str | None] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    waiting_since: Mapped[datetime | None]
    # A snooze is a due row: the worker claims conversations whose time has come.
    snoozed_until: Mapped[datetime | None] = mapped_column(index=True)
    snoozed_by: Mapped[str | None] = mapped_column(String(32))
    # Who has a reply modal open on it, until when (the "Ann is replying" mark).
    replying_user: Mapped[str | None] = mapped_column(String(32))
    replying_until: Mapped[datetime | None] = mapped_column(index=True)

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", order_by="Message.date"
    )
    link: Mapped[ConversationLink | None] = relationship(
        back_populates="conversation", uselist=False, cascade="all, delete-orphan"
    )
    slack_thread: Mapped[SlackThread | None] = relationship(
        back_populates="conversation", uselist=False, cascade="all, delete-orphan"
    )

    @property
    def unread(self) -> bool:
        return self.unread_count > 0


class Message(Base):
    """One email. Known by (account, Message-ID) and, for API providers, (account, provider id)."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("account_id", "message_id"),
        UniqueConstraint("account_id", "provider_id"),
        Index("ix_messages_account_date", "account_id", "date"),
        Index("ix_messages_conversation_date", "conversation_id", "date"),
        Index("ix_messages_date_id", "date", "id"),  # newest-first search walk (0002)
        Index("ix_messages_from_date", "from_email", "date", "id"),  # from:address walk (0018)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[str] = mapped_column(String(998))  # header value without <>
    message_id_synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    provider_id: Mapped[str | None] = mapped_column(String(200))  # Gmail id / Graph immutable id
    provider_thread_id: Mapped[str | None] = mapped_column(String(200))
    in_reply_to: Mapped[list[str]] = mapped_column(default=list)
    references: Mapped[list[str]] = mapped_column(default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    from_email: Mapped[str] = mapped_column(String(320), default="", index=True)
    from_name: Mapped[str] = mapped_column(String(300), default="")
    # Lists of {"name": ..., "email": ...}
    to: Mapped[list[Any]] = mapped_column(default=list)
    cc: Mapped[list[Any]] = mapped_column(default=list)
    bcc: Mapped[list[Any]] = mapped_column(default=list)
    reply_to: Mapped[list[Any]] = mapped_column(default=list)
    date: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    snippet: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer, default=0)
    has_attachments: Mapped[bool] = mapped_column(Boolean, default=False)
    is_read: Mapped[bool] = mapped_column(Boolean, default=False)
    is_flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    direction: Mapped[Direction] = mapped_column(
        _enum(Direction, "direction"), default=Direction.INBOUND
    )
    sent_by: Mapped[str | None] = mapped_column(String(32))  # Slack user who sent it from Slack
    parse_defects: Mapped[list[str]] = mapped_column(default=list)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)  # over the size limit
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)  # gone from every folder

    conversation: Mapped[Conversation] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", cascade="all, delete-orphan"
    )
    locations: Mapped[list[MessageLocation]] = relationship(
        back_populates="message", cascade="all, delete-orphan"
    )


class MessageRaw(Base):
    """The original bytes, kept apart from the hot `messages` rows: nothing is ever lost."""

    __tablename__ = "message_raw"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class MessageLocation(Base):
    """Where an IMAP message sits: (folder, UIDVALIDITY, UID). One message, many folders."""

    __tablename__ = "message_locations"
    __table_args__ = (UniqueConstraint("folder_id", "uidvalidity", "uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    folder_id: Mapped[int] = mapped_column(ForeignKey("folder_states.id", ondelete="CASCADE"))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[list[str]] = mapped_column(default=list)

    message: Mapped[Message] = relationship(back_populates="locations")


class MessageRef(Base):
    """Every Message-ID a message points at (In-Reply-To and References), one row each.

    Threading needs "which stored messages reference id X?" when a parent arrives after its
    children; an indexed lookup keeps that O(log n) instead of scanning JSON lists.
    """

    __tablename__ = "message_refs"
    __table_args__ = (
        UniqueConstraint("message_id", "ref_id"),
        Index("ix_message_refs_account_ref", "account_id", "ref_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    ref_id: Mapped[str] = mapped_column(String(998))


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(500), default="")
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    size: Mapped[int] = mapped_column(Integer, default=0)
    content_id: Mapped[str | None] = mapped_column(String(500))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    part_index: Mapped[int] = mapped_column(Integer, default=0)  # where it is in the raw MIME

    message: Mapped[Message] = relationship(back_populates="attachments")


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    company: Mapped[str] = mapped_column(String(300), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(32))

    addresses: Mapped[list[ClientAddress]] = relationship(
        back_populates="client", cascade="all, delete-orphan"
    )
    domains: Mapped[list[ClientDomain]] = relationship(
        back_populates="client", cascade="all, delete-orphan"
    )


class ClientAddress(Base):
    __tablename__ = "client_addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320), unique=True)  # lower-cased

    client: Mapped[Client] = relationship(back_populates="addresses")


class ClientDomain(Base):
    __tablename__ = "client_domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    domain: Mapped[str] = mapped_column(String(255), unique=True)  # lower-cased

    client: Mapped[Client] = relationship(back_populates="domains")


class ConversationLink(Base):
    """The client a conversation belongs to: who linked it, when, automatically or by hand."""

    __tablename__ = "conversation_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), unique=True
    )
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    method: Mapped[LinkMethod] = mapped_column(_enum(LinkMethod, "link_method"))
    linked_by: Mapped[str | None] = mapped_column(String(32))  # Slack user; None for auto
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="link")
    client: Mapped[Client] = relationship()


class Template(Base):
    __tablename__ = "templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    # The body as cleaned Slack rich text (bot/mail/richtext.py); None: a plain-text template.
    body_rich: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # Shared with the team, or personal: listed only for its author (`created_by`).
    shared: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_by: Mapped[str | None] = mapped_column(String(32))
    updated_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SyncRun(Base):
    """One sync of one account: the sync log."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_account_started", "account_id", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    worker: Mapped[str] = mapped_column(String(120), default="")
    trigger: Mapped[str] = mapped_column(String(20), default="schedule")  # schedule|idle|manual
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    status: Mapped[RunStatus] = mapped_column(
        _enum(RunStatus, "run_status"), default=RunStatus.RUNNING
    )
    folders: Mapped[list[str]] = mapped_column(default=list)
    new_count: Mapped[int] = mapped_column(Integer, default=0)
    changed_count: Mapped[int] = mapped_column(Integer, default=0)
    removed_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Per-message problems: [{"folder", "uid", "message_id", "problem"}]
    problems: Mapped[list[Any]] = mapped_column(default=list)


class Outbox(Base):
    """Everything that leaves the process goes through a durable row first.

    `key` is the idempotency key (unique): enqueueing the same effect twice is a no-op, and a
    retried row is recognised by the receiver (e.g. the Message-ID chosen before an SMTP send).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_lane", "lane", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[OutboxStatus] = mapped_column(
        _enum(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING
    )
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    channel_id: Mapped[str | None] = mapped_column(String(32))  # for per-channel pacing
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]
    # Rows of one lane run one at a time, oldest first; lanes run side by side (OutboxLane).
    lane: Mapped[str | None] = mapped_column(String(200))


class OutboxLane(Base):
    """Per-lane pacing shared by every worker: no row of the lane starts before `not_before`
    (Slack's per-channel rate, a 429's Retry-After). Rows are created on first claim."""

    __tablename__ = "outbox_lanes"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    not_before: Mapped[datetime | None]


class SlackThread(Base):
    """The Slack parent message of a conversation."""

    __tablename__ = "slack_threads"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), unique=True
    )
    channel_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32))  # None until the post went out
    rendered_hash: Mapped[str | None] = mapped_column(String(64))  # skip no-op chat.update
    posted_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]

    conversation: Mapped[Conversation] = relationship(back_populates="slack_thread")


class SlackPost(Base):
    """A reply in a conversation's Slack thread: an email, a sent reply, a state change."""

    __tablename__ = "slack_posts"
    __table_args__ = (UniqueConstraint("key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300))  # same as the outbox key that posted it
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    channel_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    posted_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditLog(Base):
    """Who did what, from Slack or the CLI."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # Slack user id, "cli" or "system"
    action: Mapped[str] = mapped_column(String(60))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SlackEvent(Base):
    """Slack event ids already handled: Slack delivers at least once."""

    __tablename__ = "slack_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class JobLock(Base):
    """Named leases for periodic jobs that must run once across replicas."""

    __tablename__ = "job_locks"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(120))
    expires_at: Mapped[datetime | None]


# -- Typing in a thread, internal notes, compose drafts (issue 14, points 4 and 6) -------------


class ThreadDraft(Base):
    """A message a person typed in a conversation's Slack thread, waiting for them to choose:
    send it as a reply, edit it first, or keep it as an internal note.

    Known by its Slack event id and by (channel, ts): Slack delivers at least once. The
    Message-ID is chosen when the draft is stored, so sending it twice enqueues one send.
    """

    __tablename__ = "thread_drafts"
    __table_args__ = (UniqueConstraint("channel_id", "ts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))  # the author: the only one who may act
    text: Mapped[str] = mapped_column(Text, default="")
    rich_text: Mapped[list[Any]] = mapped_column(default=list)  # the event's rich_text blocks
    files: Mapped[list[Any]] = mapped_column(default=list)  # [{id, name, mimetype, url}]
    message_id: Mapped[str] = mapped_column(String(998))  # for the send (idempotency key)
    newest_seen: Mapped[int | None] = mapped_column(Integer)  # newest Message pk when typed
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|sent|note
    outbox_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acted_at: Mapped[datetime | None]


class ConversationNote(Base):
    """An internal note on a conversation: seen by the team in Slack, never emailed."""

    __tablename__ = "conversation_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    author: Mapped[str] = mapped_column(String(32))  # Slack user id
    author_name: Mapped[str] = mapped_column(String(300), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    # The thread message it came from: a double click keeps one note.
    thread_draft_id: Mapped[int | None] = mapped_column(
        ForeignKey("thread_drafts.id", ondelete="SET NULL"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ComposeDraft(Base):
    """What a person wrote in a reply / forward modal and closed unsent: offered back the next
    time they answer in that conversation."""

    __tablename__ = "compose_drafts"
    __table_args__ = (UniqueConstraint("user_id", "conversation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    mode: Mapped[str] = mapped_column(String(20))
    to: Mapped[str] = mapped_column(Text, default="")
    cc: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")  # plain text of body_rich
    # What the rich text input held (cleaned): the draft comes back with its formatting.
    body_rich: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TriagePreference(Base):
    """A person's triage settings (issue 16): whether an assignment DMs them."""

    __tablename__ = "triage_preferences"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    assignment_dms: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# -- Push notifications: Gmail watches and Graph subscriptions (issue 18, point 3) ------------


class PushChannel(Base):
    """A live push channel of one API account: a Gmail ``users.watch`` or a Graph change
    notification subscription. Kept in the database so renewals survive restarts and every
    replica answers notifications the same way (bot/sync/push.py)."""

    __tablename__ = "push_channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), unique=True
    )
    kind: Mapped[str] = mapped_column(String(20))  # "gmail_watch" | "graph_subscription"
    # Graph's subscription id (notifications name it); None for a Gmail watch.
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    # Graph's clientState, Fernet-encrypted: a notification must carry it to be believed.
    client_state: Mapped[bytes | None] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime | None]
    renew_after: Mapped[datetime | None] = mapped_column(index=True)
    # The highest Gmail historyId a push announced: older or equal ones are replays.
    history_id: Mapped[int | None] = mapped_column(BigInteger)
    # When the last believed notification arrived: a run that started before it runs again.
    notified_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
