"""Write-back for Gmail and Microsoft 365: read flags and moves from the outbox, then the store."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.providers.errors import FolderNotFound
from bot.providers.gmail import GmailClient, GmailMessage
from bot.providers.graph import WELL_KNOWN, FolderMissing, GraphClient
from bot.services import Services
from bot.store.db import session_scope
from bot.store.models import (
    Account,
    Conversation,
    Direction,
    FolderState,
    Message,
    MessageLocation,
    Provider,
)
from bot.sync.api_accounts import gmail_client, graph_client, load_account
from bot.sync.api_store import (
    SyncCtx,
    drop_locations,
    set_locations,
)
from bot.sync.gmail_sync import GMAIL_FOLDERS, gmail_wanted
from bot.sync.imap_sync import RunStats
from bot.sync.state import (
    folder_state,
    mark_deleted_if_gone,
    recompute_conversations,
    refresh_parents,
)

log = logging.getLogger(__name__)

_MOVES = {  # outbox kind → (from roles, to role), as for IMAP (bot/outbox/mail_handlers.py)
    "mail.archive": (("inbox",), "archive"),
    "mail.unarchive": (("archive",), "inbox"),
    "mail.trash": (("inbox", "archive"), "trash"),
}


def writeback(
    services: Services, account: Account, kind: str, payload: dict[str, Any]
) -> dict[str, Any] | None:
    """Apply one ``mail.*`` outbox row to a Gmail / Microsoft 365 mailbox, then the store.
    Idempotent: labels and read flags are set, not toggled; moves move what is still there."""
    account = load_account(services, account.id)
    if kind == "mail.set_read":
        ids = [int(i) for i in payload.get("message_ids") or []]
        return _set_read(services, account, ids, bool(payload.get("read", True)))
    if kind in _MOVES:
        from_roles, to_role = _MOVES[kind]
        return _move(services, account, int(payload["conversation_id"]), from_roles, to_role)
    raise ValueError(f"unknown write-back kind {kind!r}")


def _messages(s: Session, account_id: int, **where: Any) -> list[Message]:
    query = select(Message).where(
        Message.account_id == account_id, Message.provider_id.is_not(None)
    )
    if "ids" in where:
        query = query.where(Message.id.in_(where["ids"]))
    if "conversation_id" in where:
        query = query.where(Message.conversation_id == where["conversation_id"])
    return list(s.scalars(query.order_by(Message.id)))


def _set_read(services: Services, account: Account, ids: list[int], read: bool) -> dict[str, Any]:
    factory = services.session_factory
    with session_scope(factory) as s:
        targets = [str(m.provider_id) for m in _messages(s, account.id, ids=ids)]
    written = 0
    if account.provider == Provider.GMAIL:
        gmail = gmail_client(services, account)
        for pid in targets:
            if read:
                done = gmail.modify(pid, remove=["UNREAD"])
            else:
                done = gmail.modify(pid, add=["UNREAD"])
            written += done is not None
    else:
        with graph_client(services, account) as graph:
            written = sum(graph.set_read(pid, read) for pid in targets)
    with session_scope(factory) as s:
        convs: set[int] = set()
        for m in s.scalars(
            select(Message).where(Message.account_id == account.id, Message.id.in_(ids))
        ):
            m.is_read = read
            convs.add(m.conversation_id)
        refresh_parents(s, recompute_conversations(s, convs))
    return {"written": written}


def _move(
    services: Services,
    account: Account,
    conversation_id: int,
    from_roles: Sequence[str],
    to_role: str,
) -> dict[str, Any]:
    factory = services.session_factory
    ctx = SyncCtx(services, account.id, RunStats(), {})
    with session_scope(factory) as s:
        conv = s.get(Conversation, conversation_id)
        if conv is None or conv.account_id != account.id:
            return {"moved": 0, "folder": None}
        for fs in s.scalars(select(FolderState).where(FolderState.account_id == account.id)):
            ctx.folders[fs.name] = fs.id
        msgs = _messages(s, account.id, conversation_id=conversation_id)
        located: dict[int, set[str]] = {}
        role_of = {
            fs.id: (fs.name, fs.role)
            for fs in s.scalars(select(FolderState).where(FolderState.account_id == account.id))
        }
        for loc in s.scalars(
            select(MessageLocation).where(MessageLocation.message_id.in_([m.id for m in msgs]))
        ):
            name, role = role_of.get(loc.folder_id, ("", None))
            if role in from_roles:
                located.setdefault(loc.message_id, set()).add(name)
        work = [(m.id, str(m.provider_id), m.direction) for m in msgs]
    moved = 0
    if account.provider == Provider.GMAIL:
        if to_role == "trash":
            # Only what sits in the inbox or archive: the team's own sent replies stay, as
            # with IMAP and Graph (Gmail purges Trash after 30 days; security review #21).
            work = [w for w in work if w[0] in located]
        moved = _gmail_move(ctx, gmail_client(services, account), work, to_role, conversation_id)
        folder = {"archive": "ARCHIVE", "inbox": "INBOX", "trash": "TRASH"}[to_role]
    else:
        folder = WELL_KNOWN[to_role]
        with graph_client(services, account) as graph:
            moved = _graph_move(
                ctx, graph, [(pk, pid) for pk, pid, _d in work if pk in located], located, folder
            )
    with session_scope(factory) as s:
        convs = mark_deleted_if_gone(s, ctx.stats.removed_messages) | {conversation_id}
        conv = s.get_one(Conversation, conversation_id)
        if to_role == "archive":
            conv.archived = True
        elif to_role == "inbox":
            conv.archived, conv.deleted = False, False
        changed = recompute_conversations(s, convs) | {conversation_id}
        if to_role == "trash":
            conv.deleted = True
        refresh_parents(s, changed)
    return {"moved": moved, "folder": folder}


def _gmail_move(
    ctx: SyncCtx,
    gmail: GmailClient,
    work: list[tuple[int, str, Direction]],
    to_role: str,
    conversation_id: int,
) -> int:
    results: list[tuple[int, str, GmailMessage | None]] = []
    if to_role == "inbox":
        # "Move to Inbox": the received messages; a thread of our own mail as a whole.
        inbound = [w for w in work if w[2] == Direction.INBOUND] or work
        for pk, pid, _d in inbound:
            results.append((pk, pid, gmail.modify(pid, add=["INBOX"], remove=["TRASH"])))
    elif to_role == "archive":
        for pk, pid, _d in work:
            results.append((pk, pid, gmail.modify(pid, remove=["INBOX"])))
    else:
        for pk, pid, _d in work:
            results.append((pk, pid, gmail.trash(pid)))
    with session_scope(ctx.services.session_factory) as s:
        for name, role in GMAIL_FOLDERS.items():
            ctx.folders[name] = folder_state(s, ctx.account_id, name, role).id
        for pk, pid, gm in results:
            if gm is None:
                drop_locations(ctx, s, pid, GMAIL_FOLDERS)
            else:
                set_locations(ctx, s, pk, pid, gmail_wanted(gm.label_ids), GMAIL_FOLDERS)
                if to_role == "inbox":
                    s.execute(update(Message).where(Message.id == pk).values(deleted=False))
    return sum(1 for *_x, gm in results if gm is not None)


def _graph_move(
    ctx: SyncCtx,
    graph: GraphClient,
    work: list[tuple[int, str]],
    located: dict[int, set[str]],
    dest: str,
) -> int:
    done: list[tuple[int, str, str | None]] = []
    for pk, pid in work:
        try:
            result = graph.move(pid, dest)
        except FolderMissing as exc:
            # The destination (e.g. well-known Archive) is missing: the message is still
            # where it was, so nothing is marked gone; the row fails with the folder named.
            raise FolderNotFound(dest) from exc
        done.append((pk, pid, str(result["id"]) if result else None))
    with session_scope(ctx.services.session_factory) as s:
        for pk, pid, new_id in done:
            drop_locations(ctx, s, pid, located.get(pk, ()))
            if new_id is None:
                continue
            if new_id != pid:  # only without immutable ids; keep the store pointing at it
                s.execute(update(Message).where(Message.id == pk).values(provider_id=new_id))
            if dest in ctx.folders:  # the destination is synced: the message is there now
                set_locations(ctx, s, pk, new_id, [dest], [dest])
                s.execute(update(Message).where(Message.id == pk).values(deleted=False))
    return sum(1 for *_x, new_id in done if new_id is not None)
