"""Compose with context: the email answered is shown, a template keeps what was typed, the
mailbox signature is sent, and a closed modal's text comes back as a draft."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.blocks.accounts import B_CHANNEL, B_SIGNATURE
from bot.mail.richtext import rich_text_to_text
from bot.store.db import session_scope
from bot.store.models import Account, ComposeDraft, Template
from tests.compose.test_end_to_end import _inbox, _open, _parts
from tests.mail.htmlcheck import html_problems
from tests.slackfake import validate_view

pytestmark = pytest.mark.dovecot

VIEW_KEYS = ("type", "title", "blocks", "submit", "close", "private_metadata", "callback_id")


def _block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(b for b in view["blocks"] if b.get("block_id") == block_id)
    return found


def _valid(view: dict[str, Any]) -> None:
    assert validate_view({k: view[k] for k in VIEW_KEYS if view.get(k) is not None}) == []


def test_reply_modal_shows_the_email_answered(mailroom: Any, box: dict[str, Any]) -> None:
    view = _open(mailroom, box, ids.CONV_REPLY)
    shown = _block(view, cb.ANSWERING_BLOCK)["text"]["text"]
    assert f"Casey Customer &lt;{box['customer_addr']}&gt;" in shown
    assert "Fri 01 Mar 2024" in shown and ">My widget is broken." in shown
    assert view["notify_on_close"] is True


def test_template_picked_after_typing_keeps_the_typed_text(
    mailroom: Any, box: dict[str, Any]
) -> None:
    with session_scope(mailroom.services.session_factory) as s:
        s.add(Template(name="Thanks", subject="", body="Thanks {{ contact.first_name }}!"))
    view = _open(mailroom, box, ids.CONV_REPLY)
    tpl_id = str(_block(view, cb.TEMPLATE_BLOCK)["element"]["options"][0]["value"])
    mailroom.driver.block_action(
        "UMEMBER",
        ids.COMPOSE_TEMPLATE_PICK,
        tpl_id,
        view=view["id"],
        state={"body_0": {cb.VALUE: "I sent a new widget today."}},
    )
    mailroom.fake.wait_for("views.update", timeout=10)
    filled = mailroom.fake.view(view["id"])
    assert filled is not None
    body = _block(filled, "body_1")["element"]["initial_value"]
    # Below what was typed, after a blank line (in the text and, as <br>, in the HTML).
    assert rich_text_to_text(body) == "I sent a new widget today.\n\nThanks Casey!\n"
    assert "My widget is broken." in _block(filled, cb.ANSWERING_BLOCK)["text"]["text"]
    _valid(filled)


def test_signature_set_by_an_admin_is_in_the_sent_mail(mailroom: Any, box: dict[str, Any]) -> None:
    acc_id = box["acc"].id
    mailroom.driver.event({"type": "app_home_opened", "user": "UADMIN", "tab": "home"})
    mailroom.fake.wait_until(lambda: mailroom.fake.home("UADMIN") is not None, timeout=10)
    home = mailroom.fake.home("UADMIN")
    mailroom.driver.block_action(
        "UADMIN",
        ids.HOME_ACCOUNT_MENU,
        view=home["id"],
        block_id=f"account_{acc_id}",
        selected_option={"text": {"type": "plain_text", "text": "Edit"}, "value": f"edit:{acc_id}"},
    )
    loading = mailroom.fake.wait_for("views.open", timeout=10)[0].response["view"]
    mailroom.fake.wait_until(
        lambda: B_SIGNATURE in json.dumps(mailroom.fake.view(loading["id"]) or {}), timeout=10
    )
    edit = mailroom.fake.view(loading["id"])
    assert edit is not None
    base = {B_CHANNEL: {"v": "CINBOX"}, "acc_freq": {"v": "300"}}
    bad = mailroom.driver.view_submission(
        "UADMIN", edit["id"], {**base, B_SIGNATURE: {"v": "{{ agent.nmae }}"}}
    )
    assert "agent.nmae" in bad.json()["errors"][B_SIGNATURE]
    good = mailroom.driver.view_submission(
        "UADMIN",
        edit["id"],
        {**base, B_SIGNATURE: {"v": "Cheers,\n{{ agent.name }}\n{{ account.email }}"}},
    )
    assert good.status == 200 and good.body == ""
    mailroom.settle()  # the signature is written after the ack
    view = _open(mailroom, box, ids.CONV_REPLY)
    assert "signature" in _block(view, "body_0")["hint"]["text"]
    to = _block(view, cb.TO_BLOCK)["element"]["initial_value"]
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        view["id"],
        {
            cb.TO_BLOCK: {cb.VALUE: to},
            "subject_0": {cb.VALUE: "Re: Broken widget"},
            "body_0": {cb.VALUE: "A new one is on its way."},
            cb.QUOTE_BLOCK: {cb.VALUE: [cb.QUOTE_OPTION]},
        },
    )
    assert resp.status == 200
    mailroom.run_outbox()
    (mail,) = _inbox(box)
    text, html = _parts(mail)
    signature = f"A new one is on its way.\n\n-- \nCheers,\nMax Member\n{box['acc'].email}\n"
    assert signature in text
    assert text.index("Cheers,") < text.index("> My widget is broken.")
    assert "Cheers,<br>\nMax Member" in html and html.index("Cheers,") < html.index("<blockquote")
    assert html_problems(html) == []
    with session_scope(mailroom.services.session_factory) as s:
        account = s.get_one(Account, acc_id)
        assert account.signature is not None and account.signature_rich is not None


def test_closed_modal_keeps_a_draft_offered_on_the_next_reply(
    mailroom: Any, box: dict[str, Any]
) -> None:
    view = _open(mailroom, box, ids.CONV_REPLY)
    typed = {
        cb.TO_BLOCK: {cb.VALUE: box["customer_addr"]},
        "subject_0": {cb.VALUE: "Re: Broken widget"},
        "body_0": {cb.VALUE: "Half-written answer"},
    }
    assert mailroom.driver.view_closed("UMEMBER", view["id"], values=typed).status == 200
    mailroom.fake.wait_until(lambda: _drafts(mailroom) == ["Half-written answer\n"], timeout=10)
    # Someone else replying there gets a clean modal.
    other = _open(mailroom, box, ids.CONV_REPLY, user="UADMIN")
    assert "initial_value" not in _block(other, "body_0")["element"]
    mailroom.fake.reset_calls()
    again = _open(mailroom, box, ids.CONV_REPLY)
    offered = _block(again, "body_0")["element"]["initial_value"]
    assert rich_text_to_text(offered) == "Half-written answer\n"
    assert ids.COMPOSE_DISCARD_DRAFT in json.dumps(_block(again, cb.DRAFT_BLOCK))
    _valid(again)
    draft_id = _block(again, cb.DRAFT_BLOCK)["accessory"]["value"]
    mailroom.driver.block_action("UMEMBER", ids.COMPOSE_DISCARD_DRAFT, draft_id, view=again["id"])
    mailroom.fake.wait_for("views.update", timeout=10)
    fresh = mailroom.fake.view(again["id"])
    assert fresh is not None
    assert "initial_value" not in _block(fresh, "body_1")["element"]  # new block id: emptied
    assert not any(b.get("block_id") == cb.DRAFT_BLOCK for b in fresh["blocks"])
    assert _drafts(mailroom) == []
    # Closing with nothing typed keeps nothing; sending drops a kept draft.
    mailroom.driver.view_closed("UMEMBER", fresh["id"], values={"body_1": {cb.VALUE: ""}})
    assert _drafts(mailroom) == []


def _drafts(mailroom: Any) -> list[str]:
    with session_scope(mailroom.services.session_factory) as s:
        return [d.body for d in s.scalars(select(ComposeDraft))]
