"""Changes made in Mailroom, written to the mailbox: read flags, moves, sending.

Every function here is idempotent, because outbox rows can run twice: flags are set, not
toggled; a move only moves what is still where it was; a send first looks for its
Message-ID (in the store and in Sent) and skips SMTP when it is there.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from bot.accounts import imap_settings, passwords, smtp_settings
from bot.providers.errors import MessageRejected, ProviderError
from bot.providers.imap import ImapProvider
from bot.services import Services
from bot.store.db import session_scope
from bot.store.models import Account, Conversation, Direction, Message, MessageLocation
from bot.sync.engine import DEFAULT_ROLES
from bot.sync.state import (
    folder_state,
    locations_of,
    mark_deleted_if_gone,
    recompute_conversations,
    refresh_parents,
)

log = logging.getLogger(__name__)

SEEN = "\\Seen"


def _open(services: Services, account_id: int) -> tuple[ImapProvider, Account]:
    with session_scope(services.session_factory) as s:
        account = s.get_one(Account, account_id)
        settings = imap_settings(account)
        secret = passwords(services, account)["imap_password"]
        s.expunge(account)
    return ImapProvider(settings, secret), account


def _synced(account: Account, name: str, role: str | None) -> bool:
    if account.folders:
        return name in account.folders
    return role in DEFAULT_ROLES


# -- read / unread -----------------------------------------------------------------------


def set_read(services: Services, message_ids: Sequence[int], read: bool) -> int:
    """Set ``\\Seen`` on every copy of these messages, then in the store. Returns how many
    mailbox copies were updated (copies whose folder changed UIDVALIDITY are skipped: the
    next sync brings them back with fresh UIDs)."""
    factory = services.session_factory
    with session_scope(factory) as s:
        msgs = list(s.scalars(select(Message).where(Message.id.in_(list(message_ids)))))
        if not msgs:
            return 0
        account_ids = {m.account_id for m in msgs}
        targets: dict[tuple[int, str, int], list[int]] = defaultdict(list)
        for loc, fs in locations_of(s, [m.id for m in msgs]):
            if fs.uidvalidity == loc.uidvalidity:
                targets[(fs.account_id, fs.name, loc.uidvalidity)].append(loc.uid)
    written = 0
    for account_id in sorted(account_ids):
        provider, _ = _open(services, account_id)
        with provider:
            for (aid, folder, uv), uids in sorted(targets.items()):
                if aid != account_id:
                    continue
                if provider.select(folder).uidvalidity != uv:
                    continue
                # UID STORE on an expunged UID is a no-op, not an error (zammad #1662).
                provider.set_seen(folder, uids, read)
                written += len(uids)
    with session_scope(factory) as s:
        convs: set[int] = set()
        for m in s.scalars(select(Message).where(Message.id.in_(list(message_ids)))):
            m.is_read = read
            convs.add(m.conversation_id)
        for loc, _fs in locations_of(s, list(message_ids)):
            flags = set(loc.flags or [])
            flags = flags | {SEEN} if read else flags - {SEEN}
            loc.flags = sorted(flags)
        refresh_parents(s, recompute_conversations(s, convs))
    return written


# -- moves -------------------------------------------------------------------------------


@dataclass
class MoveResult:
    moved: int = 0
    folder: str | None = None


def move_conversation(
    services: Services, conversation_id: int, from_roles: Sequence[str], to_role: str
) -> MoveResult:
    """Move every copy of the conversation's messages found in ``from_roles`` folders to the
    folder playing ``to_role`` (found by SPECIAL-USE or name, created when missing), and
    move the MessageLocation rows with them."""
    factory = services.session_factory
    with session_scope(factory) as s:
        conv = s.get(Conversation, conversation_id)
        if conv is None:
            return MoveResult()
        account_id = conv.account_id
        mids = list(s.scalars(select(Message.id).where(Message.conversation_id == conversation_id)))
        by_folder: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
        for loc, fs in locations_of(s, mids):
            if fs.role in from_roles and fs.uidvalidity == loc.uidvalidity:
                by_folder[(fs.name, loc.uidvalidity)].append((loc.id, loc.uid))
    result = MoveResult()
    provider, account = _open(services, account_id)
    with provider:
        dest = "INBOX" if to_role == "inbox" else provider.folder_for_role(to_role, create=True)
        assert dest is not None
        result.folder = dest
        dest_uv = provider.select(dest).uidvalidity
        moves: list[tuple[list[tuple[int, int]], dict[int, int]]] = []
        for (folder, uv), locs in sorted(by_folder.items()):
            if folder == dest or provider.select(folder).uidvalidity != uv:
                continue
            mapping = provider.move(folder, [uid for _, uid in locs], dest)
            moves.append((locs, mapping))
            result.moved += len(locs)
    with session_scope(factory) as s:
        dest_fs = (
            folder_state(s, account_id, dest, to_role) if _synced(account, dest, to_role) else None
        )
        touched: set[int] = set()
        for locs, mapping in moves:
            for loc_id, uid in locs:
                moved = s.get(MessageLocation, loc_id)
                if moved is None:
                    continue
                touched.add(moved.message_id)
                new_uid = mapping.get(uid)
                same_uv = dest_fs is not None and dest_fs.uidvalidity in (None, dest_uv)
                if dest_fs is not None and new_uid is not None and same_uv:
                    dest_fs.uidvalidity = dest_uv
                    moved.folder_id, moved.uidvalidity, moved.uid = dest_fs.id, dest_uv, new_uid
                else:
                    # Not synced, or no COPYUID: the next sync of that folder finds the
                    # message by its Message-ID.
                    s.delete(moved)
        s.flush()
        convs = mark_deleted_if_gone(s, touched) | {conversation_id}
        conv = s.get_one(Conversation, conversation_id)
        if to_role == "archive":
            conv.archived = True
        elif to_role == "inbox":
            conv.archived, conv.deleted = False, False
            for m in s.scalars(select(Message).where(Message.conversation_id == conversation_id)):
                if m.locations:
                    m.deleted = False
        elif to_role == "trash":
            conv.deleted = True
        # Explicit state first; the recompute only overrides it where locations say so.
        changed = recompute_conversations(s, convs) | {conversation_id}
        if to_role == "trash":
            conv.deleted = True  # Sent copies stay, but the conversation is in the bin
        refresh_parents(s, changed)
    return result


# -- sending -----------------------------------------------------------------------------


@dataclass
class SendResult:
    sent: bool  # SMTP accepted it in this call
    already_sent: bool  # found in the store or in Sent: SMTP skipped
    smtp_reply: str = ""
    sent_folder: str | None = None
    appended_uid: int | None = None
    message_pk: int | None = None  # Message.id of the stored sent copy
    problems: list[str] = field(default_factory=list)


def _ingest_sent(
    services: Services,
    account_id: int,
    raw: bytes,
    sent_by: str | None,
    location: tuple[str, int, int] | None,
) -> int:
    from bot.store.ingest import ingest_message

    with session_scope(services.session_factory) as s:
        account = s.get_one(Account, account_id)
        loc: Any = None
        if location is not None:
            name, uv, uid = location
            fs = folder_state(s, account_id, name, "sent")
            if fs.uidvalidity in (None, uv):
                fs.uidvalidity = uv
                loc = (fs, uv, uid)
        result = ingest_message(
            s,
            account,
            raw,
            is_read=True,
            direction=Direction.OUTBOUND,
            location=loc,
            flags=[SEEN],
            sent_by=sent_by,
        )
        try:
            from bot.inbox.announce import announce_ingested
        except ImportError:
            pass
        else:
            announce_ingested(s, account, result)
        return int(result.message.id)


def send_mail(
    services: Services,
    account: Account,
    raw: bytes,
    mail_from: str,
    rcpt_to: Sequence[str],
    message_id: str,
    *,
    sent_by: str | None = None,
    accepted: bool = False,
    before_send: Callable[[], None] | None = None,
    on_accepted: Callable[[dict[str, Any]], None] | None = None,
) -> SendResult:
    """Send over SMTP, then keep a copy in Sent (``\\Seen``) and in the store.

    Idempotent by Message-ID: when the message is already in the store or in Sent, SMTP is
    skipped. A failed APPEND after a successful send is recorded in ``problems``; it never
    fails or repeats the send (FreeScout #3632).

    ``accepted``: an earlier try's server already accepted it (the caller's durable marker):
    only the bookkeeping is left, SMTP is skipped. ``before_send`` runs right before SMTP (the
    outbox's lease check; it raises to stop). ``on_accepted`` runs right after the server
    accepted, before anything else can fail: the caller records that durably."""
    from bot.providers.smtp import send_message

    mid = message_id.strip().strip("<>")
    account_id = account.id
    with session_scope(services.session_factory) as s:
        stored = s.scalar(
            select(Message.id).where(Message.account_id == account_id, Message.message_id == mid)
        )
        acc = s.get_one(Account, account_id)
        smtp = smtp_settings(acc)
        smtp_secret = passwords(services, acc)["smtp_password"]
    provider, _ = _open(services, account_id)
    with provider:
        sent_folder = provider.folder_for_role("sent", create=True)
        assert sent_folder is not None
        problems: list[str] = []
        partial: MessageRejected | None = None
        try:
            in_sent = provider.find_message_id(sent_folder, mid)
        except ProviderError as exc:
            # Sent cannot be read; the store copy (written right after every send) still
            # guards against a second send.
            in_sent = []
            problems.append(f"could not look into {sent_folder}: {exc}")
        result = SendResult(
            sent=False,
            already_sent=bool(stored or in_sent or accepted),
            sent_folder=sent_folder,
            problems=problems,
        )
        if not result.already_sent:
            if before_send is not None:
                before_send()
            try:
                result.smtp_reply = send_message(
                    smtp, smtp_secret, raw, mail_from=mail_from, rcpt_to=list(rcpt_to)
                )
            except MessageRejected as exc:
                if not exc.delivered_to:
                    raise
                # Some recipients got it: keep the copy (store + Sent) so it is never
                # sent again, then let the caller report the refused ones.
                partial = exc
            result.sent = True
            log.info("sent %s for account %s", mid, account_id)
            if on_accepted is not None:
                on_accepted(
                    {
                        "reply": result.smtp_reply[:200],
                        "refused": sorted(partial.refused) if partial else [],
                        "partial": str(partial)[:500] if partial else None,
                    }
                )
        # Store it now, before the APPEND, so a crash from here on cannot lead to a resend.
        if stored is None:
            stored = _ingest_sent(services, account_id, raw, sent_by, None)
        result.message_pk = stored
        if in_sent:
            result.appended_uid = in_sent[0]
            return _done(result, partial)
        try:
            uid = provider.append(sent_folder, raw, flags=(SEEN,))
            uv = provider.select(sent_folder).uidvalidity
        except ProviderError as exc:
            problem = f"sent, but not saved to {sent_folder}: {exc}"
            log.warning("account %s: %s", account_id, problem)
            result.problems.append(problem)
            return _done(result, partial)
    result.appended_uid = uid
    if uid is not None:
        _ingest_sent(services, account_id, raw, sent_by, (sent_folder, uv, uid))
    return _done(result, partial)


def _done(result: SendResult, partial: MessageRejected | None) -> SendResult:
    if partial is not None:
        raise partial
    return result
