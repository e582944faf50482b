"""Signed Slack requests → fake Slack → store → real SMTP → the recipient's Dovecot mailbox."""

from __future__ import annotations

import imaplib
import json
from email import message_from_bytes
from email.message import Message as EmailMsg
from typing import Any

import pytest
from sqlalchemy import select

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.inbox.announce import announce_ingested
from bot.mail.richtext import rich_text_to_text
from bot.store.db import session_scope
from bot.store.ingest import ingest_message
from bot.store.models import Account, Outbox, OutboxStatus
from tests.compose import seed
from tests.mailservers.fixtures import imap_settings_for
from tests.slackfake import validate_view

pytestmark = pytest.mark.dovecot


@pytest.fixture
def box(mailroom: Any, dovecot_server: Any, smtp_server: Any) -> dict[str, Any]:
    support, support_pw = dovecot_server.new_user("support")
    customer, customer_pw = dovecot_server.new_user("customer")
    support_addr = dovecot_server.address(support)
    customer_addr = dovecot_server.address(customer)
    acc = mailroom.account(
        support_addr,
        imap=imap_settings_for(dovecot_server, support),
        smtp=smtp_server.settings(support),
        password=support_pw,
    )
    raw = seed.email(
        message_id="first@customer.test",
        sender=f"Casey Customer <{customer_addr}>",
        to=support_addr,
        subject="Broken widget",
        body="My widget is broken.",
        references="<root@customer.test>",
        attachments=[("photo.png", "image/png", b"\x89PNG fake image bytes")],
    )
    with session_scope(mailroom.services.session_factory) as s:
        account = s.get_one(Account, acc.id)
        result = ingest_message(s, account, raw)
        announce_ingested(s, account, result)
        conv_id, msg_id = result.conversation.id, result.message.id
    mailroom.run_outbox()
    parent = mailroom.fake.top_level("CINBOX")[-1]
    return {
        "acc": acc,
        "conv": conv_id,
        "msg": msg_id,
        "parent": parent,
        "customer": customer,
        "customer_pw": customer_pw,
        "customer_addr": customer_addr,
        "support": support,
        "support_pw": support_pw,
        "dovecot": dovecot_server,
        "smtp": smtp_server,
    }


def _open(
    mailroom: Any, box: dict[str, Any], action_id: str, user: str = "UMEMBER"
) -> dict[str, Any]:
    resp = (
        mailroom.driver.block_action(
            user, action_id, str(box["conv"]), channel_id="CINBOX", message=box["parent"]
        )
        if _has_button(box["parent"], action_id)
        else mailroom.driver.block_action(user, action_id, str(box["conv"]), channel_id="CINBOX")
    )
    assert resp.status == 200
    # The listener acks first and opens the modal right after, on its own thread.
    mailroom.fake.wait_until(lambda: mailroom.fake.modal_stack(user), timeout=10)
    stack = mailroom.fake.modal_stack(user)
    view: dict[str, Any] = stack[-1]
    assert (
        validate_view(
            {
                k: view[k]
                for k in (
                    "type",
                    "title",
                    "blocks",
                    "submit",
                    "close",
                    "private_metadata",
                    "callback_id",
                )
                if view.get(k) is not None
            }
        )
        == []
    )
    return view


def _has_button(message: dict[str, Any], action_id: str) -> bool:
    return action_id in str(message.get("blocks"))


def _inbox(box: dict[str, Any]) -> list[EmailMsg]:
    dv = box["dovecot"]
    conn = imaplib.IMAP4(dv.host, dv.port)
    try:
        conn.login(box["customer"], box["customer_pw"])
        conn.select("INBOX")
        _, data = conn.search(None, "ALL")
        out = []
        for num in (data[0] or b"").split():
            _, parts = conn.fetch(num.decode(), "(RFC822)")
            fetched = parts[0]
            assert isinstance(fetched, tuple)  # (b"1 (RFC822 {n}", the message's bytes)
            out.append(message_from_bytes(fetched[1]))
        return out
    finally:
        conn.logout()


def _parts(mail: EmailMsg) -> tuple[str, str]:
    """(text/plain, text/html) of a received multipart/alternative email."""
    alternative = next(p for p in mail.walk() if p.get_content_type() == "multipart/alternative")
    found: dict[str, str] = {}
    children = alternative.get_payload()
    assert isinstance(children, list)
    for part in children:
        assert isinstance(part, EmailMsg)
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        charset = part.get_content_charset() or "utf-8"
        found[part.get_content_type()] = payload.decode(charset).replace("\r\n", "\n")
    return found["text/plain"], found["text/html"]


