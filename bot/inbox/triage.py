"""Running the inbox as a team: owner, status, snooze, the "is replying" mark, emoji triage.

Each action checks that the person is in the account's channel (and, for an assignment, that
the new owner is too), changes the store through `bot.store.triage` (conditional, audited), and
queues its Slack effects as outbox rows: a note in the thread, a parent refresh, a DM to a new
owner. Nothing here posts to Slack directly, so a listener stays within Slack's 3 s.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from bot.access import AccessDenied, SlackUser
from bot.blocks import triage as tb
from bot.blocks.search import thread_url
from bot.inbox import actions
from bot.inbox.announce import DM, POST_IN_THREAD, refresh_parent
from bot.services import Services
from bot.store import outbox
from bot.store import triage as st
from bot.store.db import read_scope, session_scope
from bot.store.models import Account, Conversation, Direction, utcnow

if TYPE_CHECKING:  # annotations only: a sync reaches this module without Slack (issue 19)
    from slack_sdk import WebClient

log = logging.getLogger(__name__)

# How long an open reply modal marks the parent when Slack never says it closed.
REPLYING_SECONDS = 15 * 60
MORNING = time(9, 0)
LATER_TODAY_HOURS = 3

# Account.config["triage"]: which reaction does what (names without colons).
DEFAULT_REACTIONS = {"done": "white_check_mark", "take": "eyes"}


class NotMember(ValueError):
    """The chosen owner is not a member of the account's channel."""


# -- time --------------------------------------------------------------------------------------


def user_zone(slack: WebClient, user_id: str) -> ZoneInfo:
    """The person's Slack time zone (users.info `tz`), UTC when unknown."""
    from slack_sdk.errors import SlackApiError  # loaded already: `slack` is a client

    try:
        name = str(slack.users_info(user=user_id)["user"].get("tz") or "UTC")
        return ZoneInfo(name)
    except (SlackApiError, KeyError, TypeError, ValueError, ZoneInfoNotFoundError):
        return ZoneInfo("UTC")


def snooze_until(choice: str, now: datetime, zone: ZoneInfo) -> datetime:
    """The wake-up time of a menu choice, reckoned on the person's own clock.

    later today: in three hours; tomorrow morning: 09:00 tomorrow; next week: 09:00 on the
    coming Monday (a week on when today is Monday)."""
    local = now.astimezone(zone)
    if choice == tb.LATER_TODAY:
        return now + timedelta(hours=LATER_TODAY_HOURS)
    if choice == tb.TOMORROW:
        day = local.date() + timedelta(days=1)
    elif choice == tb.NEXT_WEEK:
        day = local.date() + timedelta(days=7 - local.weekday())
    else:
        raise ValueError(f"not a snooze choice: {choice!r}")
    return datetime.combine(day, MORNING, tzinfo=zone).astimezone(UTC)


def local_time(day: str, clock: str, zone: ZoneInfo) -> datetime:
    """A "YYYY-MM-DD" and "HH:MM" from the pickers, in the person's zone, as UTC."""
    d = datetime.fromisoformat(day).date()
    hh, mm = (int(x) for x in clock.split(":", 1))
    return datetime.combine(d, time(hh, mm), tzinfo=zone).astimezone(UTC)


# -- rendering ---------------------------------------------------------------------------------


def triage_state(
    conversation: Conversation, now: datetime | None = None, session: Session | None = None
) -> tb.TriageState:
    """What the parent shows. With a session, also whether the latest triage change was a
    wake-up (the parent then says it is back from snooze)."""
    now = now or utcnow()
    back = False
    if session is not None and conversation.snoozed_until is None:
        from sqlalchemy import select

        from bot.store.models import AuditLog

        latest = session.scalar(
            select(AuditLog.action)
            .where(
                AuditLog.conversation_id == conversation.id,
                AuditLog.action.like("triage.%"),
            )
            .order_by(AuditLog.id.desc())
            .limit(1)
        )
        back = latest == "triage.wake"
    replying = conversation.replying_user
    if conversation.replying_until is None or conversation.replying_until <= now:
        replying = None
    return tb.TriageState(
        conversation_id=conversation.id,
        status=st.effective_status(conversation),
        assignee=conversation.assignee,
        waiting_since=conversation.waiting_since,
        snoozed_until=conversation.snoozed_until,
        replying_user=replying,
        back_from_snooze=back,
    )


