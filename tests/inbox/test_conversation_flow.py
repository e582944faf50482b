"""The inbox in Slack, end to end: real Dovecot mailbox → sync → store → outbox → fake Slack,
and signed Slack requests → Bolt over HTTP → store → outbox → the same mailbox."""

from __future__ import annotations

import imaplib
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import LISTENER_THREADS
from bot.blocks import ids
from bot.blocks.link_client import LINK_BLOCK
from bot.inbox.announce import announce_ingested
from bot.store import clients
from bot.store.db import session_scope
from bot.store.ingest import ingest_message
from bot.store.models import (
    Account,
    AuditLog,
    Conversation,
    Message,
    Outbox,
    OutboxStatus,
    SlackPost,
    SlackThread,
    utcnow,
)
from bot.sync.engine import sync_account
from tests.slackfake import validate_message, validate_view

CHANNEL = "CINBOX"


# -- helpers --------------------------------------------------------------------------------


def make_email(
    subject: str,
    body: str,
    *,
    to: str,
    sender: str = "Ann Client <ann@client.example>",
    reply_to: str | None = None,
    msgid: str | None = None,
    attachment: tuple[str, bytes] | None = None,
) -> tuple[bytes, str]:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    mid = msgid or make_msgid(domain="client.example")
    msg["Message-ID"] = mid
    if reply_to:
        msg["In-Reply-To"] = reply_to
        msg["References"] = reply_to
    msg.set_content(body)
    if attachment:
        msg.add_attachment(
            attachment[1], maintype="application", subtype="octet-stream", filename=attachment[0]
        )
    return bytes(msg), mid


def settle(mailroom: Any) -> None:
    """Wait until every Bolt listener started so far has finished: a barrier that needs all
    of the pool's workers can only be passed once earlier listeners gave theirs back."""
    executor = mailroom.app.listener_runner.listener_executor
    barrier = threading.Barrier(LISTENER_THREADS + 1)
    for _ in range(LISTENER_THREADS):
        executor.submit(barrier.wait, 30)
    barrier.wait(30)


def run_all(mailroom: Any, rounds: int = 40) -> None:
    """Run the outbox until nothing is left pending, including rows delayed by Retry-After."""
    for _ in range(rounds):
        mailroom.run_outbox()
        with mailroom.services.session_factory() as s:
            left = s.scalar(
                select(func.count())
                .select_from(Outbox)
                .where(Outbox.status == OutboxStatus.PENDING)
            )
        if not left:
            return
        time.sleep(0.25)  # a row waits for its Retry-After; poll, then run it
    raise AssertionError("outbox rows still pending")


def conv_id(mailroom: Any) -> int:
    with mailroom.services.session_factory() as s:
        return int(s.scalar(select(Conversation.id).where(Conversation.merged_into_id.is_(None))))


def conversation(mailroom: Any, cid: int) -> Conversation:
    with mailroom.services.session_factory() as s:
        c = s.get(Conversation, cid)
        assert c is not None
        return c


def count(mailroom: Any, model: Any, *where: Any) -> int:
    with mailroom.services.session_factory() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


LIST_LINE = re.compile(r'\((?P<flags>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)')


def folders(dovecot: Any, user: Any) -> dict[str, list[set[str]]]:
    """Every folder of the mailbox with the flags of each message in it."""
    out: dict[str, list[set[str]]] = {}
    with dovecot.admin(user.username) as conn:
        _typ, listing = conn.list()
        for line in listing:
            match = LIST_LINE.match(line.decode())
            if match is None:
                continue
            name = match["name"].strip('"')
            typ, exists = conn.select(f'"{name}"', readonly=True)
            if typ != "OK":
                continue
            if int(exists[0] or 0) == 0:
                out[name] = []
                continue
            _typ, data = conn.fetch("1:*", "(FLAGS)")
            out[name] = [
                {f.decode() for f in imaplib.ParseFlags(item)} - {"\\Recent"}
                for item in data or []
                if isinstance(item, bytes) and b"FLAGS" in item
            ]
    return out


def all_ok(fake: Any) -> None:
    """Every post, update and view the app sent passed the fake's Block Kit checks."""
    for method in ("chat.postMessage", "chat.update", "views.open", "views.update"):
        for call in fake.calls_to(method):
            assert call.error not in ("invalid_blocks", "invalid_arguments", "msg_too_long"), call


