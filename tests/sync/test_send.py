"""Sending over SMTP: threading headers, the Sent copy, idempotency, APPEND failures."""

from __future__ import annotations

import email
import os
from pathlib import Path

from bot.store.db import session_scope
from bot.store.models import Account, Direction
from bot.sync.writeback import send_mail
from tests.mailservers.smtp_server import SmtpServer
from tests.sync.conftest import Env, make_raw


def _fetch_all(env: Env, username: str, folder: str) -> list[tuple[str, email.message.Message]]:
    out: list[tuple[str, email.message.Message]] = []
    with env.dovecot.admin(username) as conn:
        _, exists = conn.select(f'"{folder}"')
        if int(exists[0] or 0) == 0:
            return out
        _, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[])")
        for item in data:
            if isinstance(item, tuple):
                out.append((item[0].decode(), email.message_from_bytes(item[1])))
    return out


def _account(env: Env, aid: int) -> Account:
    with session_scope(env.factory) as s:
        acc = s.get_one(Account, aid)
        s.expunge(acc)
        return acc


def test_reply_over_smtp_threads_and_lands_in_sent(env: Env, smtp_server: SmtpServer) -> None:
    aid, support = env.new_account()
    cust_name, _ = env.dovecot.new_user("customer")
    customer = env.dovecot.user(cust_name)
    with session_scope(env.factory) as s:
        acc = s.get_one(Account, aid)
        smtp = smtp_server.settings(support.username)
        acc.config = {
            **acc.config,
            "smtp": {
                "host": smtp.host,
                "port": smtp.port,
                "security": "plain",
                "username": support.username,
            },
        }
    first, m1 = make_raw("Broken invoice", sender=customer.address, to=support.address)
    env.dovecot.deliver(support.username, first)
    env.sync(aid)
    [question] = env.messages(aid)

    reply, m2 = make_raw(
        "Re: Broken invoice",
        sender=support.address,
        to=customer.address,
        in_reply_to=m1,
        body="We fixed it.\n",
    )
    result = send_mail(
        env.services,
        _account(env, aid),
        reply,
        support.address,
        [customer.address],
        m2,
        sent_by="U123",
    )
    assert result.sent and not result.already_sent and not result.problems

    # The customer's mailbox got it, with the threading headers intact.
    got = [m for _, m in _fetch_all(env, customer.username, "INBOX")]
    assert [m["Message-ID"] for m in got] == [f"<{m2}>"]
    assert got[0]["In-Reply-To"] == f"<{m1}>" and m1 in got[0]["References"]
    # Our Sent folder has it, read.
    sent = _fetch_all(env, support.username, "Sent")
    assert [m["Message-ID"] for _, m in sent] == [f"<{m2}>"]
    assert "\\Seen" in sent[0][0]
    # The store shows it once, in the same conversation, as ours.
    msgs = {m.message_id: m for m in env.messages(aid)}
    assert msgs[m2].conversation_id == question.conversation_id
    assert msgs[m2].direction == Direction.OUTBOUND and msgs[m2].sent_by == "U123"

    # A retried outbox row does not send twice.
    again = send_mail(
        env.services, _account(env, aid), reply, support.address, [customer.address], m2
    )
    assert again.already_sent and not again.sent
    assert len(smtp_server.messages_to(customer.address)) == 1
    assert len(_fetch_all(env, support.username, "Sent")) == 1

    # Syncing Sent back recognises our copy; the customer's answer joins the conversation.
    answer, m3 = make_raw(
        "Re: Broken invoice",
        sender=customer.address,
        to=support.address,
        in_reply_to=m2,
        references=f"<{m1}> <{m2}>",
    )
    env.dovecot.deliver(support.username, answer)
    run = env.sync(aid)
    assert run.new == 1, run.problems
    msgs = {m.message_id: m for m in env.messages(aid)}
    assert set(msgs) == {m1, m2, m3}
    assert {m.conversation_id for m in msgs.values()} == {question.conversation_id}
    assert ("Sent", result.appended_uid, m2) in env.locations(aid)


def test_peer_22_failed_append_to_sent_neither_fails_nor_repeats_the_send(
    env: Env, smtp_server: SmtpServer
) -> None:
    aid, support = env.new_account()
    cust_name, _ = env.dovecot.new_user("customer")
    customer = env.dovecot.user(cust_name)
    with session_scope(env.factory) as s:
        acc = s.get_one(Account, aid)
        smtp = smtp_server.settings(support.username)
        acc.config = {
            **acc.config,
            "smtp": {
                "host": smtp.host,
                "port": smtp.port,
                "security": "plain",
                "username": support.username,
            },
        }
    env.sync(aid)  # creates the maildir folders
    sent_dir = Path(env.dovecot.mail_root) / support.username / ".Sent"
    locked = [sent_dir, sent_dir / "tmp", sent_dir / "new", sent_dir / "cur"]
    modes = {p: p.stat().st_mode for p in locked if p.exists()}
    raw, mid = make_raw("Big attachment reply", sender=support.address, to=customer.address)
    try:
        for p in modes:
            os.chmod(p, 0o555)  # the mail server may read Sent but not write to it
        result = send_mail(
            env.services, _account(env, aid), raw, support.address, [customer.address], mid
        )
    finally:
        for p, mode in modes.items():
            os.chmod(p, mode)
    assert result.sent
    assert any("not saved to Sent" in p for p in result.problems)
    assert len(smtp_server.messages_to(customer.address)) == 1
    # The message is in the store (shown in the conversation) despite the failed APPEND.
    assert [m.message_id for m in env.messages(aid)] == [mid]
    # Retrying the row does not send again.
    again = send_mail(
        env.services, _account(env, aid), raw, support.address, [customer.address], mid
    )
    assert again.already_sent and not again.sent
    assert len(smtp_server.messages_to(customer.address)) == 1
