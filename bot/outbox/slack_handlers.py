"""Outbox handlers that post to Slack: parent messages, thread replies, parent updates,
attachment uploads and DMs.

Never twice: each handler checks its durable marker (SlackThread.ts, SlackPost.key) before
calling Slack and writes it right after, in its own short transaction. The window between the
Slack call and that write is the only place a crash can double a post. Posts are paced per
channel by the dispatcher; a 429 or a 5xx becomes RetryLater, so a row is delayed, never lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.blocks.conversation import (
    ConversationCard,
    attachments_note,
    minimal_parent_message,
    parent_message,
    thread_email_message,
)
from bot.inbox.announce import (
    DM,
    POST_IN_THREAD,
    POST_PARENT,
    UPDATE_PARENT,
    UPLOAD_ATTACHMENTS,
    enqueue_attachments,
    ensure_parent,
    files_key,
)
from bot.inbox.render import (
    card_user_ids,
    conversation_card,
    email_card,
    with_names,
)
from bot.mail.attachments import extract_attachments
from bot.outbox.dispatch import OutboxContext, PermanentFailure, Registry, RetryLater
from bot.store.db import session_scope
from bot.store.models import (
    Account,
    Conversation,
    Message,
    MessageRaw,
    Outbox,
    OutboxStatus,
    SlackPost,
    SlackThread,
    utcnow,
)

log = logging.getLogger(__name__)

# Attachments above this are listed by name and size instead of uploaded.
UPLOAD_LIMIT_BYTES = 10 * 1024 * 1024
FILES_PER_UPLOAD = 10
# Files uploaded into the thread per email; the rest are listed by name (2,000 tiny parts must
# not become 2,000 files in the channel).
MAX_FILES_PER_EMAIL = 20
PARENT_WAIT_SECONDS = 2.0
# Slack errors that a later try can get past.
TRANSIENT_ERRORS = {
    "ratelimited",
    "rate_limited",
    "service_unavailable",
    "fatal_error",
    "internal_error",
    "request_timeout",
}
# Errors meaning Slack refused the payload itself: a simpler rendering can get through.
PAYLOAD_ERRORS = {"invalid_blocks", "invalid_blocks_format", "invalid_arguments", "msg_too_long"}
NAME_TTL_SECONDS = 600.0


def register(registry: Registry) -> None:
    registry.register(POST_PARENT, post_parent, paced_by_channel=True)
    registry.register(POST_IN_THREAD, post_in_thread, paced_by_channel=True)
    registry.register(UPDATE_PARENT, update_parent, paced_by_channel=True)
    registry.register(UPLOAD_ATTACHMENTS, upload_attachments, paced_by_channel=True)
    registry.register(DM, dm)


# -- calling Slack --------------------------------------------------------------------------


def _retry_after(headers: Any) -> float | None:
    for name, value in dict(headers or {}).items():
        if str(name).lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return None
    return None


class SlackRefused(PermanentFailure):
    """Slack answered with an error a retry cannot fix; `error` is Slack's error code."""

    def __init__(self, error: str) -> None:
        super().__init__(f"Slack refused: {error}")
        self.error = error


