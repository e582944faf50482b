"""Submitting the compose modal: one durable "mail.send" row per Message-ID.

The Message-ID is chosen when the modal opens and travels in private_metadata, so a double
submit or a Slack retry enqueues the same key and sends once. If mail arrived in the conversation
after the modal opened, the row is written HELD and the person decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.blocks.compose import Arrived
from bot.compose.drafts import (
    BodySource,
    DraftError,
    arrived_since,
    build_body_from,
    live_conversation,
    load_body_source,
)
from bot.compose.form import ComposeMeta, Submission, addresses_to_json
from bot.compose.signature import with_signature
from bot.mail.richtext import rich_text_to_html_fragment, rich_text_to_mrkdwn, rich_text_to_text
from bot.store import audit, outbox
from bot.store.models import Account, Message, Outbox, OutboxStatus, utcnow

SEND_KIND = "mail.send"
FOREIGN = "This form names mail of another mailbox, so it was not sent."


def send_key(message_id: str) -> str:
    return f"{SEND_KIND}:{message_id}"


@dataclass
class SubmitResult:
    outbox_id: int | None = None
    held: list[Arrived] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # block_id → message
    problem: str | None = None  # not tied to a field


@dataclass
class SendInputs:
    """What a send needs from the store, read (in a read-only session) before the ack."""

    conversation_id: int | None
    arrived: list[Arrived]
    body: BodySource


@dataclass
class PreparedSend:
    """A send row ready to write: built without a session, written after the ack."""

    key: str
    payload: dict[str, Any]
    account_id: int
    conversation_id: int | None
    channel_id: str | None
    held: list[Arrived]


def load_send(
    session: Session, meta: ComposeMeta, *, user_id: str, account: Account
) -> SubmitResult | SendInputs:
    """Reads only. A SubmitResult when the answer is already known (a double submit, or a
    problem); else what `prepare_send` needs.

    The conversation and the answered message come from private_metadata, which a forged
    request can set: both must belong to the sending account (whose channel the caller
    checked), so nobody mails out another mailbox's email (security review #8)."""
    key = send_key(meta.message_id)
    existing = session.scalar(select(Outbox).where(Outbox.key == key))
    if existing is not None:  # a double submit or a Slack retry: the first one stands
        held_before = existing.status == OutboxStatus.HELD and existing.created_by == user_id
        return SubmitResult(
            outbox_id=existing.id, held=[] if not held_before else _held_of(session, existing)
        )
    conversation_id = meta.conversation_id
    arrived: list[Arrived] = []
    if meta.mode == "new" and (conversation_id is not None or meta.source_message is not None):
        return SubmitResult(problem=FOREIGN)
    if conversation_id is not None:
        conv = live_conversation(session, conversation_id)
        if conv is None:
            return SubmitResult(problem="This conversation no longer exists.")
        if conv.account_id != account.id:
            return SubmitResult(problem=FOREIGN)
        conversation_id = conv.id
        arrived = arrived_since(
            session, conv.id, meta.newest_seen, exclude_message_id=meta.message_id
        )
    if meta.source_message is not None:
        source = session.get(Message, meta.source_message)
        if source is not None and source.account_id != account.id:
            return SubmitResult(problem=FOREIGN)
        if meta.mode != "new" and conversation_id is None:
            return SubmitResult(problem=FOREIGN)  # a reply or forward names its conversation
        # The email answered or forwarded must also be part of that conversation (a merge
        # moves messages, so it is the message's live conversation that counts).
        home = live_conversation(session, source.conversation_id) if source else None
        if source is None or home is None or home.id != conversation_id:
            return SubmitResult(problem="That email is not part of this conversation.")
    try:
        body = load_body_source(session, meta.mode, meta.source_message)
    except DraftError as exc:
        return SubmitResult(problem=str(exc))
    return SendInputs(conversation_id, arrived, body)


