"""Changes made in Mailroom reach the mailbox through the mail.* outbox handlers."""

from __future__ import annotations

import imaplib
import re

from slack_sdk import WebClient

from bot.outbox import mail_handlers
from bot.outbox.dispatch import Dispatcher, Registry
from bot.store.db import session_scope
from bot.store.models import Outbox, OutboxStatus
from bot.store.outbox import enqueue
from tests.sync.conftest import Env, make_raw


def run_outbox(env: Env) -> list[Outbox]:
    registry = Registry()
    mail_handlers.register(registry)
    Dispatcher(env.services, WebClient(token="xoxb-unused"), registry).run_until_idle(30)
    from sqlalchemy import select

    with session_scope(env.factory) as s:
        return list(s.scalars(select(Outbox).where(Outbox.kind.like("mail.%"))))


def enqueue_mail(env: Env, kind: str, key: str, payload: dict[str, object]) -> None:
    with session_scope(env.factory) as s:
        enqueue(s, kind=kind, key=key, payload=payload)


def server_flags(env: Env, username: str, folder: str) -> dict[str, str]:
    """Message-ID -> FLAGS as the mailbox has them."""
    out: dict[str, str] = {}
    with env.dovecot.admin(username) as conn:
        _, exists = conn.select(f'"{folder}"')
        if int(exists[0] or 0) == 0:
            return out
        typ, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        if typ != "OK":
            return out
        for item in data:
            if isinstance(item, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                mid = re.search(rb"<([^>]+)>", item[1])
                if mid:
                    out[mid.group(1).decode()] = (flags.group(1) if flags else b"").decode()
    return out


def test_set_read_from_mailroom_reaches_the_mailbox(env: Env) -> None:
    aid, user = env.new_account()
    raw, mid = make_raw("Mark me read")
    env.dovecot.deliver(user.username, raw)
    env.sync(aid)
    [msg] = env.messages(aid)
    enqueue_mail(env, "mail.set_read", "read:1", {"message_ids": [msg.id], "read": True})
    rows = run_outbox(env)
    assert [r.status for r in rows] == [OutboxStatus.DONE]
    assert "\\Seen" in server_flags(env, user.username, "INBOX")[mid]
    [msg] = env.messages(aid)
    assert msg.is_read and env.conversation(msg.conversation_id).unread_count == 0
    # The next sync agrees (remote wins, and remote now says read).
    env.sync(aid)
    assert env.messages(aid)[0].is_read
    enqueue_mail(env, "mail.set_read", "read:2", {"message_ids": [msg.id], "read": False})
    run_outbox(env)
    assert "\\Seen" not in server_flags(env, user.username, "INBOX")[mid]
    env.sync(aid)
    assert not env.messages(aid)[0].is_read


def test_archive_unarchive_and_trash_move_mail_and_locations(env: Env) -> None:
    aid, user = env.new_account()
    raw1, m1 = make_raw("Thread start")
    raw2, m2 = make_raw("Re: Thread start", in_reply_to=m1)
    env.dovecot.deliver(user.username, raw1)
    env.dovecot.deliver(user.username, raw2)
    env.sync(aid)
    conv_id = env.messages(aid)[0].conversation_id
    enqueue_mail(env, "mail.archive", "arch:1", {"conversation_id": conv_id})
    assert [r.status for r in run_outbox(env)] == [OutboxStatus.DONE]
    assert set(server_flags(env, user.username, "Archive")) == {m1, m2}
    assert server_flags(env, user.username, "INBOX") == {}
    assert {f for f, _, _ in env.locations(aid)} == {"Archive"}
    assert env.conversation(conv_id).archived
    # Peer #1 (chatwoot #12054): the next sync neither re-imports nor un-archives.
    run = env.sync(aid)
    assert run.new == 0 and len(env.messages(aid)) == 2
    assert env.conversation(conv_id).archived
    assert len(env.locations(aid)) == 2

    enqueue_mail(env, "mail.unarchive", "unarch:1", {"conversation_id": conv_id})
    run_outbox(env)
    assert set(server_flags(env, user.username, "INBOX")) == {m1, m2}
    assert {f for f, _, _ in env.locations(aid)} == {"INBOX"}
    assert not env.conversation(conv_id).archived
    env.sync(aid)
    assert not env.conversation(conv_id).archived and len(env.locations(aid)) == 2

    enqueue_mail(env, "mail.trash", "trash:1", {"conversation_id": conv_id})
    run_outbox(env)
    assert set(server_flags(env, user.username, "Trash")) == {m1, m2}
    assert env.locations(aid) == []
    assert env.conversation(conv_id).deleted
    assert all(m.deleted for m in env.messages(aid))
    run = env.sync(aid)
    assert run.new == 0 and env.conversation(conv_id).deleted


def test_peer_1_archived_conversation_is_not_brought_back_by_sync(env: Env) -> None:
    aid, user = env.new_account()
    raw, _ = make_raw("Do not resurrect")
    env.dovecot.deliver(user.username, raw)
    env.sync(aid)
    conv_id = env.messages(aid)[0].conversation_id
    enqueue_mail(env, "mail.archive", "arch:p1", {"conversation_id": conv_id})
    run_outbox(env)
    for _ in range(2):
        env.sync(aid)
    from bot.store.models import Conversation

    assert env.count(Conversation, aid) == 1
    assert env.conversation(conv_id).archived


def test_peer_3_flag_update_on_vanished_message_does_not_reimport(env: Env) -> None:
    aid, user = env.new_account()
    raw, _ = make_raw("Vanishes before the flag write")
    uid = env.dovecot.deliver(user.username, raw)
    env.sync(aid)
    [msg] = env.messages(aid)
    with env.dovecot.admin(user.username) as conn:
        conn.select("INBOX")
        conn.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
        conn.expunge()
    enqueue_mail(env, "mail.set_read", "read:p3", {"message_ids": [msg.id], "read": True})
    assert [r.status for r in run_outbox(env)] == [OutboxStatus.DONE]
    env.sync(aid)
    env.sync(aid)
    assert len(env.messages(aid)) == 1  # not imported again


def test_unknown_host_write_back_is_retried_not_lost(env: Env) -> None:
    aid, user = env.new_account()
    raw, _ = make_raw("Server goes away")
    env.dovecot.deliver(user.username, raw)
    env.sync(aid)
    [msg] = env.messages(aid)
    with session_scope(env.factory) as s:
        from bot.store.models import Account

        acc = s.get_one(Account, aid)
        acc.config = {**acc.config, "imap": {**acc.config["imap"], "port": _closed_port()}}
    enqueue_mail(env, "mail.set_read", "read:down", {"message_ids": [msg.id], "read": True})
    [row] = run_outbox(env)
    assert row.status == OutboxStatus.PENDING and row.attempts == 1
    assert row.last_error


def _closed_port() -> int:
    from tests.mailservers.dovecot import free_port

    return free_port()


_ = imaplib  # stdlib client used through env.dovecot.admin