def call_slack(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call a WebClient method, sorting failures into RetryLater and PermanentFailure."""
    try:
        return fn(**kwargs)
    except SlackApiError as exc:
        response = exc.response
        status = int(getattr(response, "status_code", 200) or 200)
        error = str(response.get("error") if hasattr(response, "get") else "") or "unknown"
        if status == 429 or error in ("ratelimited", "rate_limited"):
            raise RetryLater(
                f"Slack rate limit ({status})", _retry_after(response.headers)
            ) from exc
        if status >= 500 or error in TRANSIENT_ERRORS:
            raise RetryLater(f"Slack {status} {error}") from exc
        raise SlackRefused(error) from exc
    except (OSError, TimeoutError, ValueError) as exc:
        # Connection trouble, or an HTML error page where JSON was expected (a Slack outage).
        raise RetryLater(f"Slack unreachable: {type(exc).__name__}: {exc}") from exc


_names: dict[str, tuple[str, float]] = {}
_names_lock = threading.Lock()


def _written_mrkdwn(session: Any, email: Message) -> str:
    """What the person wrote in Slack for this sent email, as mrkdwn, from its send row (the
    row is keyed by the Message-ID chosen before sending); "" when there is none."""
    from bot.compose.submit import send_key

    payload = session.scalar(select(Outbox.payload).where(Outbox.key == send_key(email.message_id)))
    return str((payload or {}).get("mrkdwn") or "")


def user_names(slack: Any, user_ids: Iterable[str]) -> dict[str, str]:
    """Display names of Slack users (cached for a while), shown as plain text where the app
    says who did something: a mention would notify them of their own action. A user Slack
    cannot describe right now is left out (the builders say "a teammate")."""
    out: dict[str, str] = {}
    now = time.monotonic()
    for uid in sorted(set(user_ids)):
        with _names_lock:
            cached = _names.get(uid)
        if cached is not None and cached[1] > now:
            out[uid] = cached[0]
            continue
        try:
            user = slack.users_info(user=uid)["user"]
        except (SlackApiError, KeyError, TypeError, OSError, ValueError) as exc:
            log.info("no name for %s: %s", uid, type(exc).__name__)
            continue
        profile = user.get("profile") or {}
        name = str(
            profile.get("real_name")
            or user.get("real_name")
            or profile.get("display_name")
            or user.get("name")
            or ""
        )
        if name:
            out[uid] = name
            with _names_lock:
                _names[uid] = (name, now + NAME_TTL_SECONDS)
    return out


def _named(ctx: OutboxContext, card: ConversationCard) -> ConversationCard:
    ids = card_user_ids(card)
    return with_names(card, user_names(ctx.slack, ids)) if ids else card


def rendering_hash(message: dict[str, Any]) -> str:
    shown = {"text": message.get("text"), "blocks": message.get("blocks")}
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()


def _live(session: Session, conversation_id: int) -> Conversation | None:
    """The conversation, or the one it was merged into (its thread is where posts go now)."""
    conversation = session.get(Conversation, conversation_id)
    hops = 0
    while conversation is not None and conversation.merged_into_id is not None and hops < 10:
        conversation = session.get(Conversation, conversation.merged_into_id)
        hops += 1
    return conversation


def _parent_pending(session: Session, conversation_id: int) -> bool:
    status = session.scalar(
        select(Outbox.status).where(
            Outbox.kind == POST_PARENT,
            Outbox.conversation_id == conversation_id,
        )
    )
    return status in (OutboxStatus.PENDING, OutboxStatus.RUNNING)


class _NotReady(Exception):
    """Raised inside a transaction that must still commit (the parent post it queued)."""


def _thread_ready(session: Session, conversation: Conversation) -> SlackThread:
    """The posted parent of the conversation, or _NotReady after making sure it is queued."""
    thread = conversation.slack_thread
    if thread is not None and thread.ts is not None:
        return thread
    account = session.get(Account, conversation.account_id)
    channel = thread.channel_id if thread is not None else (account.channel_id if account else None)
    if not channel:
        raise PermanentFailure(f"conversation #{conversation.id} has no Slack channel")
    ensure_parent(session, conversation, channel)
    raise _NotReady()


def _wait_for_parent(parent_status: OutboxStatus | None = None) -> RetryLater:
    if parent_status == OutboxStatus.FAILED:
        # A parent Slack refused even in its minimal form (or a channel the app left): wait
        # like any failure, so the row ends FAILED after its attempts instead of never.
        return RetryLater("the thread's parent message could not be posted")
    return RetryLater(
        "the thread's parent message is not posted yet", PARENT_WAIT_SECONDS, counts=False
    )


# -- handlers -------------------------------------------------------------------------------


def post_parent(ctx: OutboxContext, row: Outbox) -> dict[str, Any] | None:
    conversation_id = int(row.payload["conversation_id"])
    with session_scope(ctx.services.session_factory) as session:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            return {"skipped": "conversation gone"}
        thread = conversation.slack_thread
        if thread is None:
            account = session.get(Account, conversation.account_id)
            if account is None or not account.channel_id:
                raise PermanentFailure(f"conversation #{conversation_id} has no Slack channel")
            thread = SlackThread(conversation_id=conversation_id, channel_id=account.channel_id)
            conversation.slack_thread = thread
        if thread.ts is not None:
            return {"ts": thread.ts, "already_posted": True}
        if conversation.merged_into_id is not None:
            return {"skipped": "merged before it was posted"}
        card = conversation_card(session, conversation)
        channel = thread.channel_id
    message = parent_message(_named(ctx, card))
    try:
        resp = call_slack(ctx.slack.chat_postMessage, channel=channel, **message)
    except SlackRefused as exc:
        if exc.error not in PAYLOAD_ERRORS:
            raise
        # Something in the email made the card unpostable: post the bare card, so the
        # conversation and every email waiting for its thread still reach Slack.
        log.warning(
            "parent of conversation %s refused (%s); posting it minimal", conversation_id, exc.error
        )
        message = minimal_parent_message(conversation_id, card.subject)
        resp = call_slack(ctx.slack.chat_postMessage, channel=channel, **message)
    ts = str(resp["ts"])
    with session_scope(ctx.services.session_factory) as session:
        thread = session.scalar(
            select(SlackThread).where(SlackThread.conversation_id == conversation_id)
        )
        if thread is None:
            thread = SlackThread(conversation_id=conversation_id, channel_id=channel)
            session.add(thread)
        thread.ts = ts
        thread.channel_id = str(resp.get("channel") or channel)
        thread.rendered_hash = rendering_hash(message)
        thread.posted_at = utcnow()
    return {"ts": ts, "channel": channel}


def _thread_or_wait(
    ctx: OutboxContext, conversation_id: int
) -> tuple[Conversation | None, SlackThread | None]:
    """(conversation, posted thread). Queues the parent (committed) and raises RetryLater when
    the parent is not posted yet, so replies always follow their parent."""
    with session_scope(ctx.services.session_factory) as session:
        conversation = _live(session, conversation_id)
        if conversation is None:
            return None, None
        try:
            return conversation, _thread_ready(session, conversation)
        except _NotReady:
            status = session.scalar(
                select(Outbox.status).where(Outbox.key == f"{POST_PARENT}:{conversation.id}")
            )
    raise _wait_for_parent(status)


def post_in_thread(ctx: OutboxContext, row: Outbox) -> dict[str, Any] | None:
    payload = row.payload
    key = str(payload.get("key") or row.key)
    message_id = payload.get("message_id")
    has_files = False
    with session_scope(ctx.services.session_factory) as session:
        done = session.scalar(select(SlackPost.ts).where(SlackPost.key == key))
    if done is not None:
        return {"ts": done, "already_posted": True}
    live, thread = _thread_or_wait(ctx, int(payload["conversation_id"]))
    if live is None or thread is None:
        return {"skipped": "conversation gone"}
    channel, thread_ts, conversation_id = thread.channel_id, thread.ts, live.id
    if message_id is not None:
        with session_scope(ctx.services.session_factory) as session:
            email = session.get(Message, int(message_id))
            if email is None:
                return {"skipped": "message gone"}
            first = session.scalar(
                select(Message.id)
                .where(Message.conversation_id == email.conversation_id)
                .order_by(Message.date.is_(None), Message.date, Message.id)
                .limit(1)
            )
            # The stored text (an HTML mail's was converted once, at parse): no conversion here.
            card = email_card(email, first=first == email.id)
            has_files = email.has_attachments
            if card.sent_by:
                card = dataclasses.replace(card, body_mrkdwn=_written_mrkdwn(session, email))
        if card.sent_by:
            names = user_names(ctx.slack, [card.sent_by])
            card = dataclasses.replace(card, sent_by_name=names.get(card.sent_by, ""))
        message = thread_email_message(card)
        if payload.get("broadcast"):
            # A follow-up: shown in the channel too, so nobody has to follow the thread.
            message["reply_broadcast"] = True
    else:
        message = {
            "text": str(payload.get("text") or " "),
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if payload.get("blocks"):
            message["blocks"] = payload["blocks"]
    if payload.get("broadcast"):
        message["reply_broadcast"] = True  # also shown in the channel
    resp = call_slack(ctx.slack.chat_postMessage, channel=channel, thread_ts=thread_ts, **message)
    ts = str(resp["ts"])
    with session_scope(ctx.services.session_factory) as session:
        session.add(
            SlackPost(
                key=key,
                conversation_id=conversation_id,
                message_id=int(message_id) if message_id is not None else None,
                channel_id=channel,
                ts=ts,
            )
        )
        if has_files and message_id is not None:
            conversation = session.get(Conversation, conversation_id)
            if conversation is not None:
                session.flush()
                enqueue_attachments(session, conversation, int(message_id), channel)
    return {"ts": ts, "channel": channel}


def update_parent(ctx: OutboxContext, row: Outbox) -> dict[str, Any] | None:
    conversation_id = int(row.payload["conversation_id"])
    with session_scope(ctx.services.session_factory) as session:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None or conversation.slack_thread is None:
            return {"skipped": "no Slack thread"}
        thread = conversation.slack_thread
        if thread.ts is None:
            if _parent_pending(session, conversation_id):
                raise RetryLater(
                    "the parent message is not posted yet", PARENT_WAIT_SECONDS, counts=False
                )
            return {"skipped": "parent never posted"}
        card = conversation_card(session, conversation)
        rendered_hash, channel, ts = thread.rendered_hash, thread.channel_id, thread.ts
    message = parent_message(_named(ctx, card))
    digest = rendering_hash(message)
    if digest == rendered_hash:
        return {"unchanged": True}
    try:
        call_slack(
            ctx.slack.chat_update,
            channel=channel,
            ts=ts,
            text=message["text"],
            blocks=message["blocks"],
        )
    except SlackRefused as exc:
        if exc.error not in PAYLOAD_ERRORS:
            raise
        minimal = minimal_parent_message(conversation_id, card.subject)
        call_slack(
            ctx.slack.chat_update,
            channel=channel,
            ts=ts,
            text=minimal["text"],
            blocks=minimal["blocks"],
        )
    with session_scope(ctx.services.session_factory) as session:
        stored = session.scalar(
            select(SlackThread).where(SlackThread.conversation_id == conversation_id)
        )
        if stored is not None:
            stored.rendered_hash = digest
            stored.updated_at = utcnow()
    return {"updated": ts}


def _record_progress(ctx: OutboxContext, row_id: int, progress: dict[str, Any]) -> None:
    """Write what is done so far into the row's result, in its own transaction: a retry after a
    429 part-way skips the batches that are already in Slack."""
    with session_scope(ctx.services.session_factory) as session:
        fresh = session.get(Outbox, row_id)
        if fresh is not None:
            fresh.result = {**(fresh.result or {}), **progress}


def upload_attachments(ctx: OutboxContext, row: Outbox) -> dict[str, Any] | None:
    """Upload an email's attachments into its thread: one parse of the message for all of them,
    at most MAX_FILES_PER_EMAIL files (the rest, and those over the size limit, are listed by
    name), in batches recorded in the row's result as they go."""
    message_id = int(row.payload["message_id"])
    key = files_key(message_id)
    with session_scope(ctx.services.session_factory) as session:
        if session.scalar(select(SlackPost.ts).where(SlackPost.key == key)) is not None:
            return {"already_posted": True}
        email = session.get(Message, message_id)
        if email is None:
            return {"skipped": "message gone"}
        email_conversation = email.conversation_id
        fresh = session.get(Outbox, row.id)
        progress: dict[str, Any] = dict((fresh.result if fresh is not None else row.result) or {})
    live, thread = _thread_or_wait(ctx, email_conversation)
    if live is None or thread is None:
        return {"skipped": "conversation gone"}
    channel, thread_ts, conversation_id = thread.channel_id, thread.ts, live.id
    too_big: list[tuple[str, int]] = []
    over_cap: list[str] = []
    wanted: list[tuple[int, str]] = []  # (part index, file name)
    with session_scope(ctx.services.session_factory) as session:
        email = session.get(Message, message_id)
        if email is None:
            return {"skipped": "message gone"}
        raw_row = session.get(MessageRaw, message_id)
        raw = raw_row.raw if raw_row is not None else None
        for att in sorted(email.attachments, key=lambda a: a.part_index):
            if att.inline:
                continue
            name = att.filename or f"attachment-{att.part_index}"
            if att.size > UPLOAD_LIMIT_BYTES or raw is None:
                too_big.append((name, att.size))
            elif len(wanted) >= MAX_FILES_PER_EMAIL:
                over_cap.append(name)
            else:
                wanted.append((att.part_index, name))
    # One parse, one walk, outside any database session.
    try:
        parts = extract_attachments(raw, [i for i, _ in wanted]) if raw and wanted else {}
    except Exception as exc:  # a broken message must not block the rest of the thread
        log.warning("attachments of message %s unreadable: %s", message_id, type(exc).__name__)
        parts = {}
    uploads: list[dict[str, Any]] = []
    for index, name in wanted:
        data = parts.get(index)
        if data is None:
            too_big.append((name, 0))
        elif len(data) > UPLOAD_LIMIT_BYTES:
            too_big.append((name, len(data)))
        else:
            uploads.append({"content": data, "filename": name, "title": name})
    if not uploads and not too_big and not over_cap:
        return {"skipped": "no attachments"}
    done: set[int] = {int(b) for b in progress.get("batches_done") or []}
    file_ids: list[str] = [str(f) for f in progress.get("files") or []]
    for batch_no, start in enumerate(range(0, max(len(uploads), 1), FILES_PER_UPLOAD)):
        if batch_no in done:
            continue
        batch = uploads[start : start + FILES_PER_UPLOAD]
        first = batch_no == 0
        note = attachments_note(
            [u["filename"] for u in batch],
            too_big if first else [],
            UPLOAD_LIMIT_BYTES,
            over_cap if first else None,
        )
        if batch:
            resp = call_slack(
                ctx.slack.files_upload_v2,
                file_uploads=batch,
                channel=channel,
                thread_ts=thread_ts,
                initial_comment=note,
            )
            file_ids += [str(f.get("id")) for f in resp.get("files") or [] if isinstance(f, dict)]
        else:
            call_slack(
                ctx.slack.chat_postMessage,
                channel=channel,
                thread_ts=thread_ts,
                text=note,
                unfurl_links=False,
                unfurl_media=False,
            )
        done.add(batch_no)
        _record_progress(ctx, row.id, {"batches_done": sorted(done), "files": file_ids})
    with session_scope(ctx.services.session_factory) as session:
        session.add(
            SlackPost(
                key=key,
                conversation_id=conversation_id,
                message_id=message_id,
                channel_id=channel,
                ts=str(thread_ts),
            )
        )
    return {
        "files": file_ids,
        "batches_done": sorted(done),
        "not_uploaded": [n for n, _ in too_big] + over_cap,
    }


def dm(ctx: OutboxContext, row: Outbox) -> dict[str, Any] | None:
    """A direct message from the app (e.g. "your reply could not be sent")."""
    user_id = str(row.payload["user_id"])
    opened = call_slack(ctx.slack.conversations_open, users=user_id)
    channel = str((opened.get("channel") or {}).get("id") or user_id)
    message: dict[str, Any] = {"text": str(row.payload.get("text") or " ")}
    if row.payload.get("blocks"):
        message["blocks"] = row.payload["blocks"]
    resp = call_slack(
        ctx.slack.chat_postMessage,
        channel=channel,
        unfurl_links=False,
        unfurl_media=False,
        **message,
    )
    return {"ts": str(resp["ts"]), "channel": channel}
