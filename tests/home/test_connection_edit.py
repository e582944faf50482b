"""An admin sees and changes an IMAP account's servers from the App Home: the new settings are
checked against the real Dovecot and SMTP servers first, a refused change saves nothing, and a
saved one keeps every synced email. An SMTP relay that offers no login sends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.accounts import passwords, smtp_settings
from bot.blocks import compose as cb
from bot.blocks import ids
from bot.blocks.accounts import (
    B_CHANNEL,
    B_EMAIL,
    B_IMAP_HOST,
    B_IMAP_PORT,
    B_IMAP_PW,
    B_IMAP_SEC,
    B_IMAP_USER,
    B_SMTP_AUTH,
    B_SMTP_HOST,
    B_SMTP_PORT,
    B_SMTP_SEC,
    B_SMTP_USER,
    SMTP_LOGIN,
    SMTP_NO_LOGIN,
)
from bot.inbox.announce import announce_ingested
from bot.store.db import session_scope
from bot.store.ingest import ingest_message
from bot.store.models import Account, AuditLog, Conversation, Message
from bot.sync.engine import sync_account
from tests.compose import seed
from tests.home.test_home_flows import open_home, opened_view
from tests.slackfake import validate_view

pytestmark = pytest.mark.dovecot


def _button(home: dict[str, Any], action_id: str, account_id: int) -> dict[str, Any]:
    block = next(b for b in home["blocks"] if b.get("block_id") == f"account_buttons_{account_id}")
    return next(e for e in block["elements"] if e["action_id"] == action_id)


def _form(view: dict[str, Any], **changes: str) -> dict[str, Any]:
    """Every input's submitted value (Slack sends initial values too), with `changes`."""
    by_block = {
        B_IMAP_HOST: "imap_host",
        B_IMAP_PORT: "imap_port",
        B_IMAP_SEC: "imap_security",
        B_IMAP_USER: "imap_username",
        B_SMTP_HOST: "smtp_host",
        B_SMTP_PORT: "smtp_port",
        B_SMTP_SEC: "smtp_security",
        B_SMTP_AUTH: "smtp_auth",
        B_SMTP_USER: "smtp_username",
    }
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        name = by_block.get(block.get("block_id", ""))
        if name is None:
            continue
        el = block["element"]
        initial = el.get("initial_value") or (el.get("initial_option") or {}).get("value") or ""
        value = changes.get(name, initial)
        if value:
            values[block["block_id"]] = {"v": value}
    return values


def _shown(mailroom: Any, user: str) -> dict[str, Any]:
    stack = mailroom.fake.modal_stack(user)
    assert stack, "no modal open"
    view: dict[str, Any] = stack[-1]
    return view


def _settled(mailroom: Any, user: str) -> dict[str, Any]:
    """The modal once the server check has answered (it first shows "checking")."""

    def done() -> bool:
        text = json.dumps(_shown(mailroom, user))
        return "Not saved" in text or "Saved." in text or "no longer exists" in text

    mailroom.fake.wait_until(done, timeout=40)
    return _shown(mailroom, user)