def history(services: Services, conversation_id: int) -> list[tb.HistoryEntry]:
    with read_scope(services.session_factory) as session:
        rows = st.history(session, conversation_id)
        return [
            tb.HistoryEntry(
                at=r.at,
                actor=r.actor,
                action=r.action,
                before=(r.details or {}).get("from"),
                after=(r.details or {}).get("to"),
                reason=(r.details or {}).get("reason"),
            )
            for r in rows
        ]


def add_history(services: Services, modal: dict[str, Any], conversation_id: int) -> dict[str, Any]:
    """The Open modal with the conversation's history under the email (within 100 blocks)."""
    blocks = list(modal.get("blocks") or [])
    extra = tb.history_blocks(history(services, conversation_id), 100 - len(blocks))
    return {**modal, "blocks": blocks + extra} if extra else modal


# -- effects -----------------------------------------------------------------------------------


def _url(conversation: Conversation) -> str | None:
    thread = conversation.slack_thread
    return thread_url(thread.channel_id, thread.ts) if thread is not None else None


def _dm_new_owner(
    session: Session, conversation: Conversation, change: st.Change, actor: str
) -> None:
    owner = change.after
    if not owner or owner == actor or not st.wants_assignment_dms(session, owner):
        return
    message = tb.assignment_dm(actor, conversation.subject, _url(conversation))
    outbox.enqueue(
        session,
        kind=DM,
        key=f"triage.dm:{conversation.id}:a{change.audit_id}",
        payload={"user_id": owner, "text": message["text"], "blocks": message["blocks"]},
        account_id=conversation.account_id,
        conversation_id=conversation.id,
        created_by=actor,
    )


def _announce_wake(
    session: Session, conversation: Conversation, change: st.Change, reason: str
) -> None:
    """The parent says it is back (refresh), and the channel is told: a note in the thread,
    also shown in the channel."""
    message = tb.woke_channel_message(conversation.subject, _url(conversation), reason)
    thread = conversation.slack_thread
    if thread is None:
        return
    key = f"slack.note:{conversation.id}:t{change.audit_id}"
    outbox.enqueue(
        session,
        kind=POST_IN_THREAD,
        key=key,
        payload={
            "conversation_id": conversation.id,
            "text": message["text"],
            "blocks": message["blocks"],
            "key": key,
            "broadcast": True,
        },
        account_id=conversation.account_id,
        conversation_id=conversation.id,
        channel_id=thread.channel_id,
    )


# -- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    changed: bool
    text: str = ""


def _checked(
    services: Services, slack: WebClient, user_id: str, conversation_id: int
) -> actions.ConversationInfo:
    return actions.conversation_info(services, slack, user_id, conversation_id)


def check_assign(
    services: Services,
    slack: WebClient,
    actor: str,
    conversation_id: int,
    assignee: str | None,
) -> actions.ConversationInfo:
    """Reads only (a form checks with it before its ack): AccessDenied for a clicker outside
    the channel, NotMember for an owner outside it, NotFound for a conversation gone."""
    info = _checked(services, slack, actor, conversation_id)
    if assignee is not None and not services.access.can_see_channel(
        slack, assignee, info.channel_id
    ):
        raise NotMember("Only members of this mailbox's channel can own its conversations.")
    return info


def assign(
    services: Services,
    slack: WebClient,
    actor: str,
    conversation_id: int,
    assignee: str | None,
) -> Outcome:
    """Set (or clear) the owner. AccessDenied for a clicker outside the channel, NotMember
    for an owner outside it."""
    info = check_assign(services, slack, actor, conversation_id, assignee)
    with session_scope(services.session_factory) as session:
        conversation, _ = actions._load(session, info.conversation_id)
        change = st.set_assignee(session, conversation, actor, assignee)
        if change is None:
            return Outcome(False, f"Conversation #{info.conversation_id} already is so.")
        conversation = session.get_one(Conversation, info.conversation_id)
        _dm_new_owner(session, conversation, change, actor)
        refresh_parent(session, conversation.id)
    who = f"<@{assignee}>" if assignee else "nobody"
    return Outcome(True, f"Conversation #{info.conversation_id} is now owned by {who}.")


def take(services: Services, slack: WebClient, user_id: str, conversation_id: int) -> Outcome:
    return assign(services, slack, user_id, conversation_id, user_id)


def mark_done(services: Services, slack: WebClient, user_id: str, conversation_id: int) -> bool:
    """Done: the status, and the conversation archived (in the mailbox too)."""
    info = _checked(services, slack, user_id, conversation_id)
    with session_scope(services.session_factory) as session:
        conversation, _ = actions._load(session, info.conversation_id)
        change = st.set_status(session, conversation, user_id, st.DONE)
        if change is not None:
            refresh_parent(session, conversation.id)
    archived = actions.archive(services, slack, user_id, info.conversation_id)
    return change is not None or archived


