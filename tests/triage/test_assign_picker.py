"""The Assign… picker of a channel with more people than a static select can hold (Slack: 100
options): an external_select whose options a Bolt options listener loads as the person types.
Signed Slack requests against the fake Slack, a conversation from the real Dovecot."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.blocks import triage as tb
from bot.store.models import Account
from tests.inbox.test_conversation_flow import conversation
from tests.triage.test_triage_flow import CHANNEL, _click, _first_mail

pytestmark = pytest.mark.dovecot


@pytest.fixture
def inbox(mailroom: Any, dovecot: Any, smtp_server: Any) -> tuple[Any, Account, Any]:
    acc, user = mailroom.mailbox_account(dovecot, smtp_server)
    return mailroom, acc, user


CROWD = 150  # people added to the channel besides UADMIN and UMEMBER


def _crowd(m: Any) -> None:
    """150 more people in the channel, a bot and a deactivated account in it too, and a
    workspace member outside it; pages of 40 so the app must follow Slack's cursors."""
    fake = m.fake
    for i in range(CROWD):
        fake.add_user(f"UP{i:03d}", f"person.{i:03d}", real_name=f"Person {i:03d}")
    fake.add_user("UZELDA", "zq", real_name="Zelda Quux")
    fake.add_user("UHELPER", "helperbot", is_bot=True)
    fake.add_user("UGONE", "gone.person", deleted=True)
    fake.add_user("UFAR", "zelda.far", real_name="Zelda Far")  # not in the channel
    with fake.ws.lock:
        ch = fake.ws.channels[CHANNEL]
        ch.members.extend([f"UP{i:03d}" for i in range(CROWD)])
        ch.members.extend(["UZELDA", "UHELPER", "UGONE"])
        fake.ws.max_page = 40
    m.services.access.forget()


def _open_assign(m: Any, user: str, cid: int) -> dict[str, Any]:
    _click(m, user, tb.ASSIGN, str(cid))
    m.fake.wait_until(lambda: m.fake.modal_stack(user), timeout=10)
    return dict(m.fake.modal_stack(user)[-1])


def _select(view: dict[str, Any]) -> dict[str, Any]:
    (block,) = [b for b in view["blocks"] if b.get("block_id") == tb.ASSIGN_BLOCK]
    return dict(block["element"])


def _options(m: Any, user: str, view: dict[str, Any], typed: str) -> list[dict[str, Any]]:
    resp = m.driver.block_suggestion(user, tb.ASSIGN_SELECT, typed, view=view["id"])
    assert resp.status == 200
    return list(json.loads(resp.body)["options"])


def test_a_small_channel_keeps_the_static_list(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    cid, _ = _first_mail(m, acc, user, dovecot, "Small team")
    select = _select(_open_assign(m, "UMEMBER", cid))
    assert select["type"] == "static_select"
    assert [o["value"] for o in select["options"]] == [tb.NOBODY, "UADMIN", "UMEMBER"]


def test_a_big_channel_loads_matching_members_as_the_person_types(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    cid, _ = _first_mail(m, acc, user, dovecot, "Big team")
    _crowd(m)
    view = _open_assign(m, "UMEMBER", cid)
    select = _select(view)
    assert select["type"] == "external_select" and "options" not in select

    # Nothing typed: Nobody and the first 99 people by name, 100 in all (Slack's cap).
    first = _options(m, "UMEMBER", view, "")
    assert len(first) == tb.MAX_OPTIONS
    assert first[0]["value"] == tb.NOBODY
    assert [o["text"]["text"] for o in first[1:4]] == ["Ada Admin", "Max Member", "Person 000"]

    # Filtered by real name, by handle / display name, case-insensitively, several words.
    assert [o["value"] for o in _options(m, "UMEMBER", view, "zelda")] == ["UZELDA"]
    assert [o["value"] for o in _options(m, "UMEMBER", view, "@ZQ")] == ["UZELDA"]
    tens = _options(m, "UMEMBER", view, "person 01")
    assert [o["value"] for o in tens] == [f"UP{i:03d}" for i in range(10, 20)]
    # "person" matches all 150 in the channel: capped at 100, Nobody does not match.
    many = _options(m, "UMEMBER", view, "person")
    assert len(many) == tb.MAX_OPTIONS and tb.NOBODY not in [o["value"] for o in many]
    # Only the channel's people: not the workspace member outside it, no bot, nobody
    # deactivated; "nobody" offers unassigning.
    assert _options(m, "UMEMBER", view, "far") == []
    assert _options(m, "UMEMBER", view, "helperbot") == []
    assert _options(m, "UMEMBER", view, "gone") == []
    assert _options(m, "UMEMBER", view, "mailroom") == []
    assert [o["value"] for o in _options(m, "UMEMBER", view, "nob")] == [tb.NOBODY]

    # A chosen member is assigned, and the picker then starts from them.
    ok = m.driver.view_submission(
        "UMEMBER", view["id"], {tb.ASSIGN_BLOCK: {tb.ASSIGN_SELECT: "UZELDA"}}
    )
    assert ok.status == 200 and ok.body == ""
    m.settle()
    assert conversation(m, cid).assignee == "UZELDA"
    again = _select(_open_assign(m, "UMEMBER", cid))
    initial = again["initial_option"]
    assert (initial["value"], initial["text"]["text"]) == ("UZELDA", "Zelda Quux")


def test_no_options_for_someone_outside_the_channel(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    cid, _ = _first_mail(m, acc, user, dovecot, "Big team, outsider")
    _crowd(m)
    view = _open_assign(m, "UMEMBER", cid)
    assert len(_options(m, "UMEMBER", view, "")) == tb.MAX_OPTIONS

    # The same form's options load from someone who is not in the channel: nothing.
    assert _options(m, "UOUTSIDER", view, "") == []
    assert _options(m, "UOUTSIDER", view, "zelda") == []
    # Nor for the person who opened it, once they have left the channel.
    with m.fake.ws.lock:
        m.fake.ws.channels[CHANNEL].members.remove("UMEMBER")
    m.services.access.forget()
    assert _options(m, "UMEMBER", view, "") == []
    assert _options(m, "UMEMBER", view, "zelda") == []


def test_submitting_a_non_member_is_refused_next_to_the_field(inbox: Any, dovecot: Any) -> None:
    m, acc, user = inbox
    cid, _ = _first_mail(m, acc, user, dovecot, "Big team, refused")
    _crowd(m)
    view = _open_assign(m, "UMEMBER", cid)

    # Someone the picker never offered (outside the channel).
    bad = m.driver.view_submission(
        "UMEMBER", view["id"], {tb.ASSIGN_BLOCK: {tb.ASSIGN_SELECT: "UFAR"}}
    )
    assert bad.status == 200
    assert json.loads(bad.body)["response_action"] == "errors"
    assert tb.ASSIGN_BLOCK in json.loads(bad.body)["errors"]

    # Someone offered while the modal was open who has left the channel since.
    assert [o["value"] for o in _options(m, "UMEMBER", view, "person 149")] == ["UP149"]
    with m.fake.ws.lock:
        m.fake.ws.channels[CHANNEL].members.remove("UP149")
    m.services.access.forget()
    gone = m.driver.view_submission(
        "UMEMBER", view["id"], {tb.ASSIGN_BLOCK: {tb.ASSIGN_SELECT: "UP149"}}
    )
    assert gone.status == 200 and tb.ASSIGN_BLOCK in json.loads(gone.body)["errors"]
    m.settle()
    assert conversation(m, cid).assignee is None