def test_admin_changes_imap_port_and_smtp_security_checked_first_history_kept(
    mailroom: Any, dovecot: Any, smtp_server: Any
) -> None:
    acc, user = mailroom.mailbox_account(dovecot, smtp_server, prefix="conn")
    ca = str(dovecot.tls.ca_path)
    with session_scope(mailroom.services.session_factory) as s:
        row = s.get_one(Account, acc.id)
        # The test servers' private CA, as an account for an internal server carries it.
        row.config = {
            "imap": {**row.config["imap"], "ca_file": ca},
            "smtp": {**row.config["smtp"], "ca_file": str(smtp_server.tls.ca_path)},
        }
    for i in range(3):
        dovecot.deliver(
            user.username,
            seed.email(
                message_id=f"m{i}@cust.test",
                sender="Casey <casey@cust.test>",
                to=user.address,
                subject=f"Question {i}",
                body=f"Body {i}",
            ),
        )
    sync_account(mailroom.services, acc.id)

    def snapshot() -> tuple[list[int], list[int]]:
        with mailroom.services.session_factory() as s:
            msgs = list(s.scalars(select(Message.id).order_by(Message.id)))
            convs = list(s.scalars(select(Conversation.id).order_by(Conversation.id)))
            return msgs, convs

    before = snapshot()
    assert len(before[0]) == 3

    home = open_home(mailroom, "UADMIN")
    text = json.dumps(home)
    # Servers, ports, security and logins are shown; the password never is.
    assert f"127.0.0.1:{dovecot.port}" in text and f"127.0.0.1:{smtp_server.port}" in text
    assert user.username in text and dovecot.password(user.username) not in text
    assert "Last successful sync" in text
    mailroom.driver.block_action(
        "UADMIN",
        ids.HOME_ACCOUNT_EDIT_CONNECTION,
        str(acc.id),
        view=home["id"],
        block_id=f"account_buttons_{acc.id}",
    )
    modal = opened_view(mailroom, 1)
    assert modal["callback_id"] == ids.VIEW_ACCOUNT_CONNECTION
    keys = ("type", "title", "blocks", "submit", "close", "private_metadata", "callback_id")
    assert validate_view({k: modal[k] for k in keys if modal.get(k) is not None}) == []
    assert dovecot.password(user.username) not in json.dumps(modal)

    # A wrong login: the server refuses, its reason is shown, nothing is saved.
    wrong = _form(
        modal,
        imap_port=str(dovecot.ssl_port),
        imap_security="ssl",
        imap_username="nobody-here",
        smtp_security="starttls",
    )
    resp = mailroom.driver.view_submission("UADMIN", modal["id"], wrong)
    assert resp.status == 200 and json.loads(resp.body)["response_action"] == "update"
    shown = json.dumps(_settled(mailroom, "UADMIN"))
    assert "Not saved" in shown and "IMAP" in shown
    with mailroom.services.session_factory() as s:
        row = s.get_one(Account, acc.id)
        assert row.config["imap"]["port"] == dovecot.port
        assert row.config["imap"]["security"] == "plain"
        assert row.config["smtp"]["security"] == "plain"

    # The right values: IMAP over SSL on its own port, SMTP with STARTTLS. Saved in place.
    right = _form(
        _shown(mailroom, "UADMIN"),
        imap_port=str(dovecot.ssl_port),
        imap_security="ssl",
        imap_username=user.username,
        smtp_security="starttls",
    )
    resp = mailroom.driver.view_submission("UADMIN", modal["id"], right)
    assert resp.status == 200
    assert "Saved." in json.dumps(_settled(mailroom, "UADMIN"))
    with mailroom.services.session_factory() as s:
        row = s.get_one(Account, acc.id)
        assert row.config["imap"] == {
            "host": "127.0.0.1",
            "port": dovecot.ssl_port,
            "security": "ssl",
            "username": user.username,
            "ca_file": ca,
        }
        assert row.config["smtp"]["security"] == "starttls"
        # No password typed: the stored one is kept.
        assert passwords(mailroom.services, row)["imap_password"] == dovecot.password(user.username)
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "account.connection")).one()
        assert audit.actor == "UADMIN" and audit.details["before"]["imap"]["port"] == dovecot.port
        assert dovecot.password(user.username) not in json.dumps(audit.details)

    # The next sync runs over the new settings and keeps every stored email, no duplicates.
    dovecot.deliver(
        user.username,
        seed.email(
            message_id="after@cust.test",
            sender="Casey <casey@cust.test>",
            to=user.address,
            subject="After the change",
            body="New",
        ),
    )
    summary = sync_account(mailroom.services, acc.id)
    assert summary.error is None, summary.error
    after = snapshot()
    assert after[0][:3] == before[0] and len(after[0]) == 4
    assert after[1][: len(before[1])] == before[1]
    with mailroom.services.session_factory() as s:
        assert s.scalar(select(func.count(Message.id))) == 4
    assert all(
        dovecot.password(user.username) not in json.dumps(c.args) for c in mailroom.fake.calls
    )


def test_a_member_cannot_forge_a_connection_change(
    mailroom: Any, dovecot: Any, smtp_server: Any
) -> None:
    acc, _user = mailroom.mailbox_account(dovecot, smtp_server, prefix="connforge")
    forged = {
        "type": "modal",
        "id": "VFORGED",
        "callback_id": ids.VIEW_ACCOUNT_CONNECTION,
        "private_metadata": json.dumps({"account_id": acc.id}),
        "blocks": [],
        "state": {"values": {B_IMAP_HOST: {"v": {"type": "plain_text_input", "value": "evil"}}}},
    }
    resp = mailroom.driver.view_submission("UMEMBER", forged)
    assert "Only Mailroom admins" in resp.body
    with mailroom.services.session_factory() as s:
        assert s.get_one(Account, acc.id).config["imap"]["host"] == "127.0.0.1"