def _wait_row(mailroom: Any, status: OutboxStatus) -> None:
    def ready() -> bool:
        with session_scope(mailroom.services.session_factory) as s:
            row = s.scalars(select(Outbox).where(Outbox.kind == "mail.send")).one()
            return row.status == status

    mailroom.fake.wait_until(ready, timeout=10)


def _thread_texts(mailroom: Any, box: dict[str, Any]) -> list[str]:
    return [m.get("text", "") for m in mailroom.fake.thread("CINBOX", box["parent"]["ts"])]


def test_reply_reaches_the_mailbox_once_with_threading_headers(
    mailroom: Any, box: dict[str, Any]
) -> None:
    view = _open(mailroom, box, ids.CONV_REPLY)
    to_block = next(b for b in view["blocks"] if b.get("block_id") == cb.TO_BLOCK)
    assert box["customer_addr"] in to_block["element"]["initial_value"]
    values = {
        cb.TO_BLOCK: {cb.VALUE: to_block["element"]["initial_value"]},
        "subject_0": {cb.VALUE: "Re: Broken widget"},
        "body_0": {cb.VALUE: "We are sending a new one."},
        # Slack reports the pre-checked "quote the original" box as selected.
        cb.QUOTE_BLOCK: {cb.VALUE: [cb.QUOTE_OPTION]},
    }
    first = mailroom.driver.view_submission("UMEMBER", view["id"], values)
    assert first.status == 200 and first.body == ""  # closes at once
    assert mailroom.fake.modal_stack("UMEMBER") == []
    again = mailroom.driver.view_submission("UMEMBER", view["id"], values)  # double submit
    assert again.status == 200
    assert not any("Sent by" in t for t in _thread_texts(mailroom, box))  # not before sending
    mailroom.run_outbox()
    received = _inbox(box)
    assert len(received) == 1
    mail = received[0]
    assert mail["In-Reply-To"] == "<first@customer.test>"
    assert mail["References"].split() == ["<root@customer.test>", "<first@customer.test>"]
    text, html = _parts(mail)
    assert "We are sending a new one." in text and "We are sending a new one." in html
    assert "> My widget is broken." in text
    assert "<blockquote" in html and "My widget is broken." in html
    texts = _thread_texts(mailroom, box)
    assert sum("Sent by Max Member: We are sending a new one." in t for t in texts) == 1
    assert mailroom.fake.ack_problems == []


def test_invalid_address_is_refused_next_to_its_field(mailroom: Any, box: dict[str, Any]) -> None:
    view = _open(mailroom, box, ids.CONV_REPLY)
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        view["id"],
        {
            cb.TO_BLOCK: {cb.VALUE: "casey@@customer"},
            cb.CC_BLOCK: {cb.VALUE: "ok@customer.test"},
            "subject_0": {cb.VALUE: "Re: x"},
            "body_0": {cb.VALUE: "hi"},
        },
    )
    ack = resp.json()
    assert ack["response_action"] == "errors" and list(ack["errors"]) == [cb.TO_BLOCK]
    assert mailroom.fake.ack_problems == []
    with session_scope(mailroom.services.session_factory) as s:
        assert s.scalars(select(Outbox).where(Outbox.kind == "mail.send")).all() == []


def test_failed_send_shows_retry_and_retry_works(mailroom: Any, box: dict[str, Any]) -> None:
    with session_scope(mailroom.services.session_factory) as s:
        acc = s.get_one(Account, box["acc"].id)
        acc.credentials = mailroom.services.vault.encrypt(
            {"imap_password": box["support_pw"], "smtp_password": "wrong"}
        )
    view = _open(mailroom, box, ids.CONV_REPLY)
    values = {
        cb.TO_BLOCK: {cb.VALUE: box["customer_addr"]},
        "subject_0": {cb.VALUE: "Re: Broken widget"},
        "body_0": {cb.VALUE: "Try two."},
    }
    assert mailroom.driver.view_submission("UMEMBER", view["id"], values).status == 200
    mailroom.run_outbox()
    thread = mailroom.fake.thread("CINBOX", box["parent"]["ts"])
    failed = [m for m in thread if ids.SEND_RETRY in str(m.get("blocks"))]
    assert len(failed) == 1 and not any("Sent by" in m.get("text", "") for m in thread)
    # The thread names the author without pinging anyone; the author is told directly.
    assert "Max Member" in failed[0]["text"] and "<@" not in json.dumps(failed[0])
    dms = [c for c in mailroom.fake.calls_to("chat.postMessage") if "Not sent" in str(c.args)]
    assert any(c.arg("channel") != "CINBOX" for c in dms)
    assert _inbox(box) == []
    with session_scope(mailroom.services.session_factory) as s:
        acc = s.get_one(Account, box["acc"].id)
        acc.credentials = mailroom.services.vault.encrypt(
            {"imap_password": box["support_pw"], "smtp_password": box["support_pw"]}
        )
    resp = mailroom.driver.block_action(
        "UMEMBER", ids.SEND_RETRY, channel_id="CINBOX", message=failed[0]
    )
    assert resp.status == 200
    _wait_row(mailroom, OutboxStatus.PENDING)
    mailroom.run_outbox()
    assert len(_inbox(box)) == 1
    assert any("Sent by Max Member" in t for t in _thread_texts(mailroom, box))


