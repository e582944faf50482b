"""Typing in a conversation's Slack thread: the message becomes a draft its author decides on.

A person's message in the thread of a conversation's parent post is stored server-side (text,
the event's rich_text blocks, files, author, channel + ts) and its author is asked, privately,
what it is: a reply (sent through the same durable "mail.send" row as the modal, so threading
headers, the held-send guard and "sent only once the server accepted it" are the same), a reply
with edits (the modal, pre-filled), or an internal note. The prompt's buttons carry the draft id
only; what is sent is what was stored. A reply goes out as the modal's does: the message's rich
text as an HTML part plus a plain-text part (bot/mail/richtext.py), signature below.

Queries only: the caller owns the session and checks that the person is still in the channel.
Sending, like the modal's submit, is three steps: `load_send` reads (a read-only session),
`prepare_send` parses the original and renders the signature with no session open, and
`enqueue_send` is the one short write.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bot.compose import signature
from bot.compose.drafts import (
    DraftError,
    DraftInputs,
    finish_draft,
    live_conversation,
    load_draft,
    newest_message_id,
    parse_original,
)
from bot.compose.form import ComposeMeta, SlackFile, Submission
from bot.compose.submit import (
    PreparedSend,
    SendInputs,
    SubmitResult,
    enqueue_send,
    load_send,
    prepare_send,
)
from bot.mail.compose import HeaderError, make_message_id
from bot.mail.richtext import clean_rich_text, is_blank, plain_to_rich_text, rich_text_to_text
from bot.mail.types import Address
from bot.store import audit
from bot.store.models import (
    Account,
    ConversationNote,
    SlackThread,
    ThreadDraft,
    utcnow,
)

PENDING, SENT, NOTE = "pending", "sent", "note"
# A person's message: plain, with files, or also sent to the channel. Every other subtype is
# an edit, a deletion, a bot, a join… and must prompt nobody.
PERSON_SUBTYPES = (None, "file_share", "thread_broadcast")
MODES = ("reply", "reply_all")


@dataclass(frozen=True)
class TypedMessage:
    channel: str
    ts: str
    thread_ts: str
    user: str
    text: str
    rich_text: list[Any] = field(default_factory=list)
    files: list[dict[str, str]] = field(default_factory=list)


def typed_message(event: dict[str, Any]) -> TypedMessage | None:
    """The event as a person's message inside a thread, or None (pure)."""
    if event.get("type") != "message" or event.get("subtype") not in PERSON_SUBTYPES:
        return None
    if event.get("bot_id") or event.get("bot_profile") or not event.get("user"):
        return None
    ts, thread_ts, channel = event.get("ts"), event.get("thread_ts"), event.get("channel")
    if not (ts and thread_ts and channel) or ts == thread_ts:
        return None
    files = [
        {
            "id": str(f.get("id") or ""),
            "name": str(f.get("name") or f.get("title") or "attachment"),
            "mimetype": str(f.get("mimetype") or "application/octet-stream"),
            "url": str(f.get("url_private_download") or f.get("url_private") or ""),
        }
        for f in event.get("files") or []
        if isinstance(f, dict) and f.get("mode") != "tombstone"
    ]
    rich = [b for b in event.get("blocks") or [] if isinstance(b, dict)]
    text = str(event.get("text") or "")
    if not text.strip() and not files:
        return None
    return TypedMessage(
        str(channel), str(ts), str(thread_ts), str(event["user"]), text, rich, files
    )


