"""Drafts kept when a person closes a reply / forward modal with text in it (queries only).

One per person and conversation: the next time they answer there, the modal opens with it
filled in and a Discard button. Sending from that conversation drops it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.blocks import compose as cb
from bot.compose.form import ComposeMeta, body_value
from bot.mail.richtext import clean_rich_text, is_blank, plain_to_rich_text, rich_text_to_text
from bot.store.models import ComposeDraft, utcnow


def _text(values: dict[str, Any], block_id: str) -> str:
    return str(((values.get(block_id) or {}).get(cb.VALUE) or {}).get("value") or "")


def keep(session: Session, user_id: str, meta: ComposeMeta, values: dict[str, Any]) -> bool:
    """Save what the closed modal held; an emptied body drops the draft. True if one is kept."""
    if meta.conversation_id is None:
        return False
    # The rich text as typed (cleaned: known elements, safe links), so it comes back formatted.
    rich = body_value(values, cb.body_block(meta.rotation))
    existing = get(session, user_id, meta.conversation_id)
    if is_blank(rich):
        if existing is not None:
            session.delete(existing)
        return False
    fields = {
        "mode": meta.mode,
        "to": _text(values, cb.TO_BLOCK),
        "cc": _text(values, cb.CC_BLOCK),
        "subject": _text(values, cb.subject_block(meta.rotation)),
        "body": rich_text_to_text(rich),
        "body_rich": rich,
    }
    if existing is not None:
        for key, value in fields.items():
            setattr(existing, key, value)
        existing.updated_at = utcnow()
        return True
    try:
        with session.begin_nested():
            session.add(
                ComposeDraft(user_id=user_id, conversation_id=meta.conversation_id, **fields)
            )
            session.flush()
    except IntegrityError:  # two closes at once: the other one kept it
        pass
    return True


def rich_body(draft: ComposeDraft) -> dict[str, Any]:
    """The draft's body as rich text (a draft kept as plain text before rich text: one paragraph)."""
    if draft.body_rich:
        return clean_rich_text(draft.body_rich)
    return plain_to_rich_text(draft.body)


def get(session: Session, user_id: str, conversation_id: int) -> ComposeDraft | None:
    return session.scalar(
        select(ComposeDraft).where(
            ComposeDraft.user_id == user_id, ComposeDraft.conversation_id == conversation_id
        )
    )


def discard(session: Session, user_id: str, draft_id: int) -> int | None:
    """Drop the person's own draft; returns its conversation id (None: not theirs or gone)."""
    draft = session.get(ComposeDraft, draft_id)
    if draft is None or draft.user_id != user_id:
        return None
    conversation_id = draft.conversation_id
    session.delete(draft)
    return conversation_id


def drop(session: Session, user_id: str, conversation_id: int | None) -> None:
    """The person sent from this conversation: their kept draft is spent."""
    if conversation_id is None:
        return
    session.execute(
        delete(ComposeDraft).where(
            ComposeDraft.user_id == user_id, ComposeDraft.conversation_id == conversation_id
        )
    )