def reopen(services: Services, slack: WebClient, user_id: str, conversation_id: int) -> bool:
    info = _checked(services, slack, user_id, conversation_id)
    # The parent's state line says it; the Open modal's history says who (quiet by default).
    unarchived = actions.unarchive(services, slack, user_id, info.conversation_id)
    with session_scope(services.session_factory) as session:
        conversation, _ = actions._load(session, info.conversation_id)
        change = st.set_status(session, conversation, user_id, st.OPEN)
        if change is not None:
            refresh_parent(session, conversation.id)
    return change is not None or unarchived


def snooze(
    services: Services, slack: WebClient, user_id: str, conversation_id: int, until: datetime
) -> bool:
    info = _checked(services, slack, user_id, conversation_id)
    with session_scope(services.session_factory) as session:
        conversation, _ = actions._load(session, info.conversation_id)
        change = st.snooze(session, conversation, user_id, until)
        if change is None:
            return False
        conversation = session.get_one(Conversation, info.conversation_id)
        refresh_parent(session, conversation.id)
        return True


def unsnooze(services: Services, slack: WebClient, user_id: str, conversation_id: int) -> bool:
    info = _checked(services, slack, user_id, conversation_id)
    with session_scope(services.session_factory) as session:
        conversation, _ = actions._load(session, info.conversation_id)
        change = st.wake(session, conversation, user_id, "manual")
        if change is None:
            return False
        conversation = session.get_one(Conversation, info.conversation_id)
        refresh_parent(session, conversation.id)
        return True


def channel_people(services: Services, slack: WebClient, channel_id: str | None) -> list[SlackUser]:
    """The channel's people (no bots, no deactivated accounts), by name: who can own its
    conversations. A member the directory does not know is listed by user id."""
    if not channel_id:
        return []
    members = services.access.channel_members(slack, channel_id)
    directory = services.access.directory(slack)
    out = []
    for uid in members:
        person = directory.get(uid) or SlackUser(uid, "", "", "")
        if not (person.is_bot or person.deleted or uid == "USLACKBOT"):
            out.append(person)
    return sorted(out, key=lambda p: (p.label.lower(), p.user_id))


def channel_members(
    services: Services, slack: WebClient, channel_id: str | None
) -> list[tuple[str, str]]:
    """(user id, name) of the channel's people (no bots), for the Assign picker."""
    return [(p.user_id, p.label) for p in channel_people(services, slack, channel_id)]


def _words(text: str) -> list[str]:
    """Lowercased words of a name or of what was typed (split at anything not a letter or
    digit: spaces, dots, dashes, underscores, @)."""
    return [w for w in re.split(r"[\W_]+", text.lower()) if w]


def name_matches(typed: str, *names: str) -> bool:
    """Does every typed word start a word of one of `names`? ("ann b" finds Ann Bell,
    "max" finds max.member.)"""
    words = [w for n in names for w in _words(n)]
    return all(any(w.startswith(t) for w in words) for t in _words(typed))


def matching_people(people: list[SlackUser], query: str, limit: int) -> list[SlackUser]:
    """The people one of whose handle, display name or real name has a word starting with
    each typed word (case-insensitive), at most `limit`: those with a name starting with the
    whole text first, then the rest, each in the given (name) order."""
    typed = " ".join(_words(query))
    if not typed:
        return people[:limit]
    first: list[SlackUser] = []
    rest: list[SlackUser] = []
    for person in people:
        names = [n for n in (person.handle, person.display_name, person.real_name) if n]
        if not name_matches(typed, *names):
            continue
        whole = any(" ".join(_words(n)).startswith(typed) for n in names)
        (first if whole else rest).append(person)
        if len(first) >= limit:
            break
    return (first + rest)[:limit]


def assignee_options(
    services: Services, slack: WebClient, user_id: str, conversation_id: int, query: str
) -> list[tuple[str, str]]:
    """The Assign picker's options for what `user_id` typed: (value, label) of "Nobody" when
    it matches and of the matching people of the conversation's channel, at most
    `tb.MAX_OPTIONS`. Nothing for a person outside that channel or a conversation gone."""
    try:
        info = _checked(services, slack, user_id, conversation_id)
    except (AccessDenied, actions.NotFound):
        return []
    out: list[tuple[str, str]] = []
    if name_matches(query, tb.NOBODY_LABEL):
        out.append((tb.NOBODY, tb.NOBODY_LABEL))
    people = channel_people(services, slack, info.channel_id)
    for person in matching_people(people, query, tb.MAX_OPTIONS - len(out)):
        out.append((person.user_id, person.label))
    return out