def prepare_send(
    inputs: SendInputs,
    meta: ComposeMeta,
    sub: Submission,
    *,
    user_id: str,
    account: Account,
    signature: dict[str, Any] | None = None,
) -> SubmitResult | PreparedSend:
    """No session: builds the body (parses the original, CPU work of unbounded length).
    `signature` (rendered rich text, bot/compose/signature.py) goes below the typed text, in
    both the HTML and the text part."""
    signed = with_signature(sub.body_rich, signature)
    try:
        built = build_body_from(
            inputs.body,
            rich_text_to_text(signed, sub.names),
            quote=sub.quote,
            typed_html=rich_text_to_html_fragment(signed, sub.names),
        )
    except DraftError as exc:
        return SubmitResult(problem=str(exc))
    payload: dict[str, Any] = {
        "mode": meta.mode,
        "message_id": meta.message_id,
        "conversation_id": inputs.conversation_id,
        "in_reply_to_message_pk": meta.source_message if meta.mode != "new" else None,
        "forward_message_pk": meta.source_message if meta.mode == "forward" else None,
        "newest_seen": meta.newest_seen,
        "slack_user": user_id,
        "from": {"name": account.display_name or "", "email": account.email},
        "to": addresses_to_json(sub.to),
        "cc": addresses_to_json(sub.cc),
        "bcc": addresses_to_json(sub.bcc),
        "subject": sub.subject,
        "body": built.text,
        "html": built.html,
        # What was typed, for the "sent" post in the thread (same formatting, as mrkdwn; the
        # signature, the same on every email, is left out).
        "mrkdwn": rich_text_to_mrkdwn(sub.body_rich, sub.names),
        "in_reply_to": built.in_reply_to,
        "references": built.references,
        "slack_files": [
            {"id": f.id, "name": f.name, "mimetype": f.mimetype, "url": f.url} for f in sub.files
        ],
        "send_anyway": False,
    }
    return PreparedSend(
        key=send_key(meta.message_id),
        payload=payload,
        account_id=account.id,
        conversation_id=inputs.conversation_id,
        channel_id=account.channel_id,
        held=inputs.arrived,
    )


def enqueue_send(session: Session, prepared: PreparedSend, *, user_id: str) -> SubmitResult:
    """The one write: a short transaction (idempotent by Message-ID)."""
    row = outbox.enqueue(
        session,
        kind=SEND_KIND,
        key=prepared.key,
        payload=prepared.payload,
        account_id=prepared.account_id,
        conversation_id=prepared.conversation_id,
        channel_id=prepared.channel_id,
        created_by=user_id,
        status=OutboxStatus.HELD if prepared.held else OutboxStatus.PENDING,
    )
    audit.record(
        session,
        user_id,
        "mail.send.queued",
        account_id=prepared.account_id,
        conversation_id=prepared.conversation_id,
        details={
            "mode": prepared.payload["mode"],
            "message_id": prepared.payload["message_id"],
            "held": bool(prepared.held),
        },
    )
    held = prepared.held if row.status == OutboxStatus.HELD else []
    return SubmitResult(outbox_id=row.id, held=held)


def submit(
    session: Session,
    meta: ComposeMeta,
    sub: Submission,
    *,
    user_id: str,
    account: Account,
    signature: dict[str, Any] | None = None,
) -> SubmitResult:
    """All three steps in one session (the CLI and tests; Slack listeners split them around
    their ack). Access to the sending account was checked by the caller."""
    inputs = load_send(session, meta, user_id=user_id, account=account)
    if isinstance(inputs, SubmitResult):
        return inputs
    prepared = prepare_send(
        inputs, meta, sub, user_id=user_id, account=account, signature=signature
    )
    if isinstance(prepared, SubmitResult):
        return prepared
    return enqueue_send(session, prepared, user_id=user_id)


def _held_of(session: Session, row: Outbox) -> list[Arrived]:
    if row.conversation_id is None:
        return []
    return arrived_since(
        session,
        row.conversation_id,
        row.payload.get("newest_seen"),
        exclude_message_id=str(row.payload.get("message_id")),
    )


def release_held(session: Session, outbox_id: int, user_id: str) -> Outbox | None:
    """ "Send anyway": a held send becomes due now and skips the new-mail check."""
    row = session.get(Outbox, outbox_id)
    if row is None or row.kind != SEND_KIND or row.status != OutboxStatus.HELD:
        return None
    row.payload = {**row.payload, "send_anyway": True}
    row.status = OutboxStatus.PENDING
    row.attempts = 0
    row.next_attempt_at = utcnow()
    audit.record(
        session,
        user_id,
        "mail.send.anyway",
        account_id=row.account_id,
        conversation_id=row.conversation_id,
        details={"message_id": row.payload.get("message_id")},
    )
    return row


def retry_failed(session: Session, outbox_id: int, user_id: str) -> Outbox | None:
    """Retry a failed send (e.g. after the SMTP password was fixed). Same Message-ID: the
    write-back recognises a copy already in Sent and does not send twice."""
    row = session.get(Outbox, outbox_id)
    if row is None or row.kind != SEND_KIND or row.status != OutboxStatus.FAILED:
        return None
    row.status = OutboxStatus.PENDING
    row.attempts = 0
    row.next_attempt_at = utcnow()
    audit.record(
        session,
        user_id,
        "mail.send.retry",
        account_id=row.account_id,
        conversation_id=row.conversation_id,
        details={"message_id": row.payload.get("message_id")},
    )
    return row
