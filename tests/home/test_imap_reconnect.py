"""An IMAP account that needs re-authorisation gets its password back from Slack (or the CLI):
tested against the real Dovecot before it is stored, and the account syncs again."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from bot.accounts import passwords, set_passwords
from bot.blocks import ids
from bot.blocks.accounts import B_IMAP_PW
from bot.store.db import session_scope
from bot.store.models import Account, AccountStatus, AuditLog
from tests.home.test_home_flows import open_home, opened_view
from tests.mailservers.fixtures import imap_settings_for


def _broken_account(mailroom: Any, dovecot: Any) -> tuple[Account, str]:
    username, password = dovecot.new_user("reauth")
    acc = mailroom.account(
        dovecot.address(username),
        imap=imap_settings_for(dovecot, username),
        password="the-old-password",
    )
    with session_scope(mailroom.services.session_factory) as s:
        row = s.get_one(Account, acc.id)
        row.status = AccountStatus.NEEDS_REAUTH
        row.last_error = "Login refused"
    return acc, password


def _menu_values(home: dict[str, Any], account_id: int) -> list[str]:
    for block in home["blocks"]:
        acc = block.get("accessory") or {}
        if acc.get("action_id") == ids.HOME_ACCOUNT_MENU and any(
            o["value"].endswith(f":{account_id}") for o in acc["options"]
        ):
            return [o["value"] for o in acc["options"]]
    raise AssertionError("no account menu in the home view")


def test_admin_re_enters_the_password_from_the_app_home(mailroom: Any, dovecot: Any) -> None:
    acc, good = _broken_account(mailroom, dovecot)
    home = open_home(mailroom, "UADMIN")
    assert f"reconnect:{acc.id}" in _menu_values(home, acc.id)
    mailroom.driver.block_action(
        "UADMIN",
        ids.HOME_ACCOUNT_MENU,
        view=home["id"],
        block_id=f"account_{acc.id}",
        selected_option={
            "text": {"type": "plain_text", "text": "R"},
            "value": f"reconnect:{acc.id}",
        },
    )
    modal = opened_view(mailroom, 1)
    assert modal["callback_id"] == ids.VIEW_ACCOUNT_PASSWORD

    wrong = mailroom.driver.view_submission("UADMIN", modal["id"], {B_IMAP_PW: {"v": "nope"}})
    errors = json.loads(wrong.body)
    assert errors["response_action"] == "errors" and B_IMAP_PW in errors["errors"]
    with mailroom.services.session_factory() as s:
        row = s.get_one(Account, acc.id)
        assert row.status == AccountStatus.NEEDS_REAUTH
        assert passwords(mailroom.services, row)["imap_password"] == "the-old-password"

    ok = mailroom.driver.view_submission("UADMIN", modal["id"], {B_IMAP_PW: {"v": good}})
    assert ok.status == 200 and ok.body == "", ok.body
    mailroom.settle()  # stored right after the ack
    with mailroom.services.session_factory() as s:
        row = s.get_one(Account, acc.id)
        assert row.status == AccountStatus.ACTIVE and row.last_error is None
        assert row.next_sync_at is not None
        assert passwords(mailroom.services, row) == {"imap_password": good, "smtp_password": good}
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "account.set_password")).one()
        assert audit.actor == "UADMIN"
    assert mailroom.fake.ack_problems == []
    # the new password never reaches Slack
    assert all(good not in json.dumps(c.args) for c in mailroom.fake.calls)


def test_a_member_cannot_forge_a_password_change(mailroom: Any, dovecot: Any) -> None:
    acc, good = _broken_account(mailroom, dovecot)
    forged = {
        "type": "modal",
        "id": "VFORGED",
        "callback_id": ids.VIEW_ACCOUNT_PASSWORD,
        "private_metadata": json.dumps({"account_id": acc.id}),
        "blocks": [],
        "state": {"values": {B_IMAP_PW: {"v": {"type": "plain_text_input", "value": good}}}},
    }
    resp = mailroom.driver.view_submission("UMEMBER", forged)
    assert "Only Mailroom admins" in resp.body
    with mailroom.services.session_factory() as s:
        row = s.get_one(Account, acc.id)
        assert row.status == AccountStatus.NEEDS_REAUTH
        assert passwords(mailroom.services, row)["imap_password"] == "the-old-password"


def test_set_passwords_checks_imap_and_smtp_before_storing(
    mailroom: Any, dovecot: Any, smtp_server: Any
) -> None:
    acc, _user = mailroom.mailbox_account(dovecot, smtp_server, prefix="setpw")
    username = _user.username
    with session_scope(mailroom.services.session_factory) as s:
        row = s.get_one(Account, acc.id)
        bad = set_passwords(mailroom.services, s, row, imap_password="wrong")
        assert not bad.ok and "password" in bad.message().lower()
    good = dovecot.password(username)
    with session_scope(mailroom.services.session_factory) as s:
        row = s.get_one(Account, acc.id)
        row.status = AccountStatus.ERROR
        result = set_passwords(mailroom.services, s, row, imap_password=good)
        assert result.ok, result.message()
        assert row.status == AccountStatus.ACTIVE
