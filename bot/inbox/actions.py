"""What people do to a conversation from Slack: open, mark unread, archive, delete, link.

Each function checks that the person may see the account's channel, changes the store with a
conditional UPDATE (so a repeated click, or two people clicking at once, changes it once),
records who did it, and queues the effects: the mailbox write-back, a note in the thread and a
refresh of the parent message. Nothing here talks to a mailbox or posts to Slack directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.access import AccessDenied
from bot.blocks.conversation import Person
from bot.blocks.email_modal import AttachmentLine, EmailView
from bot.inbox.announce import refresh_parent
from bot.mail.parse import HEADER_ONLY_NOTE, is_header_only
from bot.services import Services
from bot.store import audit, clients, outbox
from bot.store.db import read_scope, session_scope
from bot.store.models import Account, Conversation, Message

if TYPE_CHECKING:  # annotations only: a sync reaches this module without Slack (issue 19)
    from slack_sdk import WebClient

SET_READ = "mail.set_read"
ARCHIVE = "mail.archive"
UNARCHIVE = "mail.unarchive"
TRASH = "mail.trash"


class NotFound(LookupError):
    """The conversation (or message) does not exist, or was merged away."""


@dataclass(frozen=True)
class ConversationInfo:
    """Enough about a conversation to build a confirmation or link modal."""

    conversation_id: int
    account_id: int
    channel_id: str | None
    subject: str
    client_id: int | None
    client_name: str | None
    archived: bool
    deleted: bool


# -- access ---------------------------------------------------------------------------------


def _load(session: Session, conversation_id: int) -> tuple[Conversation, Account]:
    conversation = session.get(Conversation, conversation_id)
    # A merged conversation lives on in the one it was merged into.
    hops = 0
    while conversation is not None and conversation.merged_into_id is not None and hops < 10:
        conversation = session.get(Conversation, conversation.merged_into_id)
        hops += 1
    if conversation is None:
        raise NotFound(f"conversation #{conversation_id} not found")
    account = session.get(Account, conversation.account_id)
    if account is None:
        raise NotFound(f"conversation #{conversation_id} has no account")
    return conversation, account


def conversation_info(
    services: Services, slack: WebClient, user_id: str, conversation_id: int
) -> ConversationInfo:
    """Read a conversation for `user_id`; AccessDenied unless they are in its channel."""
    with read_scope(services.session_factory) as session:
        conversation, account = _load(session, conversation_id)
        link = conversation.link
        info = ConversationInfo(
            conversation_id=conversation.id,
            account_id=account.id,
            channel_id=account.channel_id,
            subject=conversation.subject,
            client_id=link.client_id if link else None,
            client_name=link.client.name if link else None,
            archived=conversation.archived,
            deleted=conversation.deleted,
        )
    if not services.access.can_see_channel(slack, user_id, info.channel_id):
        raise AccessDenied("You can act on this mailbox's email only as a member of its channel.")
    return info


# -- shared effects -------------------------------------------------------------------------


def _effects(
    session: Session,
    conversation: Conversation,
    user_id: str,
    action: str,
    *,
    writeback: tuple[str, dict[str, Any]] | None,
    details: dict[str, Any] | None = None,
    client_name: str | None = None,
    record: bool = True,
) -> None:
    """Audit row, mailbox write-back and parent refresh for one state change.

    Quiet by design: nothing is posted in the thread (a note there would notify everyone
    following it). The parent's state line names who read, archived or linked it."""
    if record:
        row = audit.record(
            session,
            user_id,
            f"conversation.{action}",
            account_id=conversation.account_id,
            conversation_id=conversation.id,
            details=details,
        )
        session.flush()
        stamp = f"a{row.id}"
    else:
        # The store already recorded it (link/unlink); key the effects on the latest row.
        session.flush()
        stamp = f"a{_latest_audit_id(session, conversation.id)}"
    if writeback is not None:
        kind, payload = writeback
        outbox.enqueue(
            session,
            kind=kind,
            key=f"{kind}:{conversation.id}:{stamp}",
            payload=payload,
            account_id=conversation.account_id,
            conversation_id=conversation.id,
            created_by=user_id,
        )
    refresh_parent(session, conversation.id)


def _latest_audit_id(session: Session, conversation_id: int) -> int:
    from bot.store.models import AuditLog

    return int(
        session.scalar(
            select(func.max(AuditLog.id)).where(AuditLog.conversation_id == conversation_id)
        )
        or 0
    )


