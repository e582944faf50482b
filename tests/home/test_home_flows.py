"""App Home and its admin flows through signed requests, the fake Slack and a real Dovecot."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from bot.blocks import ids
from bot.blocks.accounts import B_CHANNEL, B_EMAIL, B_FOLDERS, B_IMAP_PW
from bot.store.db import session_scope
from bot.store.models import Account, AccountStatus, Client
from tests.commands.conftest import ingest, two_accounts
from tests.mailservers.fixtures import imap_settings_for


def open_home(mailroom: Any, user: str) -> dict[str, Any]:
    before = len(mailroom.fake.calls_to("views.publish"))
    mailroom.driver.event({"type": "app_home_opened", "user": user, "tab": "home"})
    calls = mailroom.fake.wait_for("views.publish", before + 1)
    assert calls[-1].ok, calls[-1].response
    home = mailroom.fake.home(user)
    assert home is not None
    return home


def wait_view(mailroom: Any, view_id: str, text: str) -> dict[str, Any]:
    mailroom.fake.wait_until(lambda: text in json.dumps(mailroom.fake.view(view_id) or {}))
    view = mailroom.fake.view(view_id)
    assert view is not None
    return view


def opened_view(mailroom: Any, n: int) -> dict[str, Any]:
    call = mailroom.fake.wait_for("views.open", n)[n - 1]
    assert call.ok, call.response
    return call.response["view"]


def test_member_home_shows_counts_and_recent_mail_but_no_admin_parts(mailroom: Any) -> None:
    inbox, secret = two_accounts(mailroom)
    ingest(mailroom, inbox, "Visible question")
    ingest(mailroom, secret, "Secret memo")
    home = open_home(mailroom, "UMEMBER")
    text = json.dumps(home)
    assert "All (1)" in text and "Unread (1)" in text and "Visible question" in text
    assert "Secret memo" not in text
    assert ids.HOME_ADD_ACCOUNT not in text and ids.HOME_ACCOUNT_MENU not in text
    admin = json.dumps(open_home(mailroom, "UADMIN"))
    assert "secret@example.com" in admin and ids.HOME_ACCOUNT_MENU in admin
    assert "All (2)" in admin  # the admin is in both channels
    assert "Email Templates" in admin and ids.HOME_CLIENT_NEW in admin


def test_search_modal_updates_from_a_typed_query(mailroom: Any) -> None:
    inbox, secret = two_accounts(mailroom)
    ingest(mailroom, inbox, "Invoice overdue")
    ingest(mailroom, inbox, "Lunch plans")
    ingest(mailroom, secret, "Invoice secret")
    home = open_home(mailroom, "UMEMBER")
    mailroom.driver.block_action("UMEMBER", ids.HOME_SEARCH, view=home["id"])
    view = opened_view(mailroom, 1)
    assert "Lunch plans" in json.dumps(view)  # no query yet: the newest conversations
    mailroom.driver.block_action(
        "UMEMBER",
        ids.SEARCH_QUERY,
        "invoice",
        view=view["id"],
        state={"search_q": {ids.SEARCH_QUERY: "invoice"}},
    )
    mailroom.fake.wait_until(lambda: len(mailroom.fake.calls_to("views.update")) >= 1)
    text = json.dumps(mailroom.fake.view(view["id"]))
    assert "Invoice overdue" in text
    assert "Lunch plans" not in text and "Invoice secret" not in text
    update = mailroom.fake.calls_to("views.update")[-1]
    assert update.ok and update.args.get("hash")  # raced updates are refused, not applied
    # the filter narrows the same modal
    mailroom.driver.block_action(
        "UMEMBER",
        ids.SEARCH_FILTER,
        view=view["id"],
        selected_option={"text": {"type": "plain_text", "text": "Archived"}, "value": "archived"},
        state={"search_q": {ids.SEARCH_QUERY: "invoice"}},
    )
    mailroom.fake.wait_until(lambda: len(mailroom.fake.calls_to("views.update")) >= 2)
    assert "Invoice overdue" not in json.dumps(mailroom.fake.view(view["id"]))


def test_home_filter_button_opens_the_filtered_list(mailroom: Any) -> None:
    inbox, _ = two_accounts(mailroom)
    ingest(mailroom, inbox, "Still unread")
    home = open_home(mailroom, "UMEMBER")
    mailroom.driver.block_action(
        "UMEMBER", f"{ids.HOME_FILTER}:archived", "archived", view=home["id"]
    )
    view = opened_view(mailroom, 1)
    assert "Nothing matches" in json.dumps(view) and "Still unread" not in json.dumps(view)


def test_forged_admin_actions_are_refused_and_change_nothing(mailroom: Any) -> None:
    inbox, _ = two_accounts(mailroom)
    for value in (f"pause:{inbox}", f"sync_now:{inbox}", f"remove:{inbox}", f"edit:{inbox}"):
        mailroom.driver.block_action(
            "UMEMBER",
            ids.HOME_ACCOUNT_MENU,
            action_type="overflow",
            selected_option={"text": {"type": "plain_text", "text": "x"}, "value": value},
        )
    mailroom.fake.wait_until(lambda: len(mailroom.fake.calls_to("views.open")) >= 4)
    for call in mailroom.fake.calls_to("views.open"):
        assert "Only Mailroom admins" in json.dumps(call.arg("view"))
    forged = {
        "type": "modal",
        "id": "VFORGED",
        "callback_id": ids.VIEW_ACCOUNT_REMOVE,
        "private_metadata": json.dumps({"account_id": inbox}),
        "blocks": [],
    }
    resp = mailroom.driver.view_submission("UMEMBER", forged)
    assert "Only Mailroom admins" in resp.body
    forged_add = {
        "type": "modal",
        "callback_id": ids.VIEW_ACCOUNT_ADD,
        "blocks": [],
        "state": {"values": {}},
    }
    mailroom.driver.view_submission("UMEMBER", forged_add)
    with mailroom.services.session_factory() as s:
        account = s.get_one(Account, inbox)
        assert account.status == AccountStatus.ACTIVE and account.next_sync_at is None
        assert len(s.scalars(select(Account)).all()) == 2


@pytest.mark.dovecot
def test_add_imap_account_with_failing_then_passing_connection_test(
    mailroom: Any, dovecot: Any
) -> None:
    username, password = dovecot.new_user("home")
    settings = imap_settings_for(dovecot, username)
    home = open_home(mailroom, "UADMIN")
    mailroom.driver.block_action("UADMIN", ids.HOME_ADD_ACCOUNT, view=home["id"])
    chooser = opened_view(mailroom, 1)
    assert "not yet available" in json.dumps(chooser)
    mailroom.driver.block_action("UADMIN", ids.ACCOUNT_PROVIDER_PICK, "imap", view=chooser["id"])
    form = wait_view(mailroom, chooser["id"], "Add IMAP account")
    address = dovecot.address(username)

    def values(pw: str) -> dict[str, Any]:
        return {
            B_EMAIL: {"v": address},
            "acc_imap_host": {"v": settings.host},
            "acc_imap_port": {"v": str(settings.port)},
            "acc_imap_sec": {"v": "plain"},
            "acc_imap_user": {"v": username},
            B_IMAP_PW: {"v": pw},
            "acc_smtp_host": {"v": "127.0.0.1"},
            "acc_smtp_port": {"v": "1"},
            "acc_smtp_sec": {"v": "plain"},
            B_CHANNEL: {"v": "CINBOX"},
            "acc_freq": {"v": "60"},
        }

    mailroom.driver.block_action(
        "UADMIN", ids.ACCOUNT_TEST_CONNECTION, "test", view=form["id"], state=values("wrong")
    )
    failed = wait_view(mailroom, form["id"], "Connection failed")
    assert "wrong" not in json.dumps(failed)  # the password is never shown back
    mailroom.driver.block_action(
        "UADMIN", ids.ACCOUNT_TEST_CONNECTION, "test", view=form["id"], state=values(password)
    )
    # IMAP logs in; the SMTP part (port 1) then fails, and the modal says which step failed
    wait_view(mailroom, form["id"], "SMTP")
    resp = mailroom.driver.view_submission("UADMIN", form["id"], values(password))
    assert resp.status == 200 and resp.body == "", resp.body
    mailroom.settle()  # added right after the ack
    with mailroom.services.session_factory() as s:
        acc = s.scalars(select(Account).where(Account.email == address)).one()
        assert acc.channel_id == "CINBOX" and acc.sync_interval_seconds == 60
        assert acc.created_by == "UADMIN"
        assert password.encode() not in acc.credentials
    # adding the same address again is refused on the email field, in the ack
    mailroom.driver.block_action(
        "UADMIN", ids.HOME_ADD_ACCOUNT, view=mailroom.fake.home("UADMIN")["id"]
    )
    chooser2 = opened_view(mailroom, 2)
    mailroom.driver.block_action("UADMIN", ids.ACCOUNT_PROVIDER_PICK, "imap", view=chooser2["id"])
    form2 = wait_view(mailroom, chooser2["id"], "Add IMAP account")
    resp = mailroom.driver.view_submission("UADMIN", form2["id"], values(password))
    assert "exists already" in json.loads(resp.body)["errors"][B_EMAIL]
    assert mailroom.fake.ack_problems == []


@pytest.mark.dovecot
def test_passing_connection_test_against_dovecot(
    mailroom: Any, dovecot: Any, smtp_server: Any
) -> None:
    username, password = dovecot.new_user("pass")
    settings = imap_settings_for(dovecot, username)
    mailroom.driver.block_action(
        "UADMIN", ids.HOME_ADD_ACCOUNT, view=open_home(mailroom, "UADMIN")["id"]
    )
    chooser = opened_view(mailroom, 1)
    mailroom.driver.block_action("UADMIN", ids.ACCOUNT_PROVIDER_PICK, "imap", view=chooser["id"])
    form = wait_view(mailroom, chooser["id"], "Add IMAP account")
    state = {
        B_EMAIL: {"v": dovecot.address(username)},
        "acc_imap_host": {"v": settings.host},
        "acc_imap_port": {"v": str(settings.port)},
        "acc_imap_sec": {"v": "plain"},
        "acc_imap_user": {"v": username},
        B_IMAP_PW: {"v": password},
        "acc_smtp_host": {"v": smtp_server.host},
        "acc_smtp_port": {"v": str(smtp_server.port)},
        "acc_smtp_sec": {"v": "plain"},
        "acc_smtp_user": {"v": username},
        B_CHANNEL: {"v": "CINBOX"},
    }
    mailroom.driver.block_action(
        "UADMIN", ids.ACCOUNT_TEST_CONNECTION, "test", view=form["id"], state=state
    )
    done = wait_view(mailroom, form["id"], "Connection works")
    assert "INBOX" in json.dumps(done)


@pytest.mark.dovecot
def test_edit_sync_settings_from_server_folders_is_used_by_next_run(
    mailroom: Any, dovecot: Any
) -> None:
    from bot.sync.engine import sync_account

    username, password = dovecot.new_user("edit")
    dovecot.deliver(
        username,
        b"From: a@b.test\r\nSubject: In archive\r\nMessage-ID: <arch1@b.test>\r\n\r\nx\r\n",
        "Archive",
    )
    dovecot.deliver(
        username,
        b"From: a@b.test\r\nSubject: In inbox\r\nMessage-ID: <inb1@b.test>\r\n\r\nx\r\n",
        "INBOX",
    )
    acc = mailroom.account(
        dovecot.address(username), imap=imap_settings_for(dovecot, username), password=password
    )
    home = open_home(mailroom, "UADMIN")
    mailroom.driver.block_action(
        "UADMIN",
        ids.HOME_ACCOUNT_MENU,
        view=home["id"],
        block_id=f"account_{acc.id}",
        selected_option={"text": {"type": "plain_text", "text": "Edit"}, "value": f"edit:{acc.id}"},
    )
    loading = opened_view(mailroom, 1)
    assert "Reading the folder list" in json.dumps(loading)
    edit = wait_view(mailroom, loading["id"], "multi_static_select")
    assert "Archive" in json.dumps(edit)
    resp = mailroom.driver.view_submission(
        "UADMIN",
        edit["id"],
        {B_CHANNEL: {"v": "CINBOX"}, "acc_freq": {"v": "900"}, B_FOLDERS: {"v": ["Archive"]}},
    )
    assert resp.status == 200 and resp.body == ""
    mailroom.settle()  # saved right after the ack
    with mailroom.services.session_factory() as s:
        saved = s.get_one(Account, acc.id)
        assert saved.folders == ["Archive"] and saved.sync_interval_seconds == 900
    summary = sync_account(mailroom.services, acc.id)
    assert summary.folders == ["Archive"]
    # the sync log modal shows the run with its counts
    mailroom.driver.block_action(
        "UADMIN",
        ids.HOME_ACCOUNT_MENU,
        view=mailroom.fake.home("UADMIN")["id"],
        block_id=f"account_{acc.id}",
        selected_option={"text": {"type": "plain_text", "text": "Log"}, "value": f"log:{acc.id}"},
    )
    log = json.dumps(opened_view(mailroom, 2))
    assert "1 new" in log and "Sync log" in log


def test_pause_resume_sync_now_and_remove_with_confirmation(mailroom: Any) -> None:
    inbox, _ = two_accounts(mailroom)

    def menu(value: str) -> None:
        mailroom.driver.block_action(
            "UADMIN",
            ids.HOME_ACCOUNT_MENU,
            view=mailroom.fake.home("UADMIN")["id"],
            block_id=f"account_{inbox}",
            selected_option={"text": {"type": "plain_text", "text": "x"}, "value": value},
        )

    def status() -> AccountStatus:
        with mailroom.services.session_factory() as s:
            return s.get_one(Account, inbox).status

    open_home(mailroom, "UADMIN")
    menu(f"pause:{inbox}")
    mailroom.fake.wait_until(lambda: status() == AccountStatus.PAUSED)
    mailroom.fake.wait_until(lambda: "Paused" in json.dumps(mailroom.fake.home("UADMIN")))
    menu(f"resume:{inbox}")
    mailroom.fake.wait_until(lambda: status() == AccountStatus.ACTIVE)
    with session_scope(mailroom.services.session_factory) as s:
        s.get_one(Account, inbox).next_sync_at = None
    menu(f"sync_now:{inbox}")

    def due() -> bool:
        with mailroom.services.session_factory() as s:
            return s.get_one(Account, inbox).next_sync_at is not None

    mailroom.fake.wait_until(due)
    menu(f"remove:{inbox}")
    confirm = opened_view(mailroom, 1)
    assert "Remove *support@example.com*" in json.dumps(confirm)
    resp = mailroom.driver.view_submission("UADMIN", confirm["id"])
    assert resp.status == 200 and resp.body == ""  # closes the modal

    def gone() -> bool:
        with mailroom.services.session_factory() as s:
            return s.get(Account, inbox) is None

    mailroom.fake.wait_until(gone)


def test_home_with_many_accounts_and_clients_pages_within_100_blocks(mailroom: Any) -> None:
    for i in range(25):
        mailroom.account(f"box{i:02d}@example.com")
    with session_scope(mailroom.services.session_factory) as s:
        s.add_all(Client(name=f"Client {i:02d}") for i in range(30))
    home = open_home(mailroom, "UADMIN")
    assert len(home["blocks"]) <= 100
    text = json.dumps(home)
    assert "box00@" in text and "box24@" not in text
    mailroom.driver.block_action(
        "UADMIN", f"{ids.HOME_PAGE}:accounts_next", "accounts:1", view=home["id"]
    )
    mailroom.fake.wait_until(lambda: "box08@" in json.dumps(mailroom.fake.home("UADMIN")))
    assert "box00@" not in json.dumps(mailroom.fake.home("UADMIN"))


def test_search_modal_as_you_type_shows_each_conversation_once(mailroom: Any) -> None:
    """Issue 19: a half-typed word finds its matches, one line per conversation."""
    from bot.store.ingest import ingest_message
    from tests.store.helpers import raw_mail as thread_mail

    inbox, _ = two_accounts(mailroom)
    with session_scope(mailroom.services.session_factory) as s:
        account = s.get_one(Account, inbox)
        for n, (mid, irt) in enumerate([("r1@c.test", None), ("r2@c.test", "r1@c.test")], 1):
            raw = thread_mail(
                mid,
                "Refund request" if n == 1 else "Re: Refund request",
                irt=irt,
                refs=[irt] if irt else [],
                date=f"Mon, 0{n} Jan 2024 10:00:00 +0000",
                body="please refund the order",
            )
            ingest_message(s, account, raw)
    ingest(mailroom, inbox, "Lunch plans")
    home = open_home(mailroom, "UMEMBER")
    mailroom.driver.block_action("UMEMBER", ids.HOME_SEARCH, view=home["id"])
    view = opened_view(mailroom, 1)
    mailroom.driver.block_action(
        "UMEMBER",
        ids.SEARCH_QUERY,
        "refu",
        view=view["id"],
        state={"search_q": {ids.SEARCH_QUERY: "refu"}},
    )
    mailroom.fake.wait_until(lambda: len(mailroom.fake.calls_to("views.update")) >= 1)
    text = json.dumps(mailroom.fake.view(view["id"]))
    assert text.count("Refund request") == 1  # the thread once, its newest email
    assert "2 of 2 emails match" in text and "Lunch plans" not in text
    assert mailroom.fake.calls_to("views.update")[-1].ok
