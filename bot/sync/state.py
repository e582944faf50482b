"""Store-side helpers the engine and the write-back share (queries only, caller commits)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from bot.store.lists import one_of
from bot.store.models import Conversation, FolderState, Message, MessageLocation

log = logging.getLogger(__name__)

T = TypeVar("T")
CHUNK = 500


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def folder_state(session: Session, account_id: int, name: str, role: str | None) -> FolderState:
    """The folder's cursor row, created on first sight."""
    fs = session.scalar(
        select(FolderState).where(FolderState.account_id == account_id, FolderState.name == name)
    )
    if fs is None:
        fs = FolderState(account_id=account_id, name=name, role=role, last_uid=0)
        with session.begin_nested():
            session.add(fs)
            session.flush()
    elif role and fs.role != role:
        fs.role = role
    return fs


def refresh_parents(session: Session, conversation_ids: Iterable[int]) -> None:
    """Ask Slack posting to update the parent message, when that part is installed."""
    ids = sorted(set(conversation_ids))
    if not ids:
        return
    try:
        from bot.inbox.announce import refresh_parent
    except ImportError:
        log.debug("bot.inbox.announce not installed: %d parent update(s) not queued", len(ids))
        return
    for cid in ids:
        refresh_parent(session, cid)


def recompute_conversations(session: Session, conversation_ids: Iterable[int]) -> set[int]:
    """Derive each conversation's unread count, archived and deleted state from where its
    messages are: any message in the Inbox ⇒ not archived; otherwise any in the Archive
    ⇒ archived; every message gone from every synced folder ⇒ deleted. Conversations
    whose messages sit only in Sent (or custom folders) keep their state.
    Returns the ids whose visible state changed."""
    changed: set[int] = set()
    for ids in chunks(sorted(set(conversation_ids))):
        roles: dict[int, set[str]] = {}
        rows = session.execute(
            select(Message.conversation_id, FolderState.role)
            .join(MessageLocation, MessageLocation.message_id == Message.id)
            .join(FolderState, FolderState.id == MessageLocation.folder_id)
            .where(one_of(session, Message.conversation_id, ids), Message.deleted.is_(False))
            .distinct()
        )
        for cid, role in rows:
            roles.setdefault(cid, set()).add(role or "")
        counts: dict[int, tuple[int, int]] = {}
        for cid, alive, unread in session.execute(
            select(
                Message.conversation_id,
                func.count(Message.id).filter(Message.deleted.is_(False)),
                func.count(Message.id).filter(
                    and_(Message.deleted.is_(False), Message.is_read.is_(False))
                ),
            )
            .where(one_of(session, Message.conversation_id, ids))
            .group_by(Message.conversation_id)
        ):
            counts[cid] = (int(alive), int(unread))
        for conv in session.scalars(
            select(Conversation).where(one_of(session, Conversation.id, ids))
        ):
            before = (conv.archived, conv.deleted, conv.unread_count)
            where = roles.get(conv.id, set())
            alive, unread = counts.get(conv.id, (0, 0))
            if "inbox" in where:
                conv.archived, conv.deleted = False, False
            elif "archive" in where:
                conv.archived, conv.deleted = True, False
            elif alive == 0 and counts.get(conv.id) is not None:
                conv.deleted = True
            conv.unread_count = unread
            if (conv.archived, conv.deleted, conv.unread_count) != before:
                changed.add(conv.id)
    return changed


def mark_deleted_if_gone(session: Session, message_ids: Iterable[int]) -> set[int]:
    """Messages (of those given) left in no folder are deleted; returns their conversations."""
    convs: set[int] = set()
    for ids in chunks(sorted(set(message_ids))):
        located = set(
            session.scalars(
                select(MessageLocation.message_id).where(MessageLocation.message_id.in_(ids))
            )
        )
        gone = [i for i in ids if i not in located]
        if gone:
            session.execute(
                update(Message)
                .where(Message.id.in_(gone))
                .values(deleted=True)
                .execution_options(synchronize_session=False)
            )
        convs.update(
            session.scalars(select(Message.conversation_id).where(Message.id.in_(ids)).distinct())
        )
    return convs


def locations_of(
    session: Session, message_ids: Sequence[int]
) -> list[tuple[MessageLocation, FolderState]]:
    rows: list[tuple[MessageLocation, FolderState]] = []
    for ids in chunks(message_ids):
        rows.extend(
            (loc, fs)
            for loc, fs in session.execute(
                select(MessageLocation, FolderState)
                .join(FolderState, FolderState.id == MessageLocation.folder_id)
                .where(MessageLocation.message_id.in_(ids))
            )
        )
    return rows


def json_cursor(fs: FolderState) -> dict[str, Any]:
    """The folder's extra state (retry / quarantine lists) kept in FolderState.cursor."""
    import json

    if not fs.cursor:
        return {}
    try:
        data = json.loads(fs.cursor)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def set_json_cursor(fs: FolderState, data: dict[str, Any]) -> None:
    import json

    fs.cursor = json.dumps(data, sort_keys=True) if data else None