def test_sync_now_is_offered_for_every_provider(mailroom: Any) -> None:
    from bot.store.models import Provider

    imap = mailroom.account("box@example.com")
    gmail = mailroom.account("g@example.com")
    graph = mailroom.account("m@example.com")
    with session_scope(mailroom.services.session_factory) as s:
        s.get_one(Account, gmail.id).provider = Provider.GMAIL
        s.get_one(Account, graph.id).provider = Provider.GRAPH
    home = open_home(mailroom, "UADMIN")
    for acc in (imap, gmail, graph):
        assert _button(home, ids.HOME_ACCOUNT_SYNC_NOW, acc.id)["value"] == str(acc.id)
    # Edit connection is an IMAP thing: OAuth accounts' servers are the provider's.
    assert "Edit connection" not in json.dumps(
        next(b for b in home["blocks"] if b.get("block_id") == f"account_buttons_{gmail.id}")
    )
    with session_scope(mailroom.services.session_factory) as s:
        for acc in (gmail, graph):
            s.get_one(Account, acc.id).next_sync_at = None
    for acc in (gmail, graph):
        mailroom.driver.block_action(
            "UADMIN",
            ids.HOME_ACCOUNT_SYNC_NOW,
            str(acc.id),
            view=mailroom.fake.home("UADMIN")["id"],
            block_id=f"account_buttons_{acc.id}",
        )

    def due() -> bool:
        with mailroom.services.session_factory() as s:
            return all(s.get_one(Account, a.id).next_sync_at is not None for a in (gmail, graph))

    mailroom.fake.wait_until(due)
    # A member's forged click changes nothing.
    with session_scope(mailroom.services.session_factory) as s:
        s.get_one(Account, imap.id).next_sync_at = None
    mailroom.driver.block_action("UMEMBER", ids.HOME_ACCOUNT_SYNC_NOW, str(imap.id))
    mailroom.fake.wait_until(lambda: len(mailroom.fake.calls_to("views.open")) >= 1)
    with mailroom.services.session_factory() as s:
        assert s.get_one(Account, imap.id).next_sync_at is None


def test_an_smtp_relay_without_login_is_added_and_sends(
    mailroom: Any, dovecot: Any, smtp_relay: Any
) -> None:
    support, support_pw = dovecot.new_user("relayed")
    customer, _customer_pw = dovecot.new_user("relaycust")
    support_addr, customer_addr = dovecot.address(support), dovecot.address(customer)
    home = open_home(mailroom, "UADMIN")
    mailroom.driver.block_action("UADMIN", ids.HOME_ADD_ACCOUNT, view=home["id"])
    chooser = opened_view(mailroom, 1)
    mailroom.driver.block_action("UADMIN", ids.ACCOUNT_PROVIDER_PICK, "imap", view=chooser["id"])
    mailroom.fake.wait_until(
        lambda: (
            _shown(mailroom, "UADMIN").get("callback_id") == ids.VIEW_ACCOUNT_ADD
            and B_SMTP_AUTH in json.dumps(_shown(mailroom, "UADMIN"))
        )
    )
    form = _shown(mailroom, "UADMIN")
    auth = next(b for b in form["blocks"] if b.get("block_id") == B_SMTP_AUTH)
    assert {o["value"] for o in auth["element"]["options"]} == {SMTP_LOGIN, SMTP_NO_LOGIN}
    values = {
        B_EMAIL: {"v": support_addr},
        B_IMAP_HOST: {"v": "127.0.0.1"},
        B_IMAP_PORT: {"v": str(dovecot.port)},
        B_IMAP_SEC: {"v": "plain"},
        B_IMAP_USER: {"v": support},
        B_IMAP_PW: {"v": support_pw},
        B_SMTP_HOST: {"v": "127.0.0.1"},
        B_SMTP_PORT: {"v": str(smtp_relay.port)},
        B_SMTP_SEC: {"v": "plain"},
        B_SMTP_AUTH: {"v": SMTP_NO_LOGIN},
        B_SMTP_USER: {"v": "ignored-without-login"},
        B_CHANNEL: {"v": "CINBOX"},
    }
    resp = mailroom.driver.view_submission("UADMIN", form["id"], values)
    assert resp.status == 200 and resp.body == "", resp.body
    mailroom.settle()  # the account is written after the ack
    with mailroom.services.session_factory() as s:
        account = s.scalars(select(Account).where(Account.email == support_addr)).one()
        settings = smtp_settings(account)
        assert settings.username == ""  # no AUTH is attempted
        acc_id = account.id

    # A reply goes out through the relay and reaches the customer's mailbox.
    raw = seed.email(
        message_id="ask@relaycust.test",
        sender=f"Casey <{customer_addr}>",
        to=support_addr,
        subject="Via the relay",
        body="Can you hear me?",
    )
    with session_scope(mailroom.services.session_factory) as s:
        account = s.get_one(Account, acc_id)
        result = ingest_message(s, account, raw)
        announce_ingested(s, account, result)
        conv_id = result.conversation.id
    mailroom.run_outbox()
    mailroom.driver.block_action("UMEMBER", ids.CONV_REPLY, str(conv_id), channel_id="CINBOX")
    mailroom.fake.wait_until(lambda: mailroom.fake.modal_stack("UMEMBER"), timeout=10)
    reply = mailroom.fake.modal_stack("UMEMBER")[-1]
    to_block = next(b for b in reply["blocks"] if b.get("block_id") == cb.TO_BLOCK)
    sent = mailroom.driver.view_submission(
        "UMEMBER",
        reply["id"],
        {
            cb.TO_BLOCK: {cb.VALUE: to_block["element"]["initial_value"]},
            "subject_0": {cb.VALUE: "Re: Via the relay"},
            "body_0": {cb.VALUE: "Loud and clear."},
        },
    )
    assert sent.status == 200
    mailroom.run_outbox()
    got = smtp_relay.messages_to(customer_addr)
    assert len(got) == 1 and b"Loud and clear." in got[0].raw
