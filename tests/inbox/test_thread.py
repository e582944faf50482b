"""The Slack thread is the whole conversation (issue #14, points 1, 2, 3, 5 and 7), end to end:
real Dovecot mailbox and SMTP server → sync → store → outbox → fake Slack, and signed Slack
requests → Bolt over HTTP → store → outbox → the same mailboxes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.message import Message as EmailMsg
from email.utils import format_datetime, make_msgid
from typing import Any

import pytest
from sqlalchemy import select

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.inbox.announce import BROADCAST_SETTING
from bot.store.db import session_scope
from bot.store.models import Account, Message, Outbox, OutboxStatus, SlackPost
from bot.sync.engine import sync_account
from tests.inbox.test_conversation_flow import (
    CHANNEL,
    all_ok,
    conv_id,
    conversation,
    count,
    folders,
    make_email,
    parent,
    run_all,
    settle,
    wait_db,
)

pytestmark = pytest.mark.dovecot

MENTION = re.compile(r"<@[UW][A-Z0-9]+(\|[^>]*)?>")


@pytest.fixture
def inbox(mailroom: Any, dovecot: Any, smtp_server: Any) -> tuple[Any, Account, Any]:
    acc, user = mailroom.mailbox_account(dovecot, smtp_server)
    return mailroom, acc, user


def no_mentions(fake: Any) -> None:
    """No message the app posted or updated @-mentions anyone (nobody is pinged for what they
    or a teammate did)."""
    for method in ("chat.postMessage", "chat.update"):
        for call in fake.calls_to(method):
            shown = json.dumps(call.args.get("blocks")) + str(call.args.get("text") or "")
            assert not MENTION.search(shown), (method, shown[:500])


def blocks_text(message: dict[str, Any]) -> str:
    return json.dumps(message.get("blocks") or []) + str(message.get("text") or "")


def deliver_thread(
    m: Any, dovecot: Any, acc: Account, user: Any, bodies: list[str], **first: Any
) -> list[str]:
    """One conversation of len(bodies) emails, each synced and posted before the next."""
    mids: list[str] = []
    base = datetime.now(UTC) - timedelta(minutes=len(bodies))
    for n, body in enumerate(bodies):
        msg = EmailMessage()
        msg["From"] = "Ann Client <ann@client.example>"
        msg["To"] = user.address
        msg["Subject"] = "Broken widget" if n == 0 else "Re: Broken widget"
        msg["Date"] = format_datetime(base + timedelta(seconds=n * 10))
        mid = make_msgid(domain="client.example")
        msg["Message-ID"] = mid
        if mids:
            msg["In-Reply-To"] = mids[-1]
            msg["References"] = " ".join(mids)
        msg.set_content(body)
        for name, data in (first.get("attachments") or {}).get(n, []):
            msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
        dovecot.deliver(user.username, bytes(msg))
        sync_account(m.services, acc.id)
        run_all(m)
        mids.append(mid)
    return mids


def email_posts(m: Any) -> list[dict[str, Any]]:
    """The thread's email posts (those with Reply buttons), oldest first."""
    return [
        p
        for p in m.fake.thread(CHANNEL, parent(m.fake)["ts"])
        if ids.CONV_REPLY in json.dumps(p.get("blocks") or [])
    ]


def button(post: dict[str, Any], action_id: str) -> dict[str, Any]:
    for block in post.get("blocks") or []:
        for el in block.get("elements") or []:
            if el.get("action_id") == action_id:
                return dict(el)
    raise LookupError(action_id)


def open_modal(m: Any, user: str = "UMEMBER") -> dict[str, Any]:
    m.fake.wait_until(lambda: m.fake.modal_stack(user), timeout=10)
    return dict(m.fake.modal_stack(user)[-1])


# -- 1: every email readable; the parent keeps the first --------------------------------------