def test_new_mail_after_opening_holds_the_send(mailroom: Any, box: dict[str, Any]) -> None:
    view = _open(mailroom, box, ids.CONV_REPLY)
    with session_scope(mailroom.services.session_factory) as s:
        account = s.get_one(Account, box["acc"].id)
        ingest_message(
            s,
            account,
            seed.email(
                message_id="second@customer.test",
                sender=f"Casey <{box['customer_addr']}>",
                subject="Re: Broken widget",
                body="Found it, all good now.",
                in_reply_to="first@customer.test",
            ),
        )
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        view["id"],
        {
            cb.TO_BLOCK: {cb.VALUE: box["customer_addr"]},
            "subject_0": {cb.VALUE: "Re: Broken widget"},
            "body_0": {cb.VALUE: "Sending a new one."},
        },
    )
    assert resp.json()["response_action"] == "update"
    held = mailroom.fake.modal_stack("UMEMBER")[-1]
    assert "Found it, all good now." in str(held["blocks"])
    mailroom.run_outbox()
    assert _inbox(box) == []
    with session_scope(mailroom.services.session_factory) as s:
        row = s.scalars(select(Outbox).where(Outbox.kind == "mail.send")).one()
        assert row.status == OutboxStatus.HELD
    mailroom.driver.block_action("UMEMBER", ids.SEND_ANYWAY, view=held["id"])
    _wait_row(mailroom, OutboxStatus.PENDING)
    mailroom.run_outbox()
    assert len(_inbox(box)) == 1


def test_forward_carries_the_attachments(mailroom: Any, box: dict[str, Any]) -> None:
    view = _open(mailroom, box, ids.CONV_FORWARD)
    assert "photo.png" in str(view["blocks"])
    uploaded = mailroom.fake.add_file("notes.txt", b"extra notes", "text/plain", user="UMEMBER")
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        view["id"],
        {
            cb.TO_BLOCK: {cb.VALUE: box["customer_addr"]},
            "subject_0": {cb.VALUE: "Fwd: Broken widget"},
            "body_0": {cb.VALUE: "See below."},
            cb.FILES_BLOCK: {cb.VALUE: [uploaded]},
        },
    )
    assert resp.status == 200 and resp.body == ""
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    files = {p.get_filename(): p.get_payload(decode=True) for p in mail.walk() if p.get_filename()}
    assert files == {"photo.png": b"\x89PNG fake image bytes", "notes.txt": b"extra notes"}
    assert mail["In-Reply-To"] is None