def parent(fake: Any) -> dict[str, Any]:
    tops = fake.top_level(CHANNEL)
    assert len(tops) == 1, tops
    return tops[0]


def click_more(mailroom: Any, user: str, verb: str, cid: int) -> Any:
    ts = parent(mailroom.fake)["ts"]
    return mailroom.driver.block_action(
        user,
        ids.CONV_MORE,
        channel_id=CHANNEL,
        message_ts=ts,
        selected_option={"text": {"type": "plain_text", "text": verb}, "value": f"{verb}:{cid}"},
    )


def wait_db(mailroom: Any, predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, "store never reached the expected state"
        time.sleep(0.05)


@pytest.fixture
def inbox(mailroom: Any, dovecot: Any, smtp_server: Any) -> tuple[Any, Account, Any]:
    acc, user = mailroom.mailbox_account(dovecot, smtp_server)
    return mailroom, acc, user


# -- tests ----------------------------------------------------------------------------------


def test_new_email_posted_once_and_reply_joins_thread(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    raw, mid = make_email("Invoice 42", "Please resend the invoice.", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    sync_account(m.services, acc.id)  # nothing new: nothing queued twice
    # The announce hook is idempotent by itself too.
    with session_scope(m.services.session_factory) as s:
        account = s.get_one(Account, acc.id)
        again = ingest_message(s, account, raw)
        announce_ingested(s, account, again)
    run_all(m)
    top = parent(m.fake)
    assert "Invoice 42" in json.dumps(top["blocks"])
    assert count(m, SlackThread, SlackThread.ts == top["ts"]) == 1

    reply, _ = make_email("Re: Invoice 42", "Any news?", to=user.address, reply_to=mid)
    dovecot.deliver(user.username, reply)
    sync_account(m.services, acc.id)
    run_all(m)
    parent(m.fake)  # still one parent
    replies = m.fake.thread(CHANNEL, top["ts"])
    assert len(replies) == 2  # the first email, then the reply
    assert "Please resend the invoice." in json.dumps(replies[0]["blocks"])
    assert "Any news?" in json.dumps(replies[1]["blocks"])
    assert "2 emails" in json.dumps(m.fake.message(CHANNEL, top["ts"])["blocks"])
    all_ok(m.fake)


def test_crash_after_claim_and_after_post_never_doubles(inbox: Any, dovecot: Any) -> None:
    from bot.outbox import slack_handlers
    from bot.outbox.dispatch import OutboxContext
    from bot.store.outbox import claim_due

    m, acc, user = inbox
    raw, _ = make_email("Crashy", "body", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    # A worker claims the post and dies before doing anything: its lease runs out.
    with session_scope(m.services.session_factory) as s:
        claimed = claim_due(s, owner="dead-worker", lease_seconds=-1, limit=10)
        # One row per lane: the email's thread post waits behind its parent in the channel.
        assert [r.kind for r in claimed] == ["slack.post_parent"]
        row_id = claimed[0].id
    # Another worker posted it but died before marking the row done.
    with m.services.session_factory() as s:
        row = s.get_one(Outbox, row_id)
    slack_handlers.post_parent(OutboxContext(m.services, m.app.client), row)
    run_all(m)
    assert len(m.fake.calls_to("chat.postMessage")) == 2  # the parent and the email, once each
    assert len(m.fake.thread(CHANNEL, parent(m.fake)["ts"])) == 1


def test_rate_limited_post_is_delayed_not_lost_or_doubled(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    raw, _ = make_email("Busy Slack", "body", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    # Twice: the Web client's own single retry gets the second 429, so the outbox must wait.
    # A Retry-After longer than run_outbox waits for a lane: the row is left pending.
    m.fake.fail_next("chat.postMessage", status=429, retry_after=3, times=2)
    m.run_outbox()
    with m.services.session_factory() as s:
        row = s.scalar(select(Outbox).where(Outbox.kind == "slack.post_parent"))
        assert row is not None and row.status == OutboxStatus.PENDING
        assert "rate limit" in (row.last_error or "")
    assert m.fake.top_level(CHANNEL) == []
    run_all(m)
    parent(m.fake)
    # The parent and the email in its thread, each once.
    assert len([c for c in m.fake.calls_to("chat.postMessage") if c.ok]) == 2


def test_email_text_is_escaped_in_slack(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    evil = "Hello <!channel> pay at <https://evil.example|bank>"
    raw, _ = make_email(
        evil, evil + "\n" + evil, to=user.address, sender=f'"{evil}" <x@evil.example>'
    )
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    top = parent(m.fake)
    shown = json.dumps(top["blocks"]) + top["text"]
    assert "<!channel>" not in shown and "<https://evil" not in shown
    assert "&lt;!channel&gt;" in shown
    cid = conv_id(m)
    m.driver.block_action(
        "UMEMBER", ids.CONV_OPEN, str(cid), channel_id=CHANNEL, message_ts=top["ts"]
    )
    call = m.fake.wait_for("views.open")[-1]
    view = call.arg("view")
    assert "<!channel>" not in json.dumps(view) and "&lt;!channel&gt;" in json.dumps(view)
    assert validate_view(view) == []
    assert validate_message({"text": top["text"], "blocks": top["blocks"]}) == (None, [])


def test_open_marks_read_in_store_and_mailbox(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    raw, _ = make_email("Read me", "The body of the email.", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    cid = conv_id(m)
    top = parent(m.fake)
    assert "Unread" in json.dumps(top["blocks"])
    resp = m.driver.block_action(
        "UMEMBER", ids.CONV_OPEN, str(cid), channel_id=CHANNEL, message_ts=top["ts"]
    )
    assert resp.status == 200
    view = m.fake.wait_for("views.open")[-1].arg("view")
    assert view["callback_id"] == ids.VIEW_OPEN_EMAIL
    assert "The body of the email." in json.dumps(view)
    wait_db(m, lambda: conversation(m, cid).unread_count == 0)
    run_all(m)
    assert folders(dovecot, user)["INBOX"] == [{"\\Seen"}]
    top = m.fake.message(CHANNEL, top["ts"])
    assert "Unread" not in json.dumps(top["blocks"])
    # Quiet: opening posts nothing in the thread (only the email itself is there); the parent
    # names the reader, without a mention.
    thread = m.fake.thread(CHANNEL, top["ts"])
    assert len(thread) == 1 and "The body of the email." in json.dumps(thread[0]["blocks"])
    assert "Read by Max Member" in json.dumps(top["blocks"])

    # Mark unread goes back to the mailbox too.
    click_more(m, "UMEMBER", ids.CONV_MARK_UNREAD, cid)
    wait_db(m, lambda: conversation(m, cid).unread_count == 1)
    run_all(m)
    assert folders(dovecot, user)["INBOX"] == [set()]
    all_ok(m.fake)


def test_archive_once_even_when_clicked_twice(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    raw, _ = make_email("Archive me", "body", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    cid = conv_id(m)
    click_more(m, "UMEMBER", ids.CONV_ARCHIVE, cid)
    click_more(m, "UMEMBER", ids.CONV_ARCHIVE, cid)  # Slack retry / double click
    settle(m)
    assert conversation(m, cid).archived
    assert count(m, AuditLog, AuditLog.action == "conversation.archive") == 1
    assert count(m, Outbox, Outbox.kind == "mail.archive") == 1
    run_all(m)
    boxes = folders(dovecot, user)
    assert boxes["INBOX"] == []
    assert sum(len(v) for k, v in boxes.items() if "rchive" in k) == 1
    top = parent(m.fake)
    assert "Archived" in json.dumps(top["blocks"])
    assert "Archived by Max Member" in json.dumps(top["blocks"])
    assert len(m.fake.thread(CHANNEL, top["ts"])) == 1  # the email; no note

    click_more(m, "UMEMBER", ids.CONV_UNARCHIVE, cid)
    wait_db(m, lambda: not conversation(m, cid).archived)
    run_all(m)
    assert len(folders(dovecot, user)["INBOX"]) == 1
    all_ok(m.fake)


def test_delete_asks_first_then_moves_to_trash(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    raw, _ = make_email("Delete me", "body", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    cid = conv_id(m)
    click_more(m, "UMEMBER", ids.CONV_DELETE, cid)
    view = m.fake.wait_for("views.open")[-1].arg("view")
    assert view["callback_id"] == ids.VIEW_CONFIRM_DELETE
    settle(m)
    assert not conversation(m, cid).deleted  # asking changed nothing
    view_id = m.fake.modal_stack("UMEMBER")[-1]["id"]
    resp = m.driver.view_submission("UMEMBER", view_id)
    assert resp.status == 200
    m.settle()  # the change is written right after the ack
    assert conversation(m, cid).deleted
    run_all(m)
    boxes = folders(dovecot, user)
    assert boxes["INBOX"] == []
    assert sum(len(v) for k, v in boxes.items() if "rash" in k) == 1
    assert "In Trash" in json.dumps(parent(m.fake)["blocks"])
    all_ok(m.fake)


def test_link_and_unlink_client_with_confirmation(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    with session_scope(m.services.session_factory) as s:
        client = clients.create_client(s, name="Globex", company="Globex Corp")
        client_id = client.id
    raw, _ = make_email("Link me", "body", to=user.address, sender="someone@webmail.example")
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    cid = conv_id(m)
    click_more(m, "UMEMBER", ids.CONV_LINK, cid)
    m.fake.wait_for("views.open")
    view_id = m.fake.modal_stack("UMEMBER")[-1]["id"]
    opts = m.driver.block_suggestion("UMEMBER", ids.LINK_CLIENT_SELECT, "glob", view=view_id)
    assert [o["value"] for o in opts.json()["options"]] == [str(client_id)]
    m.driver.view_submission(
        "UMEMBER", view_id, {LINK_BLOCK: {ids.LINK_CLIENT_SELECT: str(client_id)}}
    )
    m.settle()  # the change is written right after the ack
    with m.services.session_factory() as s:
        c = s.get_one(Conversation, cid)
        assert c.link is not None and c.link.client_id == client_id
    run_all(m)
    top = parent(m.fake)
    assert "Globex (linked by Max Member)" in json.dumps(top["blocks"])

    click_more(m, "UMEMBER", ids.CONV_UNLINK, cid)
    view = m.fake.wait_for("views.open", count=2)[-1].arg("view")
    assert view["callback_id"] == ids.VIEW_CONFIRM_UNLINK
    settle(m)
    with m.services.session_factory() as s:
        assert s.get_one(Conversation, cid).link is not None  # still linked until confirmed
    view_id = m.fake.modal_stack("UMEMBER")[-1]["id"]
    m.driver.view_submission("UMEMBER", view_id)
    m.settle()
    with m.services.session_factory() as s:
        assert s.get_one(Conversation, cid).link is None
    run_all(m)
    assert "Globex" not in json.dumps(parent(m.fake)["blocks"][-2:])
    assert len(m.fake.thread(CHANNEL, parent(m.fake)["ts"])) == 1  # the email; no notes
    all_ok(m.fake)


def test_outsider_is_refused_and_nothing_changes(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    raw, _ = make_email("Private", "secret body", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    cid = conv_id(m)
    top = parent(m.fake)
    click_more(m, "UOUTSIDER", ids.CONV_ARCHIVE, cid)
    m.driver.block_action(
        "UOUTSIDER", ids.CONV_OPEN, str(cid), channel_id=CHANNEL, message_ts=top["ts"]
    )
    click_more(m, "UOUTSIDER", ids.CONV_DELETE, cid)
    settle(m)
    refusals = [r for r in m.fake.responses if r.user_id == "UOUTSIDER"]
    assert len(refusals) == 3
    assert all(r.body.get("response_type") == "ephemeral" for r in refusals)
    assert m.fake.calls_to("views.open") == []  # no email shown, no confirmation offered
    c = conversation(m, cid)
    assert not c.archived and not c.deleted and c.unread_count == 1
    assert count(m, AuditLog, AuditLog.actor == "UOUTSIDER") == 0
    assert count(m, Outbox, Outbox.kind.like("mail.%")) == 0
    assert "secret body" not in json.dumps([r.body for r in refusals])


def test_attachments_uploaded_into_the_thread(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    raw, _ = make_email(
        "With file", "see attached", to=user.address, attachment=("report.bin", b"\x00\x01data")
    )
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    top = parent(m.fake)
    uploads = m.fake.calls_to("files.completeUploadExternal")
    assert len(uploads) == 1 and uploads[0].ok
    assert uploads[0].args.get("thread_ts") == top["ts"]
    assert count(m, SlackPost, SlackPost.key.like("slack.upload_attachments:%")) == 1
    run_all(m)
    assert len(m.fake.calls_to("files.completeUploadExternal")) == 1


def test_server_error_is_retried(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    raw, _ = make_email("Outage", "body", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    m.fake.fail_next("chat.postMessage", status=503)
    m.run_outbox()
    with m.services.session_factory() as s:
        row = s.scalar(select(Outbox).where(Outbox.kind == "slack.post_parent"))
        assert row is not None and row.status == OutboxStatus.PENDING
        # Retry sooner than the backoff would, as a person pressing "retry" does.
        row_id = row.id
    with session_scope(m.services.session_factory) as s:
        s.get_one(Outbox, row_id).next_attempt_at = datetime.now(UTC)
    run_all(m)
    parent(m.fake)


def test_history_is_not_announced(mailroom: Any, dovecot: Any, smtp_server: Any) -> None:
    acc, user = mailroom.mailbox_account(dovecot, smtp_server, announce_history=False)
    old = EmailMessage()
    old["From"], old["To"], old["Subject"] = "a@client.example", user.address, "Old news"
    old["Date"] = "Mon, 01 Jan 2024 10:00:00 +0000"
    old["Message-ID"] = make_msgid(domain="client.example")
    old.set_content("from before the account was connected")
    dovecot.deliver(user.username, bytes(old))
    # The account is connected after this mail arrived (INTERNALDATE has whole seconds).
    time.sleep(2.1)
    with session_scope(mailroom.services.session_factory) as s:
        s.get_one(Account, acc.id).announce_after = utcnow()
    sync_account(mailroom.services, acc.id)
    run_all(mailroom)
    assert mailroom.fake.top_level(CHANNEL) == []
    assert count(mailroom, Outbox, Outbox.kind.like("slack.%")) == 0


def test_open_one_email_from_the_thread(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    raw, mid = make_email("Thread", "first email", to=user.address)
    dovecot.deliver(user.username, raw)
    reply, _ = make_email("Re: Thread", "second email", to=user.address, reply_to=mid)
    dovecot.deliver(user.username, reply)
    sync_account(m.services, acc.id)
    run_all(m)
    top = parent(m.fake)
    _first, email = m.fake.thread(CHANNEL, top["ts"])
    button = email["blocks"][-1]["elements"][0]
    m.driver.block_action(
        "UMEMBER", ids.CONV_OPEN, button["value"], channel_id=CHANNEL, message_ts=email["ts"]
    )
    view = m.fake.wait_for("views.open")[-1].arg("view")
    assert "second email" in json.dumps(view) and "first email" not in json.dumps(view)
    cid = conv_id(m)
    wait_db(m, lambda: conversation(m, cid).unread_count == 1)  # only that email was read
    with m.services.session_factory() as s:
        read = s.scalars(select(Message.is_read).order_by(Message.date, Message.id)).all()
    assert list(read) == [False, True]


def _surface(kind: str, cid: int) -> dict[str, Any]:
    """A Home tab or modal (e.g. search results) carrying an Open button for a conversation."""
    button = {
        "type": "button",
        "action_id": ids.CONV_OPEN,
        "text": {"type": "plain_text", "text": "Open"},
        "value": str(cid),
    }
    view: dict[str, Any] = {
        "type": kind,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "x"}, "accessory": button}
        ],
    }
    if kind == "modal":
        view["title"] = {"type": "plain_text", "text": "Search"}
    return view


def test_open_from_a_modal_pushes_and_outsider_on_home_gets_a_dm(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    raw, _ = make_email("Found by search", "search body", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    cid = conv_id(m)
    top = parent(m.fake)
    m.driver.block_action(
        "UMEMBER", ids.CONV_OPEN, str(cid), channel_id=CHANNEL, message_ts=top["ts"]
    )
    m.fake.wait_for("views.open")
    m.driver.block_action("UMEMBER", ids.CONV_OPEN, str(cid), view=_surface("modal", cid))
    pushed = m.fake.wait_for("views.push")[-1]
    assert pushed.ok and "search body" in json.dumps(pushed.arg("view"))

    m.driver.block_action("UOUTSIDER", ids.CONV_OPEN, str(cid), view=_surface("home", cid))
    settle(m)
    dms = [
        c
        for c in m.fake.calls_to("chat.postMessage")
        if "member of its channel" in str(c.args.get("text"))
    ]
    assert len(dms) == 1 and dms[0].ok
    assert len(m.fake.calls_to("views.open")) == 1  # nothing opened for the outsider