def test_three_emails_all_in_thread_parent_keeps_first_and_open_steps(
    inbox: Any, dovecot: Any
) -> None:
    m, acc, user = inbox
    deliver_thread(
        m,
        dovecot,
        acc,
        user,
        ["First: the widget broke.", "Second: still broken.", "Third: any news?"],
    )
    top = parent(m.fake)
    posts = email_posts(m)
    assert len(posts) == 3
    expected = ("First: the widget", "Second: still", "Third: any news?")
    for post, text in zip(posts, expected, strict=True):
        assert text in blocks_text(post)
    # The parent keeps the first email's sender and snippet, never the newest.
    shown = blocks_text(top)
    assert "First: the widget broke." in shown and "Third: any news?" not in shown
    assert "Ann Client" in shown and "3 emails" in shown

    # Open the second email from its own post, then step back and forth.
    before = len(m.fake.thread(CHANNEL, top["ts"]))
    value = button(posts[1], ids.CONV_OPEN)["value"]
    m.driver.block_action("UMEMBER", ids.CONV_OPEN, value, channel_id=CHANNEL, message=posts[1])
    view = open_modal(m)
    assert "Second: still broken." in json.dumps(view["blocks"])
    assert "Email 2 of 3" in json.dumps(view["blocks"])
    m.driver.block_action(
        "UMEMBER", ids.EMAIL_PREV, button(view, ids.EMAIL_PREV)["value"], view=view["id"]
    )
    m.fake.wait_until(
        lambda: "First: the widget" in json.dumps(m.fake.view(view["id"])), timeout=10
    )
    first_view = m.fake.view(view["id"])
    assert first_view is not None
    with pytest.raises(LookupError):
        button(first_view, ids.EMAIL_PREV)  # nothing before the first email
    m.driver.block_action(
        "UMEMBER", ids.EMAIL_NEXT, button(first_view, ids.EMAIL_NEXT)["value"], view=view["id"]
    )
    m.fake.wait_until(lambda: "Second: still" in json.dumps(m.fake.view(view["id"])), timeout=10)
    second = m.fake.view(view["id"])
    assert second is not None
    m.driver.block_action(
        "UMEMBER", ids.EMAIL_NEXT, button(second, ids.EMAIL_NEXT)["value"], view=view["id"]
    )
    m.fake.wait_until(lambda: "Third: any news?" in json.dumps(m.fake.view(view["id"])), timeout=10)
    settle(m)
    run_all(m)

    # 7: reading posted nothing in the thread; the parent names the reader without a mention.
    assert len(m.fake.thread(CHANNEL, top["ts"])) == before
    assert "Read by Max Member" in blocks_text(m.fake.message(CHANNEL, top["ts"]) or {})
    with m.services.session_factory() as s:
        assert all(s.scalars(select(Message.is_read)).all())
    assert m.fake.ack_problems == []
    no_mentions(m.fake)
    all_ok(m.fake)