# -- the reply modal's "is replying" mark ------------------------------------------------------


def replying_started(
    services: Services, conversation_id: int, user_id: str, now: datetime | None = None
) -> None:
    until = (now or utcnow()) + timedelta(seconds=REPLYING_SECONDS)
    with session_scope(services.session_factory) as session:
        conversation = actions._load(session, conversation_id)[0]
        if st.mark_replying(session, conversation.id, user_id, until):
            refresh_parent(session, conversation.id)


def replying_ended(services: Services, conversation_id: int, user_id: str) -> None:
    with session_scope(services.session_factory) as session:
        try:
            conversation = actions._load(session, conversation_id)[0]
        except actions.NotFound:
            return
        if st.clear_replying(session, conversation.id, user_id):
            refresh_parent(session, conversation.id)


# -- emoji triage ------------------------------------------------------------------------------


def reaction_verb(account: Account, reaction: str) -> str | None:
    """ "done" or "take" for a reaction name (skin tones ignored), per the account's setting."""
    config = dict(DEFAULT_REACTIONS)
    config.update({k: str(v) for k, v in ((account.config or {}).get("triage") or {}).items()})
    name = reaction.split("::", 1)[0].strip(":")
    for verb in ("done", "take"):
        if config.get(verb) and name == config[verb].strip(":"):
            return verb
    return None


def reaction_added(services: Services, slack: WebClient, event: dict[str, Any]) -> bool:
    """✅ on a parent marks it Done, 👀 takes it. Anything else, on any other message or from
    someone outside the channel, does nothing. True when something changed."""
    item = event.get("item") or {}
    user_id = str(event.get("user") or "")
    if item.get("type") != "message" or not user_id:
        return False
    from sqlalchemy import select

    from bot.store.models import SlackThread

    with read_scope(services.session_factory) as session:
        thread = session.scalar(
            select(SlackThread).where(
                SlackThread.channel_id == str(item.get("channel") or ""),
                SlackThread.ts == str(item.get("ts") or ""),
            )
        )
        if thread is None:
            return False
        conversation_id = thread.conversation_id
        conversation = session.get(Conversation, conversation_id)
        account = session.get(Account, conversation.account_id) if conversation else None
        if account is None:
            return False
        verb = reaction_verb(account, str(event.get("reaction") or ""))
    if verb is None:
        return False
    try:
        if verb == "done":
            return mark_done(services, slack, user_id, conversation_id)
        return take(services, slack, user_id, conversation_id).changed
    except (AccessDenied, actions.NotFound, NotMember):
        return False


# -- the worker's part -------------------------------------------------------------------------


def wake_due(services: Services, now: datetime | None = None, limit: int = 50) -> list[int]:
    """Wake every conversation whose snooze is due; their ids. Safe in several workers: rows
    are claimed with SKIP LOCKED and each wake is a conditional UPDATE."""
    now = now or utcnow()
    woken: list[int] = []
    with read_scope(services.session_factory) as reader:  # most ticks find nothing: no write lock
        if not st.anything_due(reader, now):
            return woken
    with session_scope(services.session_factory) as session:
        for cid in st.claim_due_snoozes(session, now=now, limit=limit):
            conversation = session.get_one(Conversation, cid)
            change = st.wake(session, conversation, st.SYSTEM, "time")
            if change is None:
                continue
            conversation = session.get_one(Conversation, cid)
            _announce_wake(session, conversation, change, "time")
            refresh_parent(session, cid)
            woken.append(cid)
        for cid in st.expire_replying(session, now=now, limit=limit):
            refresh_parent(session, cid)
    return woken


def on_ingested(session: Session, conversation: Conversation, message_pk: int, facts: Any) -> None:
    """The announce hook for an email that is news (not history imported at connect): status,
    "waiting since" and snooze follow it, and Slack is told about a wake-up."""
    from sqlalchemy import select

    from bot.store.models import Message

    direction: Direction | None = Direction.OUTBOUND
    if not facts.sent_by:
        direction = session.scalar(select(Message.direction).where(Message.id == message_pk))
    effects = st.on_mail(
        session,
        conversation,
        direction=direction or Direction.INBOUND,
        when=facts.date or facts.received_at,
        news=True,
    )
    if effects.woke is not None:
        _announce_wake(session, conversation, effects.woke, "mail")
    if effects.reopened or effects.woke or effects.waiting:
        refresh_parent(session, conversation.id)
