"""Turning newly ingested mail into Slack outbox rows (the posts themselves run later).

Called by the sync engine right after `ingest_message`, in the same transaction, so a message
is stored and its announcement queued together or not at all. Keys make it idempotent: running
it twice for the same message queues nothing new.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.store import audit, outbox
from bot.store.models import (
    Account,
    Conversation,
    Direction,
    Message,
    Outbox,
    OutboxStatus,
    SlackThread,
)

if TYPE_CHECKING:
    from bot.store.ingest import IngestResult, MessageFacts

POST_PARENT = "slack.post_parent"
POST_IN_THREAD = "slack.post_in_thread"
UPDATE_PARENT = "slack.update_parent"
UPLOAD_ATTACHMENTS = "slack.upload_attachments"
DM = "slack.dm"


def parent_key(conversation_id: int) -> str:
    return f"{POST_PARENT}:{conversation_id}"


def email_key(message_id: int) -> str:
    return f"{POST_IN_THREAD}:msg:{message_id}"


def files_key(message_id: int) -> str:
    return f"{UPLOAD_ATTACHMENTS}:{message_id}"


def _is_history(account: Account, message: MessageFacts) -> bool:
    if account.announce_after is None:
        return False
    # Arrival time (IMAP INTERNALDATE, the API's received time), not the Date header: a mail
    # that arrives after connect is news even when the sender's clock or a delay puts its
    # Date before it.
    # IMAP INTERNALDATE has whole seconds: mail from the second of connecting is news.
    when = message.received_at or message.date
    return when is not None and when < account.announce_after - timedelta(seconds=1)


def ensure_parent(session: Session, conversation: Conversation, channel_id: str) -> SlackThread:
    """The conversation's SlackThread row and its (idempotent) parent post."""
    thread = conversation.slack_thread
    if thread is None:
        thread = SlackThread(conversation_id=conversation.id, channel_id=channel_id)
        conversation.slack_thread = thread
        session.flush()
    if thread.ts is None:
        outbox.enqueue(
            session,
            kind=POST_PARENT,
            key=parent_key(conversation.id),
            payload={"conversation_id": conversation.id},
            account_id=conversation.account_id,
            conversation_id=conversation.id,
            channel_id=thread.channel_id,
        )
    return thread


# Account.config key: post follow-ups in the thread *and* the channel (default on).
BROADCAST_SETTING = "broadcast_followups"
UNARCHIVE_KIND = "mail.unarchive"


def broadcasts_followups(account: Account) -> bool:
    return bool((account.config or {}).get(BROADCAST_SETTING, True))


def enqueue_email_post(
    session: Session,
    conversation: Conversation,
    message_pk: int,
    channel_id: str,
    *,
    broadcast: bool = False,
) -> None:
    """Queue one email's post in the conversation's thread (idempotent by the message)."""
    key = email_key(message_pk)
    payload: dict[str, object] = {
        "conversation_id": conversation.id,
        "message_id": message_pk,
        "key": key,
    }
    if broadcast:
        payload["broadcast"] = True
    outbox.enqueue(
        session,
        kind=POST_IN_THREAD,
        key=key,
        payload=payload,
        account_id=conversation.account_id,
        conversation_id=conversation.id,
        channel_id=channel_id,
    )


def _first_message(session: Session, conversation_id: int) -> int | None:
    return session.scalar(
        select(Message.id)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.date.is_(None), Message.date, Message.id)
        .limit(1)
    )


def return_to_inbox(session: Session, conversation: Conversation, message_pk: int) -> bool:
    """A new email in an archived conversation brings it back to the inbox, in the store and in
    the mailbox (the usual unarchive write-back), and the parent says why. Once per email."""
    if not conversation.archived or conversation.deleted:
        return False
    conversation.archived = False
    audit.record(
        session,
        "system",
        "conversation.returned",
        account_id=conversation.account_id,
        conversation_id=conversation.id,
        message_id=message_pk,
    )
    outbox.enqueue(
        session,
        kind=UNARCHIVE_KIND,
        key=f"{UNARCHIVE_KIND}:{conversation.id}:returned:{message_pk}",
        payload={"conversation_id": conversation.id},
        account_id=conversation.account_id,
        conversation_id=conversation.id,
    )
    return True