def _recount_unread(session: Session, conversation: Conversation) -> None:
    conversation.unread_count = int(
        session.scalar(
            select(func.count())
            .select_from(Message)
            .where(
                Message.conversation_id == conversation.id,
                Message.is_read.is_(False),
                Message.deleted.is_(False),
            )
        )
        or 0
    )


def _set_flag(
    session: Session, conversation_id: int, column: str, value: bool, **guards: bool
) -> bool:
    """Conditional UPDATE: True only for the call that actually changed the flag."""
    col = getattr(Conversation, column)
    stmt = update(Conversation).where(Conversation.id == conversation_id, col == (not value))
    for name, expected in guards.items():
        stmt = stmt.where(getattr(Conversation, name) == expected)
    result = session.execute(
        stmt.values({column: value}).execution_options(synchronize_session=False)
    )
    changed = result.rowcount == 1  # type: ignore[attr-defined]
    if changed:
        session.expire_all()
    return changed


# -- open -----------------------------------------------------------------------------------


def _people(items: list[Any]) -> list[Person]:
    out = []
    for item in items or []:
        if isinstance(item, dict):
            out.append(Person(str(item.get("name") or ""), str(item.get("email") or "")))
    return out


def _pick_message(session: Session, conversation: Conversation, message_id: int | None) -> Message:
    if message_id is not None:
        message = session.get(Message, message_id)
        if message is None or message.conversation_id != conversation.id:
            raise NotFound(f"message #{message_id} is not in conversation #{conversation.id}")
        return message
    latest = session.scalar(
        select(Message)
        .where(Message.conversation_id == conversation.id, Message.deleted.is_(False))
        .order_by(Message.date.desc().nulls_last(), Message.id.desc())
        .limit(1)
    )
    if latest is None:
        raise NotFound(f"conversation #{conversation.id} has no email")
    return latest


def _email_view(
    session: Session, conversation: Conversation, account: Account, message: Message
) -> EmailView:
    ordered = list(
        session.scalars(
            select(Message.id)
            .where(Message.conversation_id == conversation.id)
            .order_by(Message.date.is_(None), Message.date, Message.id)
        )
    )
    body = message.body_text  # converted once at parse: never again per Open
    if not body.strip() and is_header_only(message.parse_defects):
        body = HEADER_ONLY_NOTE
    at = ordered.index(message.id) if message.id in ordered else 0
    return EmailView(
        conversation_id=conversation.id,
        message_id=message.id,
        subject=message.subject or conversation.subject,
        sender=Person(message.from_name, message.from_email),
        to=_people(message.to),
        cc=_people(message.cc),
        reply_to=_people(message.reply_to),
        date=message.date,
        account_email=account.email,
        body=body,
        attachments=[
            AttachmentLine(a.filename, a.content_type, a.size)
            for a in message.attachments
            if not a.inline
        ],
        position=at + 1,
        total=len(ordered),
        truncated=message.truncated,
        defects=list(message.parse_defects or []),
        previous_id=ordered[at - 1] if at > 0 and message.id in ordered else None,
        next_id=ordered[at + 1] if at + 1 < len(ordered) and message.id in ordered else None,
    )


def open_email(
    services: Services,
    slack: WebClient,
    user_id: str,
    conversation_id: int,
    message_id: int | None = None,
    *,
    mark_read: bool = True,
) -> EmailView:
    """The email to show in the Open modal, and mark it read (`mark_read=False`: the caller
    calls `mark_opened_read` once the modal is open).

    From the parent message (no `message_id`) the whole conversation counts as read; from an
    email in the thread, that email. The mailbox learns it through a "mail.set_read" row.
    """
    conversation_info(services, slack, user_id, conversation_id)
    # Reads in a read-only transaction (the text was converted once, at parse: Open converts
    # nothing); then the short write.
    with read_scope(services.session_factory) as session:
        conversation, account = _load(session, conversation_id)
        message = _pick_message(session, conversation, message_id)
        view = _email_view(session, conversation, account, message)
        picked = message.id
    if mark_read:
        mark_opened_read(services, user_id, view.conversation_id, picked, message_id is not None)
    return view


