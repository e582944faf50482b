"""Running the inbox as a team, end to end: real Dovecot + SMTP → sync → store → outbox → fake
Slack, and signed Slack requests (clicks, modals, reactions, /inbox) → Bolt over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.blocks import ids
from bot.blocks import triage as tb
from bot.store.models import Account, AuditLog, Conversation, Outbox, utcnow
from bot.sync.engine import sync_account
from bot.sync.snooze import SnoozeWaker
from tests.inbox.test_conversation_flow import (
    all_ok,
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

CHANNEL = "CINBOX"
CUSTOMER = "Ann Client <ann@external.test>"


@pytest.fixture
def inbox(mailroom: Any, dovecot: Any, smtp_server: Any) -> tuple[Any, Account, Any]:
    acc, user = mailroom.mailbox_account(dovecot, smtp_server)
    return mailroom, acc, user


def _first_mail(m: Any, acc: Account, user: Any, dovecot: Any, subject: str) -> tuple[int, str]:
    raw, mid = make_email(subject, "Please help.", to=user.address, sender=CUSTOMER)
    dovecot.deliver(user.username, raw)
    sync_account(m.services, acc.id)
    run_all(m)
    with m.services.session_factory() as s:
        cid = int(s.scalar(select(Conversation.id).where(Conversation.merged_into_id.is_(None))))
    return cid, mid


def _parent_text(m: Any) -> str:
    return json.dumps(parent(m.fake)["blocks"])


def _click(m: Any, user: str, action_id: str, value: str, **kw: Any) -> Any:
    top = parent(m.fake)
    resp = m.driver.block_action(
        user, action_id, value, channel_id=CHANNEL, message_ts=top["ts"], **kw
    )
    assert resp.status == 200
    settle(m)
    return resp


def _menu(m: Any, user: str, verb: str, cid: int) -> None:
    value = tb.menu_value(verb, cid)
    _click(
        m,
        user,
        tb.MENU,
        value,
        selected_option={"text": {"type": "plain_text", "text": verb}, "value": value},
    )


def _dms_to(m: Any, user: str) -> list[Any]:
    with m.fake.ws.lock:
        ims = {c.id for c in m.fake.ws.channels.values() if c.is_im and c.im_user == user}
    return [c for c in m.fake.calls_to("chat.postMessage") if c.ok and c.arg("channel") in ims]


# -- owner ---------------------------------------------------------------------------------


def test_take_it_and_assign_set_and_show_the_owner_and_dm_once(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    cid, _ = _first_mail(m, acc, user, dovecot, "Where is my order?")
    assert "Unassigned" in _parent_text(m)

    # Someone outside the channel clicks Take it: nothing changes.
    _click(m, "UOUTSIDER", tb.TAKE, str(cid))
    assert conversation(m, cid).assignee is None

    _click(m, "UMEMBER", tb.TAKE, str(cid))
    assert conversation(m, cid).assignee == "UMEMBER"
    run_all(m)
    assert "Owner Max Member" in _parent_text(m) and "<@" not in _parent_text(m)
    assert _dms_to(m, "UMEMBER") == []  # taking it yourself is no news to you

    # Assign…: the picker offers the channel's people only.
    _click(m, "UMEMBER", tb.ASSIGN, str(cid))
    m.fake.wait_until(lambda: m.fake.modal_stack("UMEMBER"), timeout=10)
    view = m.fake.modal_stack("UMEMBER")[-1]
    offered = json.dumps(view["blocks"])
    assert "UADMIN" in offered and "UMEMBER" in offered
    assert "UOUTSIDER" not in offered and "UBOT" not in offered

    # Someone who left the channel since the modal opened can no longer be chosen.
    with m.fake.ws.lock:
        m.fake.ws.channels[CHANNEL].members.remove("UADMIN")
    m.services.access.forget()  # the membership cache would notice within its TTL
    bad = m.driver.view_submission(
        "UMEMBER", view["id"], {tb.ASSIGN_BLOCK: {tb.ASSIGN_SELECT: "UADMIN"}}
    )
    assert bad.status == 200 and tb.ASSIGN_BLOCK in bad.body
    assert conversation(m, cid).assignee == "UMEMBER"
    with m.fake.ws.lock:
        m.fake.ws.channels[CHANNEL].members.append("UADMIN")
    m.services.access.forget()

    ok = m.driver.view_submission(
        "UMEMBER", view["id"], {tb.ASSIGN_BLOCK: {tb.ASSIGN_SELECT: "UADMIN"}}
    )
    assert ok.status == 200 and ok.body == ""
    m.settle()  # the owner is written after the ack
    assert conversation(m, cid).assignee == "UADMIN"
    # The same assignment again (a retry, a second person) changes and DMs nothing.
    _click(m, "UMEMBER", tb.ASSIGN, str(cid))
    m.fake.wait_until(lambda: m.fake.modal_stack("UMEMBER"), timeout=10)
    again = m.fake.modal_stack("UMEMBER")[-1]
    m.driver.view_submission(
        "UMEMBER",
        again["id"],
        {tb.ASSIGN_BLOCK: {tb.ASSIGN_SELECT: "UADMIN"}},
    )
    run_all(m)
    assert "Owner Ada Admin" in _parent_text(m)
    dms = _dms_to(m, "UADMIN")
    assert len(dms) == 1
    assert "assigned you" in dms[0].arg("text") and "slack.com/archives" in dms[0].arg("text")

    changes = _audit(m, cid, "triage.assign")
    assert [(a.actor, a.details["from"], a.details["to"]) for a in changes] == [
        ("UMEMBER", None, "UMEMBER"),
        ("UMEMBER", "UMEMBER", "UADMIN"),
    ]
    all_ok(m.fake)


def test_assignment_dms_can_be_turned_off_in_the_app_home(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    cid, _ = _first_mail(m, acc, user, dovecot, "Quiet please")
    m.driver.event({"type": "app_home_opened", "user": "UADMIN", "tab": "home"})
    m.fake.wait_until(lambda: m.fake.home("UADMIN") is not None, timeout=10)
    home = m.fake.home("UADMIN")
    assert home is not None
    assert "Unassigned" in json.dumps(home["blocks"]) and "Quiet please" in json.dumps(home)
    resp = m.driver.block_action("UADMIN", tb.HOME_DMS, "off", view=home["id"])
    assert resp.status == 200
    settle(m)
    m.driver.command(text=f"assign #{cid} <@UADMIN|ada.admin>", user_id="UMEMBER")
    wait_db(m, lambda: conversation(m, cid).assignee == "UADMIN")
    run_all(m)
    assert _dms_to(m, "UADMIN") == []
    home = m.fake.home("UADMIN")
    assert home is not None and "Turn on assignment DMs" in json.dumps(home["blocks"])


def test_inbox_assign_command(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    cid, _ = _first_mail(m, acc, user, dovecot, "By command")
    m.driver.command(text=f"assign #{cid} @olga.outsider", user_id="UMEMBER")
    settle(m)
    assert conversation(m, cid).assignee is None
    assert "members of this mailbox" in m.fake.responses[-1].body.get("text", "")
    m.driver.command(text=f"assign #{cid} me", user_id="UOUTSIDER")
    settle(m)
    assert conversation(m, cid).assignee is None
    m.driver.command(text=f"assign #{cid} @max.member", user_id="UADMIN")
    wait_db(m, lambda: conversation(m, cid).assignee == "UMEMBER")
    m.driver.command(text="list mine", user_id="UMEMBER")
    settle(m)
    listing = m.fake.responses[-1].body
    assert "By command" in json.dumps(listing) and "Mine: *1*" in json.dumps(listing)
    m.driver.command(text=f"assign #{cid} nobody", user_id="UMEMBER")
    wait_db(m, lambda: conversation(m, cid).assignee is None)


# -- status --------------------------------------------------------------------------------


def _reply(m: Any, cid: int, text: str) -> None:
    from bot.blocks import compose as cb

    _click(m, "UMEMBER", ids.CONV_REPLY, str(cid))
    m.fake.wait_until(lambda: m.fake.modal_stack("UMEMBER"), timeout=10)
    view = m.fake.modal_stack("UMEMBER")[-1]
    to_block = next(b for b in view["blocks"] if b.get("block_id") == cb.TO_BLOCK)
    values = {
        cb.TO_BLOCK: {cb.VALUE: to_block["element"]["initial_value"]},
        "subject_0": {cb.VALUE: "Re: it"},
        "body_0": {cb.VALUE: text},
    }
    resp = m.driver.view_submission("UMEMBER", view["id"], values)
    assert resp.status == 200 and resp.body == ""


def test_reply_waits_inbound_reopens_check_mark_is_done_and_a_follow_up_reopens(
    inbox: Any, dovecot: Any
) -> None:
    m, acc, user = inbox
    cid, mid = _first_mail(m, acc, user, dovecot, "Broken widget")
    assert conversation(m, cid).waiting_since is not None
    assert "Customer waiting since" in _parent_text(m)

    _reply(m, cid, "A new one is on its way.")
    run_all(m)
    c = conversation(m, cid)
    assert c.status == "waiting" and c.waiting_since is None
    assert "Waiting on customer" in _parent_text(m)

    follow, _ = make_email(
        "Re: Broken widget", "Still nothing.", to=user.address, sender=CUSTOMER, reply_to=mid
    )
    dovecot.deliver(user.username, follow)
    sync_account(m.services, acc.id)
    run_all(m)
    c = conversation(m, cid)
    assert c.status == "open" and c.waiting_since is not None
    top = parent(m.fake)
    assert ":large_green_circle: Open" in json.dumps(top["blocks"])
    assert any("Still nothing." in json.dumps(r) for r in m.fake.thread(CHANNEL, top["ts"]))

    # ✅ on someone else's message, or from outside the channel: nothing.
    thread_ts = m.fake.thread(CHANNEL, top["ts"])[0]["ts"]
    _react(m, "UMEMBER", "white_check_mark", thread_ts)
    _react(m, "UOUTSIDER", "white_check_mark", top["ts"])
    assert conversation(m, cid).status == "open"

    _react(m, "UMEMBER", "white_check_mark", top["ts"])
    wait_db(m, lambda: conversation(m, cid).archived)
    assert conversation(m, cid).status == "done"
    run_all(m)
    boxes = folders(dovecot, user)
    assert boxes["INBOX"] == []
    assert ":white_check_mark: Done" in _parent_text(m)

    again, _ = make_email(
        "Re: Broken widget", "One more thing.", to=user.address, sender=CUSTOMER, reply_to=mid
    )
    dovecot.deliver(user.username, again)
    sync_account(m.services, acc.id)
    run_all(m)
    c = conversation(m, cid)
    assert c.status == "open" and not c.archived
    assert ":large_green_circle: Open" in _parent_text(m)
    statuses = [(a.details["from"], a.details["to"]) for a in _audit(m, cid, "triage.status")]
    assert statuses == [
        ("open", "waiting"),
        ("waiting", "open"),
        ("open", "done"),
        ("done", "open"),
    ]
    all_ok(m.fake)


def _react(m: Any, user: str, name: str, ts: str) -> None:
    resp = m.driver.event(
        {
            "type": "reaction_added",
            "user": user,
            "reaction": name,
            "item": {"type": "message", "channel": CHANNEL, "ts": ts},
            "item_user": "UBOT",
            "event_ts": f"{utcnow().timestamp():.6f}",
        }
    )
    assert resp.status == 200
    settle(m)


def test_eyes_takes_it_and_the_emoji_is_configurable(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    cid, _ = _first_mail(m, acc, user, dovecot, "Emoji")
    top = parent(m.fake)
    _react(m, "UOUTSIDER", "eyes", top["ts"])
    assert conversation(m, cid).assignee is None
    _react(m, "UADMIN", "eyes", top["ts"])
    assert conversation(m, cid).assignee == "UADMIN"

    with m.services.session_factory() as s:
        account = s.get_one(Account, acc.id)
        account.config = {**account.config, "triage": {"done": "heavy_check_mark"}}
        s.commit()
    _react(m, "UADMIN", "white_check_mark", top["ts"])
    assert not conversation(m, cid).archived
    _react(m, "UADMIN", "heavy_check_mark::skin-tone-2", top["ts"])
    wait_db(m, lambda: conversation(m, cid).archived)


# -- snooze --------------------------------------------------------------------------------


def test_snooze_comes_back_at_its_time_and_earlier_on_new_mail(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    cid, mid = _first_mail(m, acc, user, dovecot, "Call me back")
    _menu(m, "UMEMBER", tb.TOMORROW, cid)
    until = conversation(m, cid).snoozed_until
    assert until is not None
    # UMEMBER's Slack time zone (users.info) is Europe/London: 09:00 there, tomorrow.
    local = until.astimezone(ZoneInfo("Europe/London"))
    assert (local.hour, local.minute) == (9, 0)
    assert local.date() == (datetime.now(ZoneInfo("Europe/London")).date() + timedelta(days=1))
    run_all(m)
    assert ":zzz: Snoozed until" in _parent_text(m)
    with m.services.session_factory() as s:
        from bot.store.conversations import list_conversations

        unassigned = list_conversations(s, filter="unassigned", account_ids=[acc.id])
        snoozed = list_conversations(s, filter="snoozed", account_ids=[acc.id])
    assert unassigned == [] and [c.id for c in snoozed] == [cid]

    # A worker after a restart, with a clock a second past the snooze: it wakes once.
    early = SnoozeWaker(m.services, clock=lambda: until - timedelta(seconds=1))
    assert early.tick() == []
    late = SnoozeWaker(m.services, clock=lambda: until + timedelta(seconds=1))
    assert late.tick() == [cid]
    assert late.tick() == []
    run_all(m)
    assert conversation(m, cid).snoozed_until is None
    assert "Snoozed until" not in _parent_text(m)
    assert "Back from snooze" in _parent_text(m)
    top = parent(m.fake)
    told = [
        c
        for c in m.fake.calls_to("chat.postMessage")
        if c.ok and "Back from snooze" in str(c.arg("text"))
    ]
    assert len(told) == 1 and told[0].arg("reply_broadcast") in (True, "true", "1")
    assert told[0].arg("thread_ts") == top["ts"]

    # Snoozed again; new mail brings it back before its time.
    _menu(m, "UMEMBER", tb.NEXT_WEEK, cid)
    assert conversation(m, cid).snoozed_until is not None
    more, _ = make_email(
        "Re: Call me back", "Hello?", to=user.address, sender=CUSTOMER, reply_to=mid
    )
    dovecot.deliver(user.username, more)
    sync_account(m.services, acc.id)
    run_all(m)
    assert conversation(m, cid).snoozed_until is None
    wakes = _audit(m, cid, "triage.wake")
    assert [w.details["reason"] for w in wakes] == ["time", "mail"]
    assert SnoozeWaker(m.services, clock=lambda: utcnow() + timedelta(days=30)).tick() == []
    all_ok(m.fake)


def test_snooze_until_a_chosen_time_in_the_clickers_zone(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    m.fake.add_user("UTOKYO", "taro", tz="Asia/Tokyo")
    with m.fake.ws.lock:
        m.fake.ws.channels[CHANNEL].members.append("UTOKYO")
    cid, _ = _first_mail(m, acc, user, dovecot, "Pick a time")
    _menu(m, "UTOKYO", tb.PICK, cid)
    m.fake.wait_until(lambda: m.fake.modal_stack("UTOKYO"), timeout=10)
    view = m.fake.modal_stack("UTOKYO")[-1]
    day = (datetime.now(ZoneInfo("Asia/Tokyo")).date() + timedelta(days=2)).isoformat()
    resp = m.driver.view_submission(
        "UTOKYO",
        view["id"],
        {
            tb.SNOOZE_DATE_BLOCK: {tb.SNOOZE_DATE: day},
            tb.SNOOZE_TIME_BLOCK: {tb.SNOOZE_TIME: "14:30"},
        },
    )
    assert resp.status == 200 and resp.body == ""
    m.settle()  # the snooze is written after the ack
    until = conversation(m, cid).snoozed_until
    assert until is not None
    assert until == datetime.fromisoformat(f"{day}T14:30:00+09:00").astimezone(UTC)


# -- "is replying" -------------------------------------------------------------------------


def test_is_replying_shows_while_the_modal_is_open(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    cid, _ = _first_mail(m, acc, user, dovecot, "Who answers?")

    def opened() -> dict[str, Any]:
        _click(m, "UMEMBER", ids.CONV_REPLY, str(cid))
        m.fake.wait_until(lambda: m.fake.modal_stack("UMEMBER"), timeout=10)
        run_all(m)
        assert "Max Member is replying" in _parent_text(m)
        view: dict[str, Any] = m.fake.modal_stack("UMEMBER")[-1]
        assert view.get("notify_on_close") is True
        return view

    # Closed with Cancel: Slack sends view_closed.
    view = opened()
    m.driver.view_closed("UMEMBER", view["id"])
    settle(m)
    run_all(m)
    assert "is replying" not in _parent_text(m)

    # Left open and forgotten: the worker clears it after the timeout.
    opened()
    later = utcnow() + timedelta(minutes=16)
    SnoozeWaker(m.services, clock=lambda: later).tick()
    run_all(m)
    assert "is replying" not in _parent_text(m)
    m.fake.apply_view_closed(m.fake.modal_stack("UMEMBER")[-1]["id"], is_cleared=True)

    # Submitted: cleared at once.
    _reply(m, cid, "On it.")
    run_all(m)
    assert "is replying" not in _parent_text(m)
    assert conversation(m, cid).replying_user is None
    all_ok(m.fake)


# -- history -------------------------------------------------------------------------------


def test_open_modal_shows_the_history(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    cid, _ = _first_mail(m, acc, user, dovecot, "History lesson")
    _click(m, "UMEMBER", tb.TAKE, str(cid))
    run_all(m)
    _menu(m, "UMEMBER", tb.LATER_TODAY, cid)
    run_all(m)
    _click(m, "UMEMBER", ids.CONV_OPEN, str(cid))
    m.fake.wait_until(lambda: m.fake.modal_stack("UMEMBER"), timeout=10)
    shown = json.dumps(m.fake.modal_stack("UMEMBER")[-1]["blocks"], ensure_ascii=False)
    assert "*History*" in shown
    assert "owner none → <@UMEMBER>" in shown and "snooze none →" in shown
    all_ok(m.fake)


def _audit(m: Any, cid: int, action: str) -> list[AuditLog]:
    with m.services.session_factory() as s:
        return list(
            s.scalars(
                select(AuditLog)
                .where(AuditLog.conversation_id == cid, AuditLog.action == action)
                .order_by(AuditLog.id)
            )
        )


def test_no_outbox_row_leaks_between_effects(inbox: Any, dovecot: Any) -> None:
    """A repeated Take it queues no second parent refresh or DM."""
    m, acc, user = inbox
    cid, _ = _first_mail(m, acc, user, dovecot, "Twice")
    _click(m, "UMEMBER", tb.TAKE, str(cid))
    before = count(m, Outbox)
    m.driver.block_action("UMEMBER", tb.TAKE, str(cid), channel_id=CHANNEL)
    settle(m)
    assert count(m, Outbox) == before