def test_broken_template_is_refused_and_good_one_fills_the_modal(
    mailroom: Any, box: dict[str, Any]
) -> None:
    new = mailroom.driver.block_action("UADMIN", ids.HOME_TEMPLATE_NEW, channel_id="CINBOX")
    assert new.status == 200
    mailroom.fake.wait_until(lambda: mailroom.fake.modal_stack("UADMIN"), timeout=10)
    modal = mailroom.fake.modal_stack("UADMIN")[-1]
    bad = mailroom.driver.view_submission(
        "UADMIN",
        modal["id"],
        {
            "tpl_name": {"value": "Bad"},
            "tpl_subject": {"value": ""},
            "tpl_body": {"value": "{{ ''.__class__.__mro__ }}"},
        },
    )
    assert bad.json()["response_action"] == "errors"
    assert "not allowed" in bad.json()["errors"]["tpl_body"]
    broken = mailroom.driver.view_submission(
        "UADMIN",
        modal["id"],
        {
            "tpl_name": {"value": "Bad"},
            "tpl_subject": {"value": ""},
            "tpl_body": {"value": "Hi\n{% if x %}"},
        },
    )
    assert "line 2" in broken.json()["errors"]["tpl_body"]
    good = mailroom.driver.view_submission(
        "UADMIN",
        modal["id"],
        {
            "tpl_name": {"value": "Thanks"},
            "tpl_subject": {"value": "Re: {{ thread.subject }}"},
            "tpl_body": {"value": "Hi {{ contact.first_name | default('there') }}, thanks!"},
        },
    )
    assert good.status == 200 and good.body == ""
    # Members write templates too (personal, or shared): the modal opens for them.
    mailroom.driver.block_action("UMEMBER", ids.HOME_TEMPLATE_NEW, channel_id="CINBOX")
    mailroom.fake.wait_until(lambda: mailroom.fake.modal_stack("UMEMBER"), timeout=10)
    assert mailroom.fake.modal_stack("UMEMBER")[-1]["callback_id"] == ids.VIEW_TEMPLATE_EDIT
    # Picking it in a reply fills subject and body with rotated block ids.
    view = _open(mailroom, box, ids.CONV_REPLY, user="UADMIN")
    from bot.store.templates import list_templates

    with session_scope(mailroom.services.session_factory) as s:
        (tpl,) = list_templates(s)
    mailroom.driver.block_action("UADMIN", ids.COMPOSE_TEMPLATE_PICK, str(tpl.id), view=view["id"])
    mailroom.fake.wait_for("views.update", timeout=10)
    filled = mailroom.fake.view(view["id"])
    assert filled is not None
    body = next(b for b in filled["blocks"] if b.get("block_id") == "body_1")
    assert rich_text_to_text(body["element"]["initial_value"]) == "Hi Casey, thanks!\n"
    assert (
        validate_view(
            {
                k: filled[k]
                for k in (
                    "type",
                    "title",
                    "blocks",
                    "submit",
                    "close",
                    "private_metadata",
                    "callback_id",
                )
            }
        )
        == []
    )


def test_new_mail_from_the_shortcut(mailroom: Any, box: dict[str, Any]) -> None:
    mailroom.driver.shortcut(ids.SHORTCUT_COMPOSE, "UOUTSIDER")
    mailroom.fake.wait_until(lambda: mailroom.fake.modal_stack("UOUTSIDER"), timeout=10)
    assert "not a member" in str(mailroom.fake.modal_stack("UOUTSIDER")[-1]["blocks"])
    mailroom.driver.shortcut(ids.SHORTCUT_COMPOSE, "UMEMBER")
    mailroom.fake.wait_until(lambda: mailroom.fake.modal_stack("UMEMBER"), timeout=10)
    view = mailroom.fake.modal_stack("UMEMBER")[-1]
    frm = next(b for b in view["blocks"] if b.get("block_id") == cb.FROM_BLOCK)
    assert [o["value"] for o in frm["element"]["options"]] == [str(box["acc"].id)]
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        view["id"],
        {
            cb.FROM_BLOCK: {ids.COMPOSE_FROM: str(box["acc"].id)},
            cb.TO_BLOCK: {cb.VALUE: box["customer_addr"]},
            "subject_0": {cb.VALUE: "A fresh topic"},
            "body_0": {cb.VALUE: "Hello from Slack."},
        },
    )
    assert resp.status == 200 and resp.body == ""
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    assert mail["Subject"] == "A fresh topic" and mail["In-Reply-To"] is None
    parents = [m for m in mailroom.fake.top_level("CINBOX") if m["ts"] != box["parent"]["ts"]]
    assert len(parents) == 1  # the new conversation got its parent post
    replies = mailroom.fake.thread("CINBOX", parents[0]["ts"])
    assert any("Sent by Max Member: Hello from Slack." in m.get("text", "") for m in replies)


def test_a_file_over_the_limit_is_refused_in_the_modal_with_the_limit_named(
    mailroom: Any, box: dict[str, Any]
) -> None:
    view = _open(mailroom, box, ids.CONV_REPLY)
    big = mailroom.fake.add_file("video.mp4", b"\0" * (26 * 1024 * 1024), "video/mp4")
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        view["id"],
        {
            cb.TO_BLOCK: {cb.VALUE: box["customer_addr"]},
            "body_0": {cb.VALUE: "Here it is."},
            cb.FILES_BLOCK: {cb.VALUE: [big]},
        },
    )
    assert resp.status == 200 and "25 MB" in resp.body and cb.FILES_BLOCK in resp.body
    with session_scope(mailroom.services.session_factory) as s:
        assert s.scalars(select(Outbox).where(Outbox.kind == "mail.send")).all() == []