def mark_opened_read(
    services: Services, user_id: str, conversation_id: int, message_pk: int, only_it: bool
) -> None:
    """Opening marks read: the whole conversation (from the parent), or only that email."""
    with session_scope(services.session_factory) as session:
        conversation, _account = _load(session, conversation_id)
        query = select(Message.id).where(
            Message.conversation_id == conversation.id, Message.is_read.is_(False)
        )
        if only_it:
            query = query.where(Message.id == message_pk)
        unread = list(session.scalars(query))
        changed: list[int] = []
        for mid in unread:
            result = session.execute(
                update(Message)
                .where(Message.id == mid, Message.is_read.is_(False))
                .values(is_read=True)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                changed.append(mid)
        if changed:
            session.expire_all()
            conversation, _account = _load(session, conversation.id)
            _recount_unread(session, conversation)
            _effects(
                session,
                conversation,
                user_id,
                "read",
                writeback=(SET_READ, {"message_ids": changed, "read": True}),
                details={"message_ids": changed},
            )


# -- state changes --------------------------------------------------------------------------


def mark_unread(services: Services, slack: WebClient, user_id: str, conversation_id: int) -> bool:
    """Mark the latest email unread again. False if the conversation already was unread."""
    conversation_info(services, slack, user_id, conversation_id)
    with session_scope(services.session_factory) as session:
        conversation, _ = _load(session, conversation_id)
        if conversation.unread_count > 0:
            return False
        latest = _pick_message(session, conversation, None)
        result = session.execute(
            update(Message)
            .where(Message.id == latest.id, Message.is_read.is_(True))
            .values(is_read=False)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        session.expire_all()
        conversation, _ = _load(session, conversation.id)
        _recount_unread(session, conversation)
        _effects(
            session,
            conversation,
            user_id,
            "mark_unread",
            writeback=(SET_READ, {"message_ids": [latest.id], "read": False}),
            details={"message_ids": [latest.id]},
        )
        return True


def _flag_action(
    services: Services,
    slack: WebClient,
    user_id: str,
    conversation_id: int,
    *,
    action: str,
    column: str,
    value: bool,
    kind: str,
    guards: dict[str, bool],
) -> bool:
    info = conversation_info(services, slack, user_id, conversation_id)
    with session_scope(services.session_factory) as session:
        if not _set_flag(session, info.conversation_id, column, value, **guards):
            return False
        conversation, _ = _load(session, info.conversation_id)
        _effects(
            session,
            conversation,
            user_id,
            action,
            writeback=(kind, {"conversation_id": conversation.id}),
        )
        return True


def archive(services: Services, slack: WebClient, user_id: str, conversation_id: int) -> bool:
    """Archive (out of the mailbox's Inbox). False if it already was archived or is in Trash."""
    return _flag_action(
        services,
        slack,
        user_id,
        conversation_id,
        action="archive",
        column="archived",
        value=True,
        kind=ARCHIVE,
        guards={"deleted": False},
    )


def unarchive(services: Services, slack: WebClient, user_id: str, conversation_id: int) -> bool:
    return _flag_action(
        services,
        slack,
        user_id,
        conversation_id,
        action="unarchive",
        column="archived",
        value=False,
        kind=UNARCHIVE,
        guards={"deleted": False},
    )


def delete(services: Services, slack: WebClient, user_id: str, conversation_id: int) -> bool:
    """Move to the mailbox's Trash. False if it already is there."""
    return _flag_action(
        services,
        slack,
        user_id,
        conversation_id,
        action="delete",
        column="deleted",
        value=True,
        kind=TRASH,
        guards={},
    )


# -- clients --------------------------------------------------------------------------------


def link_client(
    services: Services, slack: WebClient, user_id: str, conversation_id: int, client_id: int
) -> bool:
    """Link to a client (replacing another). False if it already was linked to that client."""
    info = conversation_info(services, slack, user_id, conversation_id)
    with session_scope(services.session_factory) as session:
        conversation, _ = _load(session, info.conversation_id)
        current = conversation.link
        if current is not None and current.client_id == client_id:
            return False
        try:
            link = clients.link_conversation(session, conversation.id, client_id, actor=user_id)
        except clients.ClientError as exc:
            raise NotFound(str(exc)) from exc
        _effects(
            session,
            conversation,
            user_id,
            "link",
            writeback=None,
            client_name=link.client.name,
            record=False,
        )
        return True


def unlink_client(services: Services, slack: WebClient, user_id: str, conversation_id: int) -> bool:
    """Remove the client link. False if there was none."""
    info = conversation_info(services, slack, user_id, conversation_id)
    with session_scope(services.session_factory) as session:
        conversation, _ = _load(session, info.conversation_id)
        name = conversation.link.client.name if conversation.link else None
        if not clients.unlink_conversation(session, conversation.id, actor=user_id):
            return False
        _effects(
            session,
            conversation,
            user_id,
            "unlink",
            writeback=None,
            client_name=name,
            record=False,
        )
        return True