def test_a_stepped_to_email_of_another_conversation_is_refused(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    deliver_thread(m, dovecot, acc, user, ["Mine.", "Mine too."])
    raw, _ = make_email("Other topic", "Not this one.", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    cid = conv_id(m)
    with m.services.session_factory() as s:
        other = s.scalar(select(Message.id).where(Message.conversation_id != cid))
    posts = m.fake.thread(CHANNEL, m.fake.top_level(CHANNEL)[0]["ts"])
    m.driver.block_action(
        "UMEMBER",
        ids.CONV_OPEN,
        f"{cid}",
        channel_id=CHANNEL,
        message_ts=m.fake.top_level(CHANNEL)[0]["ts"],
    )
    view = open_modal(m)
    # A forged step to an email of another conversation shows nothing of it.
    m.driver.block_action("UMEMBER", ids.EMAIL_PREV, f"{cid}:{other}", view=view["id"])
    settle(m)
    shown = json.dumps(m.fake.view(view["id"]))
    assert "Not this one." not in shown
    assert posts  # the first conversation's thread exists


# -- 2: follow-ups surface ----------------------------------------------------------------------


def test_followup_to_archived_conversation_is_broadcast_and_back_in_the_inbox(
    inbox: Any, dovecot: Any
) -> None:
    m, acc, user = inbox
    mids = deliver_thread(m, dovecot, acc, user, ["Please fix the widget."])
    cid = conv_id(m)
    top = parent(m.fake)
    # "Done" is a top-level button on the parent.
    m.driver.block_action("UMEMBER", ids.CONV_ARCHIVE, str(cid), channel_id=CHANNEL, message=top)
    wait_db(m, lambda: conversation(m, cid).archived)
    run_all(m)
    assert folders(dovecot, user)["INBOX"] == []
    assert "Archived by Max Member" in blocks_text(parent(m.fake))

    raw, _ = make_email("Re: Broken widget", "It broke again!", to=user.address, reply_to=mids[0])
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    sync_account(m.services, acc.id)  # the mailbox moved: nothing new to post
    run_all(m)
    # In the channel, not only in the thread.
    broadcasts = [
        msg for msg in m.fake.messages(CHANNEL) if msg.get("subtype") == "thread_broadcast"
    ]
    assert len(broadcasts) == 1 and "It broke again!" in blocks_text(broadcasts[0])
    assert broadcasts[0]["thread_ts"] == top["ts"]
    # Back in the inbox: the store, the mailbox's INBOX (both emails) and the parent.
    assert not conversation(m, cid).archived
    assert len(folders(dovecot, user)["INBOX"]) == 2
    assert "Back in the inbox" in blocks_text(parent(m.fake))
    no_mentions(m.fake)
    all_ok(m.fake)


def test_broadcasting_can_be_turned_off(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    with session_scope(m.services.session_factory) as s:
        account = s.get_one(Account, acc.id)
        account.config = {**account.config, BROADCAST_SETTING: False}
    deliver_thread(m, dovecot, acc, user, ["One.", "Two."])
    assert len(email_posts(m)) == 2
    assert not [msg for msg in m.fake.messages(CHANNEL) if msg.get("subtype")]


# -- 3: what the team sent is in the thread, in full ----------------------------------------


def test_replies_from_the_modal_and_from_a_mail_client_show_their_text(
    inbox: Any, dovecot: Any
) -> None:
    m, acc, user = inbox
    customer, _pw = dovecot.new_user("customer")
    to = dovecot.user(customer).address
    mids = deliver_thread(m, dovecot, acc, user, ["Where is my order?"])
    (post,) = email_posts(m)
    m.driver.block_action(
        "UMEMBER",
        ids.CONV_REPLY,
        button(post, ids.CONV_REPLY)["value"],
        channel_id=CHANNEL,
        message=post,
    )
    view = open_modal(m)
    values = {
        cb.TO_BLOCK: {cb.VALUE: to},
        "subject_0": {cb.VALUE: "Re: Broken widget"},
        "body_0": {cb.VALUE: "It ships today, tracking to follow."},
    }
    assert m.driver.view_submission("UMEMBER", view["id"], values).status == 200
    run_all(m)
    posts = email_posts(m)
    assert len(posts) == 2, [p.get("text") for p in m.fake.thread(CHANNEL, parent(m.fake)["ts"])]
    sent = blocks_text(posts[1])
    assert "It ships today, tracking to follow." in sent
    assert "Sent by Max Member" in sent and to in sent
    assert len(_customer_inbox(dovecot, customer)) == 1

    # Another mail client: the reply is APPENDed to Sent, then synced.
    other = EmailMessage()
    other["From"] = user.address
    other["To"] = "Ann Client <ann@client.example>"
    other["Subject"] = "Re: Broken widget"
    other["Date"] = format_datetime(datetime.now(UTC))
    other["Message-ID"] = make_msgid(domain="support.example")
    other["In-Reply-To"] = mids[0]
    other["References"] = mids[0]
    other.set_content("Also: a discount code for the trouble.")
    dovecot.deliver(user.username, bytes(other), "Sent", flags=["\\Seen"])
    sync_account(m.services, acc.id)
    run_all(m)
    posts = email_posts(m)
    assert len(posts) == 3
    assert "Also: a discount code for the trouble." in blocks_text(posts[2])
    assert "from a mail client" in blocks_text(posts[2])
    # Sent mail is never broadcast.
    assert not [msg for msg in m.fake.messages(CHANNEL) if msg.get("subtype")]
    no_mentions(m.fake)
    all_ok(m.fake)


# -- 5: act on any email ------------------------------------------------------------------------


def _customer_inbox(dovecot: Any, username: str) -> list[EmailMsg]:
    out = []
    with dovecot.admin(username) as conn:
        conn.select("INBOX")
        _typ, data = conn.search(None, "ALL")
        for num in (data[0] or b"").split():
            _typ, parts = conn.fetch(num, "(RFC822)")
            out.append(message_from_bytes(parts[0][1]))
    return out


def test_forwarding_the_first_email_carries_its_attachments(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    customer, _pw = dovecot.new_user("customer")
    to = dovecot.user(customer).address
    deliver_thread(
        m,
        dovecot,
        acc,
        user,
        ["Here is the photo.", "And the receipt."],
        attachments={0: [("photo.png", b"PHOTO")], 1: [("receipt.pdf", b"RECEIPT")]},
    )
    first, second = email_posts(m)
    value = button(first, ids.CONV_FORWARD)["value"]
    m.driver.block_action("UMEMBER", ids.CONV_FORWARD, value, channel_id=CHANNEL, message=first)
    view = open_modal(m)
    shown = json.dumps(view["blocks"])
    assert "photo.png" in shown and "receipt.pdf" not in shown
    resp = m.driver.view_submission(
        "UMEMBER",
        view["id"],
        {
            cb.TO_BLOCK: {cb.VALUE: to},
            "subject_0": {cb.VALUE: "Fwd: Broken widget"},
            "body_0": {cb.VALUE: "FYI"},
        },
    )
    assert resp.status == 200
    run_all(m)
    (mail,) = _customer_inbox(dovecot, customer)
    files = {p.get_filename(): p.get_payload(decode=True) for p in mail.walk() if p.get_filename()}
    assert files == {"photo.png": b"PHOTO"}
    assert "Here is the photo." in mail.as_string()
    assert second  # the second email is untouched
    no_mentions(m.fake)
    all_ok(m.fake)


def test_a_forged_source_email_changes_nothing(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    deliver_thread(m, dovecot, acc, user, ["Mine."])
    cid = conv_id(m)
    raw, _ = make_email("Confidential", "Other thread's secret.", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    with m.services.session_factory() as s:
        other = s.scalar(select(Message.id).where(Message.conversation_id != cid))
    m.driver.block_action("UMEMBER", ids.CONV_FORWARD, f"{cid}:{other}", channel_id=CHANNEL)
    view = open_modal(m)
    shown = json.dumps(view["blocks"])
    assert "not part of this conversation" in shown and "secret" not in shown
    assert count(m, Outbox, Outbox.kind == "mail.send") == 0


# -- findings #7 and #15 ------------------------------------------------------------------------


def test_a_parent_slack_refuses_is_posted_minimal_and_the_thread_follows(
    inbox: Any, dovecot: Any
) -> None:
    m, acc, user = inbox
    raw, _ = make_email("Odd", "first body", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    m.fake.fail_next("chat.postMessage", error="invalid_blocks")
    run_all(m)
    top = parent(m.fake)
    assert "too unusual" in blocks_text(top)
    assert "first body" in blocks_text(m.fake.thread(CHANNEL, top["ts"])[0])
    with m.services.session_factory() as s:
        assert s.scalar(select(Outbox.status).where(Outbox.kind == "slack.post_parent")) == (
            OutboxStatus.DONE
        )


def test_a_sender_full_of_ampersands_still_reaches_slack(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    name = "&" * 900
    raw, _ = make_email(
        "Amp", "body of amp", to=user.address, sender=f'"{name}" <{"a" * 60}@client.example>'
    )
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    top = parent(m.fake)
    assert "Amp" in blocks_text(top)
    assert "body of amp" in blocks_text(m.fake.thread(CHANNEL, top["ts"])[0])
    all_ok(m.fake)


def test_many_attachments_capped_and_batches_not_repeated_after_429(
    inbox: Any, dovecot: Any
) -> None:
    from bot.outbox.slack_handlers import FILES_PER_UPLOAD, MAX_FILES_PER_EMAIL

    m, acc, user = inbox
    total = MAX_FILES_PER_EMAIL + 5
    deliver = [(f"f{i:02d}.bin", f"data {i}".encode()) for i in range(total)]
    raw = EmailMessage()
    raw["From"], raw["To"], raw["Subject"] = "ann@client.example", user.address, "Files"
    raw["Message-ID"] = make_msgid(domain="client.example")
    raw["Date"] = format_datetime(datetime.now(UTC))
    raw.set_content("lots of files")
    for fname, data in deliver:
        raw.add_attachment(data, maintype="application", subtype="octet-stream", filename=fname)
    dovecot.deliver(user.username, bytes(raw))
    sync_account(m.services, acc.id)
    # The second batch's completion is rate limited (twice: the Web client retries once).
    m.fake.fail_next("files.completeUploadExternal", after=1, times=2)
    m.run_outbox()
    run_all(m)
    done = [c for c in m.fake.calls_to("files.completeUploadExternal") if c.ok]
    assert len(done) == MAX_FILES_PER_EMAIL // FILES_PER_UPLOAD  # each batch once
    specs = [c.args["files"] for c in done]
    uploaded = [
        f["title"]
        for spec in specs
        for f in (json.loads(spec) if isinstance(spec, str) else spec)
        if isinstance(f, dict)
    ]
    assert sorted(uploaded) == [n for n, _ in deliver[:MAX_FILES_PER_EMAIL]]
    assert count(m, SlackPost, SlackPost.key.like("slack.upload_attachments:%")) == 1
    notes = json.dumps([c.args for c in done])
    assert "5 more file(s) not uploaded" in notes and "f24.bin" in notes


def test_admin_turns_broadcasting_off_in_the_app_home(inbox: Any) -> None:
    from bot.blocks.accounts import B_BROADCAST, B_CHANNEL
    from tests.home.test_home_flows import open_home, opened_view, wait_view

    m, acc, _user = inbox
    home = open_home(m, "UADMIN")
    m.driver.block_action(
        "UADMIN",
        ids.HOME_ACCOUNT_MENU,
        view=home["id"],
        block_id=f"account_{acc.id}",
        selected_option={"text": {"type": "plain_text", "text": "Edit"}, "value": f"edit:{acc.id}"},
    )
    loading = opened_view(m, 1)
    edit = wait_view(m, loading["id"], B_BROADCAST)
    assert "Show new emails in older conversations" in json.dumps(edit)
    resp = m.driver.view_submission(
        "UADMIN",
        edit["id"],
        {B_CHANNEL: {"v": CHANNEL}, "acc_freq": {"v": "300"}, B_BROADCAST: {"v": []}},
    )
    assert resp.status == 200 and resp.body == ""
    with m.services.session_factory() as s:
        assert s.get_one(Account, acc.id).config[BROADCAST_SETTING] is False


def test_reply_all_from_the_menu_and_a_trashed_conversation_offers_no_reply(
    inbox: Any, dovecot: Any
) -> None:
    from tests.inbox.test_conversation_flow import click_more

    m, acc, user = inbox
    deliver_thread(m, dovecot, acc, user, ["Hello team."])
    cid = conv_id(m)
    click_more(m, "UMEMBER", ids.CONV_REPLY_ALL, cid)
    view = open_modal(m)
    assert view["title"]["text"] == "Reply all"
    with session_scope(m.services.session_factory) as s:
        from bot.store.models import Conversation

        s.get_one(Conversation, cid).deleted = True
    from bot.inbox.announce import refresh_parent

    with session_scope(m.services.session_factory) as s:
        refresh_parent(s, cid)
    run_all(m)
    shown = blocks_text(parent(m.fake))
    assert "In Trash" in shown and ids.CONV_REPLY not in shown and ids.CONV_FORWARD not in shown
    all_ok(m.fake)


def test_posts_stop_waiting_on_a_parent_that_failed_for_good(inbox: Any, dovecot: Any) -> None:
    from bot.outbox.dispatch import MAX_ATTEMPTS
    from bot.store.models import utcnow

    m, acc, user = inbox
    raw, _ = make_email("Lost channel", "first body", to=user.address)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    m.fake.fail_next("chat.postMessage", error="channel_not_found")
    m.run_outbox()
    with m.services.session_factory() as s:
        assert s.scalar(select(Outbox.status).where(Outbox.kind == "slack.post_parent")) == (
            OutboxStatus.FAILED
        )
        waiting = s.scalars(select(Outbox).where(Outbox.kind == "slack.post_in_thread")).one()
        # Counted as a failed attempt (not an uncounted wait), with a reason a person can read.
        assert waiting.status == OutboxStatus.PENDING and waiting.attempts >= 1
        assert "could not be posted" in (waiting.last_error or "")
        waiting_id = waiting.id
    with session_scope(m.services.session_factory) as s:
        row = s.get_one(Outbox, waiting_id)
        row.attempts, row.next_attempt_at = MAX_ATTEMPTS, utcnow()
    m.run_outbox()
    with m.services.session_factory() as s:
        assert s.get_one(Outbox, waiting_id).status == OutboxStatus.FAILED


def test_an_html_only_email_is_readable_in_the_thread(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ann@client.example", user.address, "HTML"
    msg["Message-ID"] = make_msgid(domain="client.example")
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg.set_content(
        "<html><body><p>Only <b>HTML</b> here &amp; there.</p></body></html>", subtype="html"
    )
    dovecot.deliver(user.username, bytes(msg))
    sync_account(m.services, acc.id)
    run_all(m)
    (post,) = email_posts(m)
    assert "Only HTML here &amp; there." in blocks_text(post).replace("*", "")
    all_ok(m.fake)