_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<[@#!]([^|>]+)(?:\|([^>]*))?>")


def plain_text(slack_text: str) -> str:
    """Slack's message text as an email's text: links spelled out, mentions by label, and
    the &amp; &lt; &gt; Slack escapes undone (pure)."""

    def link(m: re.Match[str]) -> str:
        url, label = m.group(1), m.group(2)
        target = url.removeprefix("mailto:")
        return target if not label or label == target else f"{label} <{target}>"

    def special(m: re.Match[str]) -> str:
        return "@" + (m.group(2) or m.group(1))

    return html.unescape(_SPECIAL.sub(special, _LINK.sub(link, slack_text)))


def typed_rich(draft: ThreadDraft) -> dict[str, Any]:
    """What was typed, as rich text: the event's rich_text blocks (cleaned: known elements,
    safe link targets), or, for a message without them (an older client, a file share with a
    caption only in `text`), its text as one paragraph."""
    rich = clean_rich_text(draft.rich_text or [])
    if not is_blank(rich):
        return rich
    return plain_to_rich_text(plain_text(draft.text))


def _message_id_for(email: str) -> str:
    domain = email.rsplit("@", 1)[-1] if "@" in email else ""
    try:
        return make_message_id(domain)
    except HeaderError:
        return make_message_id("mailroom.invalid")


def record(session: Session, msg: TypedMessage, event_id: str | None) -> ThreadDraft | None:
    """Store the draft; None when the message is not in a conversation's thread or was seen
    before (same event id, or same channel + ts from another delivery)."""
    thread = session.scalar(
        select(SlackThread).where(
            SlackThread.channel_id == msg.channel, SlackThread.ts == msg.thread_ts
        )
    )
    if thread is None:
        return None
    conv = live_conversation(session, thread.conversation_id)
    account = session.get(Account, conv.account_id) if conv is not None else None
    if conv is None or conv.deleted or account is None or account.channel_id != msg.channel:
        return None
    same: list[ColumnElement[bool]] = [
        (ThreadDraft.channel_id == msg.channel) & (ThreadDraft.ts == msg.ts)
    ]
    if event_id:
        same.append(ThreadDraft.event_id == event_id)
    dup = session.scalar(select(ThreadDraft.id).where(or_(*same)))
    if dup is not None:
        return None
    draft = ThreadDraft(
        event_id=event_id,
        account_id=account.id,
        conversation_id=conv.id,
        channel_id=msg.channel,
        ts=msg.ts,
        user_id=msg.user,
        text=msg.text,
        rich_text=msg.rich_text,
        files=msg.files,
        message_id=_message_id_for(account.email),
        newest_seen=newest_message_id(session, conv.id),
        status=PENDING,
    )
    try:
        with session.begin_nested():  # a concurrent delivery of the same message: one wins
            session.add(draft)
            session.flush()
    except IntegrityError:
        return None
    return draft


@dataclass
class Recipients:
    reply: list[Address]
    reply_all: list[Address]  # To and Cc of a reply-all


def load_recipients(session: Session, draft: ThreadDraft) -> DraftInputs | None:
    """Reads only: what `recipients` needs (None: nothing left to reply to)."""
    try:
        return load_draft(session, "reply_all", draft.conversation_id)
    except DraftError:
        return None


def recipients(session: Session, draft: ThreadDraft) -> Recipients | None:
    """Both steps in one go (tests); the listener parses after its transaction."""
    return recipients_from(load_recipients(session, draft))


def recipients_from(inputs: DraftInputs | None) -> Recipients | None:
    """Who each choice would write to (None: nothing left to reply to). No session: the
    original is parsed here, once, for both choices."""
    if inputs is None:
        return None
    parsed = DraftInputs(inputs.start, parse_original(inputs.original), inputs.own)
    one = finish_draft(replace(parsed, start=replace(inputs.start, mode="reply")))
    everyone = finish_draft(replace(parsed, start=replace(inputs.start, mode="reply_all")))
    return Recipients(one.to + one.cc, everyone.to + everyone.cc)


def _claim(session: Session, draft_id: int, status: str) -> bool:
    """Move a pending draft to `status`; False if someone (a double click) got there first."""
    result = session.execute(
        update(ThreadDraft)
        .where(ThreadDraft.id == draft_id, ThreadDraft.status == PENDING)
        .values(status=status, acted_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


@dataclass
class Outcome:
    done: bool  # this call did it
    status: str  # the draft's status afterwards
    result: SubmitResult | None = None
    problem: str | None = None


@dataclass
class TypedSend:
    """What sending a typed draft needs, read before the build."""

    draft_id: int
    mode: str
    draft: DraftInputs
    meta: ComposeMeta
    account: Account
    send: SendInputs
    rich: dict[str, Any]
    files: list[SlackFile]
    signature: signature.SignatureSource | None


def load_send_typed(
    session: Session, draft_id: int, mode: str, *, user_id: str, agent_name: str = ""
) -> TypedSend | Outcome:
    """Reads only: the draft, its conversation and original, the send checks (the
    conversation and the answered email belong to the draft's mailbox, review #8) and the
    signature's template. An Outcome when the answer is already known."""
    draft = session.get(ThreadDraft, draft_id)
    if draft is None or mode not in MODES:
        return Outcome(False, "", problem="This message is no longer waiting to be sent.")
    if draft.status != PENDING:
        return Outcome(False, draft.status)
    account = session.get(Account, draft.account_id)
    try:
        if account is None:
            raise DraftError("The mailbox of this conversation was removed.")
        inputs = load_draft(session, mode, draft.conversation_id)
    except DraftError as exc:
        return Outcome(False, PENDING, problem=str(exc))
    start = inputs.start
    assert start.conversation is not None and start.source is not None
    meta = ComposeMeta(
        mode=mode,
        message_id=draft.message_id,
        account_id=draft.account_id,
        conversation_id=start.conversation.id,
        source_message=start.source.id,
        newest_seen=draft.newest_seen,
    )
    loaded = load_send(session, meta, user_id=user_id, account=account)
    if isinstance(loaded, SubmitResult):
        if loaded.problem:
            return Outcome(False, PENDING, result=loaded, problem=loaded.problem)
        return Outcome(False, SENT, result=loaded)  # its Message-ID was queued already
    sig = signature.load(
        session,
        account,
        conversation_id=start.conversation.id,
        source_pk=start.source.id,
        agent_name=agent_name,
    )
    return TypedSend(
        draft.id, mode, inputs, meta, account, loaded, typed_rich(draft), files_of(draft), sig
    )


def prepare_send_typed(
    typed: TypedSend, *, user_id: str, names: Mapping[str, str] | None = None
) -> PreparedSend | Outcome:
    """No session: parses the original (recipients, subject, quote) and renders the
    signature. It goes out as the modal's does: the typed rich text as HTML plus a plain-text
    part; `names` (mention id → name, resolved by the caller) spell out mentioned people."""
    start = finish_draft(typed.draft)
    sub = Submission(
        to=start.to,
        cc=start.cc,
        bcc=[],
        subject=start.subject,
        body=rich_text_to_text(typed.rich, names),
        quote=True,
        from_account=None,
        files=typed.files,
        body_rich=typed.rich,
        names=dict(names or {}),
    )
    prepared = prepare_send(
        typed.send,
        typed.meta,
        sub,
        user_id=user_id,
        account=typed.account,
        signature=signature.render_loaded(typed.signature),
    )
    if isinstance(prepared, SubmitResult):
        return Outcome(False, PENDING, result=prepared, problem=prepared.problem)
    return prepared


def enqueue_send_typed(
    session: Session, typed: TypedSend, prepared: PreparedSend, *, user_id: str
) -> Outcome:
    """The one write: claim the draft (a double click or a Slack retry finds it claimed and
    sends nothing more; the Message-ID was chosen with the draft) and queue the send."""
    draft = session.get(ThreadDraft, typed.draft_id)
    if draft is None:
        return Outcome(False, "", problem="This message is no longer waiting to be sent.")
    if not _claim(session, draft.id, SENT):
        session.refresh(draft)
        return Outcome(False, draft.status)
    result = enqueue_send(session, prepared, user_id=user_id)
    draft.outbox_id = result.outbox_id
    audit.record(
        session,
        user_id,
        "thread.typed.sent",
        account_id=draft.account_id,
        conversation_id=draft.conversation_id,
        details={"draft": draft.id, "mode": typed.mode, "message_id": draft.message_id},
    )
    return Outcome(True, SENT, result=result)


def send(
    session: Session,
    draft_id: int,
    mode: str,
    *,
    user_id: str,
    agent_name: str = "",
    names: Mapping[str, str] | None = None,
) -> Outcome:
    """Enqueue the draft as a reply (or reply all) from its author, all three steps in one
    session (the CLI and tests; the Slack listener splits them). Idempotent."""
    typed = load_send_typed(session, draft_id, mode, user_id=user_id, agent_name=agent_name)
    if isinstance(typed, Outcome):
        return typed
    prepared = prepare_send_typed(typed, user_id=user_id, names=names)
    if isinstance(prepared, Outcome):
        return prepared
    return enqueue_send_typed(session, typed, prepared, user_id=user_id)


def files_of(draft: ThreadDraft) -> list[SlackFile]:
    return [
        SlackFile(
            id=str(f.get("id") or ""),
            name=str(f.get("name") or "attachment"),
            mimetype=str(f.get("mimetype") or "application/octet-stream"),
            url=str(f.get("url") or ""),
        )
        for f in draft.files or []
        if isinstance(f, dict) and f.get("url")
    ]


def files_for(session: Session, draft_id: int, user_id: str) -> list[SlackFile]:
    """The files of the person's own typed message ("Edit first" sends them along)."""
    draft = session.get(ThreadDraft, draft_id)
    return files_of(draft) if draft is not None and draft.user_id == user_id else []


def sent_from_modal(session: Session, draft_id: int, outbox_id: int | None) -> None:
    """The "Edit first" modal was sent (with the draft's Message-ID): the draft is done."""
    if _claim(session, draft_id, SENT):
        draft = session.get(ThreadDraft, draft_id)
        if draft is not None:
            draft.outbox_id = outbox_id


def keep_as_note(
    session: Session,
    draft_id: int,
    *,
    user_id: str,
    author_name: str,
    names: Mapping[str, str] | None = None,
) -> Outcome:
    """The message stays in Slack as an internal note on the conversation; nothing is sent."""
    draft = session.get(ThreadDraft, draft_id)
    if draft is None:
        return Outcome(False, "", problem="This message is gone.")
    if not _claim(session, draft.id, NOTE):
        session.refresh(draft)
        return Outcome(False, draft.status)
    session.add(
        ConversationNote(
            conversation_id=draft.conversation_id,
            author=draft.user_id,
            author_name=author_name[:300],
            text=rich_text_to_text(typed_rich(draft), names).strip(),
            thread_draft_id=draft.id,
        )
    )
    audit.record(
        session,
        user_id,
        "thread.typed.note",
        account_id=draft.account_id,
        conversation_id=draft.conversation_id,
        details={"draft": draft.id},
    )
    return Outcome(True, NOTE)
