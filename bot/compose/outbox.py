"""The "mail.send" outbox handler: build the MIME, send it, say so in the Slack thread.

"Sent" is posted only after the server accepted the message. A failure a person must fix (wrong
password, refused recipient) is posted with a Retry button and the row fails; a transient one is
retried with backoff and posted only when the dispatcher gives up. The Message-ID was chosen
before the first attempt, and `send_mail` skips SMTP when that Message-ID is already in Sent, so
a retry after a crash never sends twice.

Two more guards (docs/outbox.md): the row's lease is checked right before SMTP/the API send,
so a worker whose lease ran out never sends; and "the server accepted" is written to the row
(`result.accepted`) in its own transaction right after the server accepts, before the sent copy
is stored or appended, so a retry after a bookkeeping failure only finishes the bookkeeping.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.blocks import compose as cb
from bot.blocks.text import escape_mrkdwn, mrkdwn
from bot.compose.drafts import arrived_since, live_conversation, newest_message_id
from bot.compose.files import DownloadError, download
from bot.compose.form import addresses_from_json
from bot.compose.submit import SEND_KIND
from bot.mail.attachments import extract_attachments
from bot.mail.compose import Draft, HeaderError, OutgoingAttachment, build_mime, envelope_recipients
from bot.mail.types import Address
from bot.outbox.dispatch import (
    MAX_ATTEMPTS,
    LeaseLost,
    OutboxContext,
    PermanentFailure,
    Registry,
    RetryLater,
)
from bot.providers.errors import (
    AuthError,
    ConfigError,
    MessageRejected,
    ProviderError,
    TransientError,
)
from bot.store import audit, outbox
from bot.store.db import session_scope
from bot.store.models import (
    Account,
    Attachment,
    Conversation,
    Message,
    MessageRaw,
    Outbox,
    OutboxStatus,
    Provider,
    utcnow,
)

log = logging.getLogger(__name__)

# outbox.result key: the server accepted the email (written before any bookkeeping).
ACCEPTED = "accepted"

POST_IN_THREAD = "slack.post_in_thread"
DM_KIND = "slack.dm"  # the Slack posting part handles it (text and blocks)


def register(registry: Registry) -> None:
    registry.register(SEND_KIND, handle_send)


# -- posting results ---------------------------------------------------------------------------


def _thread_ready(session: Session, conversation_id: int | None) -> Conversation | None:
    if conversation_id is None:
        return None
    conv = live_conversation(session, conversation_id)
    if conv is None or conv.slack_thread is None:
        return None
    return conv


def _post(
    session: Session,
    row: Outbox,
    conversation_id: int | None,
    key: str,
    text: str,
    blocks: list[dict[str, Any]],
    *,
    tell_author: bool = False,
) -> None:
    """Into the conversation's thread when it has one, else a DM to the person who wrote it.
    `tell_author`: the thread post names them without a mention, so they get a DM too."""
    conv = _thread_ready(session, conversation_id)
    if conv is not None and conv.slack_thread is not None:
        outbox.enqueue(
            session,
            kind=POST_IN_THREAD,
            key=key,
            payload={"conversation_id": conv.id, "text": text, "blocks": blocks, "key": key},
            account_id=conv.account_id,
            conversation_id=conv.id,
            channel_id=conv.slack_thread.channel_id,
        )
        author = row.payload.get("slack_user")
        if tell_author and author:
            from bot.blocks.search import thread_url

            url = thread_url(conv.slack_thread.channel_id, conv.slack_thread.ts)
            outbox.enqueue(
                session,
                kind=DM_KIND,
                key=key + ":author",
                payload={"user_id": author, **cb.author_dm(text, url)},
                created_by=str(author),
            )
        return
    user = row.payload.get("slack_user")
    if user:
        outbox.enqueue(
            session,
            kind=DM_KIND,
            key=key + ":dm",
            payload={"user_id": user, "text": text, "blocks": blocks},
            created_by=user,
        )


# -- the send ---------------------------------------------------------------------------------


def _forward_attachments(session: Session, message_pk: int | None) -> list[OutgoingAttachment]:
    if message_pk is None:
        return []
    raw = session.get(MessageRaw, message_pk)
    rows = session.scalars(
        select(Attachment).where(Attachment.message_id == message_pk).order_by(Attachment.id)
    ).all()
    if raw is None or not rows:
        return []
    # One parse and one walk for all of them (a re-parse per attachment is O(parts x size)).
    try:
        parts = extract_attachments(raw.raw, [a.part_index for a in rows])
    except Exception as exc:  # a broken message must not block the forward itself
        log.warning("attachments of message %s unreadable: %s", message_pk, type(exc).__name__)
        parts = {}
    out = []
    for att in rows:
        data = parts.get(att.part_index)
        if data is None:
            log.warning("attachment %s of message %s unreadable", att.id, message_pk)
            continue
        out.append(
            OutgoingAttachment(
                filename=att.filename or "attachment",
                content_type=att.content_type or "application/octet-stream",
                data=data,
            )
        )
    return out


def _author_name(ctx: OutboxContext, row: Outbox) -> str:
    """The display name of the person who wrote the email (a cached Slack lookup)."""
    from bot.outbox.slack_handlers import user_names

    user = str(row.payload.get("slack_user") or "")
    return user_names(ctx.slack, [user]).get(user, "") if user else ""


def _hold_if_new_mail(session: Session, row: Outbox, author: str = "") -> bool:
    """New mail since the modal opened: hold the send and ask in the thread."""
    p = row.payload
    if p.get("send_anyway") or p.get("conversation_id") is None:
        return False
    conv = live_conversation(session, int(p["conversation_id"]))
    if conv is None:
        return False
    arrived = arrived_since(
        session, conv.id, p.get("newest_seen"), exclude_message_id=str(p.get("message_id"))
    )
    if not arrived:
        return False
    fresh = session.get(Outbox, row.id)
    if fresh is None:
        return False
    fresh.status = OutboxStatus.HELD
    fresh.lease_owner = None
    fresh.lease_expires_at = None
    text, blocks = cb.held_post(author, arrived, row.id)
    newest = newest_message_id(session, conv.id)
    key = f"compose.held:{p['message_id']}:{newest}"
    _post(session, row, conv.id, key, text, blocks, tell_author=True)
    return True


def _fail(ctx: OutboxContext, row: Outbox, error: str) -> PermanentFailure:
    """Post the error with a Retry button (once per attempt) and fail the row."""
    p = row.payload
    attempt = row.lease_expires_at.timestamp() if row.lease_expires_at else row.attempts
    author = _author_name(ctx, row)  # Slack, before the transaction
    with session_scope(ctx.services.session_factory) as session:
        text, blocks = cb.failed_post(author, error, row.id)
        key = f"compose.failed:{p['message_id']}:{attempt}"
        _post(session, row, p.get("conversation_id"), key, text, blocks, tell_author=True)
        audit.record(
            session,
            "system",
            "mail.send.failed",
            account_id=row.account_id,
            conversation_id=p.get("conversation_id"),
            details={"message_id": p.get("message_id"), "error": error[:500]},
        )
    return PermanentFailure(error)


def _addr(value: Any) -> Address:
    value = value or {}
    return Address(str(value.get("name") or ""), str(value.get("email") or ""))


def _mark_accepted(ctx: OutboxContext, row: Outbox, info: dict[str, Any]) -> dict[str, Any]:
    """Record "the server accepted it" on the row, in its own short transaction, before any
    bookkeeping can fail: a retry that finds it never sends again (finding #5)."""
    marker = {**info, "at": utcnow().isoformat()}
    for attempt in range(3):
        try:
            with session_scope(ctx.services.session_factory) as session:
                fresh = session.get(Outbox, row.id)
                if fresh is not None:
                    fresh.result = {**(fresh.result or {}), ACCEPTED: marker}
            break
        except Exception:
            # The store copy written next still guards against a resend; keep going.
            log.exception("outbox row %s: recording the accepted send failed", row.id)
            time.sleep(0.2 * (attempt + 1))
    row.result = {**(row.result or {}), ACCEPTED: marker}
    return marker


API_SEND_RECHECK_SECONDS = 60.0


def handle_send(ctx: OutboxContext, row: Outbox) -> dict[str, Any] | None:
    p = row.payload
    services = ctx.services
    # Set when the server accepted this email (this try or an earlier one): from then on only
    # the bookkeeping is left, and no failure may lead to a second send or a "Not sent" post.
    accepted: dict[str, Any] | None = (row.result or {}).get(ACCEPTED)

    def fail(error: str) -> Exception:
        if accepted is not None:
            return RetryLater(f"sent; saving the sent copy is pending: {error}")
        return _fail(ctx, row, error)

    author = _author_name(ctx, row) if accepted is None else ""  # Slack, before the session
    with session_scope(services.session_factory) as session:
        if accepted is None and _hold_if_new_mail(session, row, author):
            return None
        account = session.get(Account, row.account_id) if row.account_id else None
        if account is None:
            raise _fail(ctx, row, "The mailbox this email was written from was removed.")
        session.expunge(account)
        attachments = _forward_attachments(session, p.get("forward_message_pk"))
    token = ctx.slack.token or ""
    for f in p.get("slack_files") or []:
        try:
            got = download(
                str(f.get("url") or ""),
                token,
                name=str(f.get("name")),
                mimetype=str(f.get("mimetype")),
                files_url=ctx.services.settings.slack_files_url,
            )
        except DownloadError as exc:
            if exc.transient and row.attempts < MAX_ATTEMPTS:
                raise RetryLater(str(exc)) from exc
            raise fail(f"An attachment could not be read from Slack: {exc}") from exc
        attachments.append(OutgoingAttachment(got.name, got.mimetype, got.data))
    draft = Draft(
        from_=_addr(p.get("from")),
        to=addresses_from_json(p.get("to")),
        cc=addresses_from_json(p.get("cc")),
        bcc=addresses_from_json(p.get("bcc")),
        subject=str(p.get("subject") or ""),
        body=str(p.get("body") or ""),
        message_id=str(p["message_id"]),
        in_reply_to=p.get("in_reply_to"),
        references=list(p.get("references") or []),
        attachments=attachments,
        html_body=p.get("html") or None,
    )
    try:
        # Gmail / Microsoft 365 take the recipients from the headers: Bcc must be in them.
        raw = build_mime(draft, keep_bcc=account.provider in (Provider.GMAIL, Provider.GRAPH))
    except HeaderError as exc:
        raise fail(f"The email cannot be built: {exc}") from exc
    rcpt = envelope_recipients(draft)
    from bot.sync.writeback import send_mail  # written by the sync part

    def on_accepted(info: dict[str, Any]) -> None:
        nonlocal accepted
        accepted = _mark_accepted(ctx, row, info)

    def before_send() -> None:
        ctx.check_lease(row)  # a worker whose lease ran out must not send (finding #6)

    try:
        if account.provider in (Provider.GMAIL, Provider.GRAPH):
            from bot.sync.api_sync import send_mail_api

            # Gmail and Microsoft 365 keep their own Sent copy: no SMTP, no APPEND.
            send_mail_api(
                services,
                account,
                raw,
                draft.message_id,
                sent_by=str(p.get("slack_user") or "") or None,
                accepted=accepted,
                before_send=before_send,
                on_accepted=on_accepted,
            )
        else:
            send_mail(
                services,
                account,
                raw,
                draft.from_.email,
                rcpt,
                draft.message_id,
                sent_by=str(p.get("slack_user") or "") or None,
                accepted=accepted is not None,
                before_send=before_send,
                on_accepted=on_accepted,
            )
    except (LeaseLost, RetryLater, PermanentFailure):
        raise
    except MessageRejected as exc:
        if exc.delivered_to:
            # Some recipients got it: sending again would duplicate it for them.
            _record_sent(ctx, row, draft, partial=str(exc))
            return {"sent": True, "refused": sorted(exc.refused)}
        raise fail(str(exc)) from exc
    except (AuthError, ConfigError) as exc:
        raise fail(str(exc)) from exc
    except (TransientError, ProviderError) as exc:
        if row.attempts >= MAX_ATTEMPTS:
            raise fail(f"{exc} (gave up after {row.attempts} tries)") from exc
        # An API send that failed with 429/5xx may have gone out: the next try checks Sent
        # first, after a minute, so Exchange has filed its (late) Sent Items copy by then.
        api = account.provider in (Provider.GMAIL, Provider.GRAPH)
        raise RetryLater(str(exc), API_SEND_RECHECK_SECONDS if api else None) from exc
    except Exception as exc:
        if accepted is None:
            raise
        # Sent: a failure from here on (the store, Sent) is bookkeeping to finish, never a
        # reason to send again.
        log.exception("outbox row %s: sent, but the bookkeeping failed", row.id)
        raise RetryLater(f"sent; saving the sent copy is pending: {type(exc).__name__}") from exc
    partial = (accepted or {}).get("partial")
    _record_sent(ctx, row, draft, partial=partial or None)
    if partial:
        return {"sent": True, "refused": list((accepted or {}).get("refused") or [])}
    return {"sent": True}


def _record_sent(ctx: OutboxContext, row: Outbox, draft: Draft, partial: str | None = None) -> None:
    from bot.outbox.slack_handlers import user_names

    p = row.payload
    user = str(p.get("slack_user") or "")
    # Looked up before the session (no network inside a transaction); cached.
    name = user_names(ctx.slack, [user]).get(user, "") if user else ""
    with session_scope(ctx.services.session_factory) as session:
        conversation_id = p.get("conversation_id")
        sent_copy = session.scalar(
            select(Message).where(
                Message.account_id == row.account_id, Message.message_id == draft.message_id
            )
        )
        if p.get("mode") == "new" and sent_copy is not None:
            conversation_id = sent_copy.conversation_id
            conv = live_conversation(session, conversation_id)
            account = session.get(Account, row.account_id)
            if conv is not None and account is not None and account.channel_id:
                # The sent copy was ingested as ours (announce skips those): a new
                # conversation still needs its parent post so the thread exists.
                from bot.inbox.announce import ensure_parent

                ensure_parent(session, conv, account.channel_id)
        conv = _thread_ready(session, conversation_id)
        if sent_copy is not None and conv is not None and conv.slack_thread is not None:
            # The sent email itself, in full, in the thread (the same post the sent copy's
            # ingest queued: one key, one post).
            from bot.inbox.announce import enqueue_email_post

            enqueue_email_post(session, conv, sent_copy.id, conv.slack_thread.channel_id)
            if partial:
                text = f"Some recipients refused this email: {escape_mrkdwn(partial)}"
                blocks = [{"type": "context", "elements": [mrkdwn(text)]}]
                _post(session, row, conv.id, f"compose.partial:{draft.message_id}", text, blocks)
        else:
            text, blocks = cb.sent_post(
                name, [a.email for a in draft.to], draft.subject, str(p.get("mrkdwn") or "")
            )
            if partial:
                text += f" (some recipients refused: {escape_mrkdwn(partial)})"
                blocks.append({"type": "context", "elements": [mrkdwn(escape_mrkdwn(partial))]})
            _post(session, row, conversation_id, f"compose.sent:{draft.message_id}", text, blocks)
        audit.record(
            session,
            user or "system",
            "mail.sent",
            account_id=row.account_id,
            conversation_id=conversation_id,
            message_id=sent_copy.id if sent_copy else None,
            details={"message_id": draft.message_id, "mode": p.get("mode")},
        )