def announce_ingested(session: Session, account: Account, result: IngestResult) -> None:
    """Queue the Slack posts for a newly ingested message.

    A new conversation gets a parent message (its card) and every email, the first included, is
    posted in the thread with its text. An email from outside in a conversation whose parent is
    already in the channel is a follow-up: it is also shown in the channel (reply_broadcast,
    unless the account turned that off) and, if the conversation was archived, brings it back
    to the inbox. Sent mail (from Slack or a mail client) is posted in the thread, never
    broadcast. Nothing for a message seen before or for history older than
    `account.announce_after`.
    """
    if not result.created or not account.channel_id:
        return
    message, conversation = result.facts, result.conversation
    if conversation.merged_into_id is not None:
        target = session.get(Conversation, conversation.merged_into_id)
        if target is None:
            return
        conversation = target
    if result.merged_conversation_ids:
        refresh_parent(session, conversation.id)
    if not _is_history(account, message):
        # Team triage (issue 16): status, "waiting since" and snooze follow new mail.
        from bot.inbox.triage import on_ingested

        on_ingested(session, conversation, result.message_pk, message)
    if _is_history(account, message):
        if conversation.slack_thread is not None and conversation.slack_thread.ts is not None:
            refresh_parent(session, conversation.id)  # counts and dates moved on
        return
    pk = result.message_pk
    existing = conversation.slack_thread
    had_thread = existing is not None
    parent_posted = existing is not None and existing.ts is not None
    thread = ensure_parent(session, conversation, account.channel_id)
    first = _first_message(session, conversation.id)
    if not had_thread and first is not None and first != pk:
        # The thread starts now for a conversation whose start was history: its first email
        # heads the thread too.
        enqueue_email_post(session, conversation, first, thread.channel_id)
    direction = session.scalar(select(Message.direction).where(Message.id == pk))
    followup = parent_posted and direction == Direction.INBOUND and not message.sent_by
    if followup:
        return_to_inbox(session, conversation, pk)
    enqueue_email_post(
        session,
        conversation,
        pk,
        thread.channel_id,
        broadcast=followup and broadcasts_followups(account),
    )
    if had_thread:
        refresh_parent(session, conversation.id)


def enqueue_attachments(
    session: Session, conversation: Conversation, message_id: int, channel_id: str
) -> None:
    outbox.enqueue(
        session,
        kind=UPLOAD_ATTACHMENTS,
        key=files_key(message_id),
        payload={"message_id": message_id},
        account_id=conversation.account_id,
        conversation_id=conversation.id,
        channel_id=channel_id,
    )


def refresh_parent(session: Session, conversation_id: int) -> None:
    """Queue a `chat.update` of the parent so it shows the conversation's current state.

    A still-pending update renders the state when it runs, so it covers this change too and
    nothing new is queued; otherwise the key carries the next version number, so each change
    updates once. The handler skips the call when the rendering did not change.
    """
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.slack_thread is None:
        return
    pending = session.scalar(
        select(Outbox.id).where(
            Outbox.kind == UPDATE_PARENT,
            Outbox.conversation_id == conversation_id,
            Outbox.status == OutboxStatus.PENDING,
        )
    )
    if pending is not None:
        return
    version = session.scalar(
        select(func.count())
        .select_from(Outbox)
        .where(Outbox.kind == UPDATE_PARENT, Outbox.conversation_id == conversation_id)
    )
    outbox.enqueue(
        session,
        kind=UPDATE_PARENT,
        key=f"{UPDATE_PARENT}:{conversation_id}:{int(version or 0) + 1}",
        payload={"conversation_id": conversation_id},
        account_id=conversation.account_id,
        conversation_id=conversation_id,
        channel_id=conversation.slack_thread.channel_id,
    )


def thread_note(
    session: Session,
    conversation: Conversation,
    *,
    key: str,
    text: str,
    blocks: list[dict[str, object]],
    created_by: str | None = None,
) -> None:
    """Queue a note in the conversation's thread (only when it has one)."""
    thread = conversation.slack_thread
    if thread is None:
        return
    outbox.enqueue(
        session,
        kind=POST_IN_THREAD,
        key=key,
        payload={"conversation_id": conversation.id, "text": text, "blocks": blocks, "key": key},
        account_id=conversation.account_id,
        conversation_id=conversation.id,
        channel_id=thread.channel_id,
        created_by=created_by,
    )
