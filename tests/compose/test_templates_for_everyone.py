"""Every member writes templates: personal ones for themselves, shared ones for the team.
The compose picker lists the shared templates and the person's own; only the author (or an
admin, for a shared one) changes a template; another person's personal template never renders,
even when its id is sent by hand."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from bot.blocks import ids
from bot.blocks import templates as tb
from bot.mail.richtext import rich_text_to_text
from bot.store.db import session_scope
from bot.store.models import Template
from tests.compose.test_end_to_end import _open


def _new_template(mailroom: Any, user: str, name: str, body: str, *, share: bool) -> Template:
    before = len(mailroom.fake.calls_to("views.open"))
    mailroom.driver.block_action(user, ids.HOME_TEMPLATE_NEW, channel_id="CINBOX")
    mailroom.fake.wait_until(lambda: len(mailroom.fake.calls_to("views.open")) > before)
    modal = mailroom.fake.modal_stack(user)[-1]
    assert modal["callback_id"] == ids.VIEW_TEMPLATE_EDIT
    values: dict[str, Any] = {
        tb.NAME_BLOCK: {tb.VALUE: name},
        tb.SUBJECT_BLOCK: {tb.VALUE: ""},
        tb.BODY_BLOCK: {tb.VALUE: body},
    }
    if share:
        values[tb.SHARE_BLOCK] = {tb.VALUE: [tb.SHARE_OPTION]}
    resp = mailroom.driver.view_submission(user, modal["id"], values)
    assert resp.status == 200 and resp.body == "", resp.body

    def saved() -> Template | None:
        with session_scope(mailroom.services.session_factory) as s:
            row = s.scalar(select(Template).where(Template.name == name))
            if row is not None:
                s.expunge(row)
            return row

    mailroom.fake.wait_until(lambda: saved() is not None)
    row = saved()
    assert row is not None
    return row


def _picker_names(view: dict[str, Any]) -> list[str]:
    from bot.blocks import compose as cb

    block = next(b for b in view["blocks"] if b.get("block_id") == cb.TEMPLATE_BLOCK)
    return [o["text"]["text"] for o in block["element"]["options"]]


def _pick(
    mailroom: Any, user: str, view: dict[str, Any], template_id: int, *, forged: bool = False
) -> dict[str, Any]:
    before = len(mailroom.fake.calls_to("views.update"))
    if forged:  # an option the picker does not offer, sent by hand
        option = {"text": {"type": "plain_text", "text": "x"}, "value": str(template_id)}
        mailroom.driver.block_action(
            user,
            ids.COMPOSE_TEMPLATE_PICK,
            view=view["id"],
            action_type="static_select",
            selected_option=option,
        )
    else:
        mailroom.driver.block_action(
            user, ids.COMPOSE_TEMPLATE_PICK, str(template_id), view=view["id"]
        )
    mailroom.fake.wait_until(lambda: len(mailroom.fake.calls_to("views.update")) > before)
    filled = mailroom.fake.view(view["id"])
    assert filled is not None
    return filled


def _body_text(view: dict[str, Any]) -> str:
    block = next(b for b in view["blocks"] if str(b.get("block_id", "")).startswith("body_"))
    value = block["element"].get("initial_value")
    return rich_text_to_text(value) if value else ""


def test_a_member_shares_a_template_and_another_member_inserts_it(
    mailroom: Any, box: dict[str, Any]
) -> None:
    mailroom.fake.add_user("UMIA", "mia.member", email="mia@example.com")
    with mailroom.fake.ws.lock:
        mailroom.fake.ws.channels["CINBOX"].members.append("UMIA")
    shared = _new_template(
        mailroom,
        "UMEMBER",
        "Replacement",
        "Hi {{ contact.first_name }}, a new one is on its way.",
        share=True,
    )
    mine = _new_template(mailroom, "UMEMBER", "My notes", "Personal wording", share=False)
    assert shared.shared and shared.created_by == "UMEMBER"
    assert not mine.shared

    # Mia sees the shared one, not Max's personal one, and inserting it fills her reply.
    view = _open(mailroom, box, ids.CONV_REPLY, user="UMIA")
    names = _picker_names(view)
    assert "Replacement" in names and not any("My notes" in n for n in names)
    filled = _pick(mailroom, "UMIA", view, shared.id)
    assert "Hi Casey, a new one is on its way." in _body_text(filled)

    # Max sees both, his own marked.
    mailroom.fake.modal_stack("UMIA").clear()
    max_view = _open(mailroom, box, ids.CONV_REPLY, user="UMEMBER")
    assert {"Replacement", "My notes (yours)"} <= set(_picker_names(max_view))

    # Mia cannot render Max's personal template by sending its id by hand.
    forged = _pick(mailroom, "UMIA", view, mine.id, forged=True)
    assert "Personal wording" not in json.dumps(forged)
    assert "deleted" in json.dumps(forged)


def test_only_the_author_or_an_admin_changes_a_shared_template(
    mailroom: Any, box: dict[str, Any]
) -> None:
    mailroom.fake.add_user("UMIA", "mia.member", email="mia@example.com")
    with mailroom.fake.ws.lock:
        mailroom.fake.ws.channels["CINBOX"].members.append("UMIA")
    tpl = _new_template(mailroom, "UMEMBER", "Shared one", "Team text", share=True)
    # Mia's Edit shows a refusal; a forged save changes nothing.
    mailroom.driver.block_action("UMIA", ids.HOME_TEMPLATE_EDIT, str(tpl.id), channel_id="CINBOX")
    mailroom.fake.wait_until(lambda: mailroom.fake.modal_stack("UMIA"))
    assert "Only its author" in json.dumps(mailroom.fake.modal_stack("UMIA")[-1])
    forged = {
        "type": "modal",
        "id": "VFORGED",
        "callback_id": ids.VIEW_TEMPLATE_EDIT,
        "private_metadata": json.dumps({"t": tpl.id}),
        "blocks": [],
        "state": {
            "values": {
                tb.NAME_BLOCK: {tb.VALUE: {"type": "plain_text_input", "value": "Hijacked"}},
                tb.BODY_BLOCK: {tb.VALUE: {"type": "plain_text_input", "value": "evil"}},
            }
        },
    }
    assert "Only its author" in mailroom.driver.view_submission("UMIA", forged).body
    # An admin manages shared templates.
    mailroom.driver.block_action("UADMIN", ids.HOME_TEMPLATE_EDIT, str(tpl.id), channel_id="CINBOX")
    mailroom.fake.wait_until(lambda: mailroom.fake.modal_stack("UADMIN"))
    edit = mailroom.fake.modal_stack("UADMIN")[-1]
    assert edit["callback_id"] == ids.VIEW_TEMPLATE_EDIT
    resp = mailroom.driver.view_submission(
        "UADMIN",
        edit["id"],
        {
            tb.NAME_BLOCK: {tb.VALUE: "Shared one"},
            tb.SUBJECT_BLOCK: {tb.VALUE: ""},
            tb.BODY_BLOCK: {tb.VALUE: "Team text, reviewed"},
            tb.SHARE_BLOCK: {tb.VALUE: [tb.SHARE_OPTION]},
        },
    )
    assert resp.status == 200

    def reviewed() -> bool:
        with session_scope(mailroom.services.session_factory) as s:
            row = s.get(Template, tpl.id)
            return row is not None and "reviewed" in row.body

    mailroom.fake.wait_until(reviewed)
    with session_scope(mailroom.services.session_factory) as s:
        row = s.get_one(Template, tpl.id)
        assert row.name == "Shared one" and row.shared
