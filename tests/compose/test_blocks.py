"""Every compose and template surface passes the fake Slack's Block Kit checks."""

from __future__ import annotations

import json
from typing import Any

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.blocks.templates import template_edit_view, template_section
from bot.compose.form import ComposeMeta, format_addresses, read_submission
from bot.mail.richtext import rich_text_to_text
from bot.mail.types import Address
from bot.store.templates import TemplateSummary
from tests.slackfake import validate_message_blocks, validate_view


def _form(mode: str, **kw: object) -> cb.ComposeForm:
    meta = ComposeMeta(mode=mode, message_id="1.abc@mailroom.test", account_id=1, rotation=2)
    return cb.ComposeForm(mode=mode, metadata=meta.dump(), rotation=2, **kw)  # type: ignore[arg-type]


def test_compose_views_are_valid_in_every_mode() -> None:
    long_body = "x" * 5000
    for mode in ("new", "reply", "reply_all", "forward"):
        view = cb.compose_view(
            _form(
                mode,
                to="Jane <jane@acme.test>",
                subject="Re: " + "s" * 2000,
                body=long_body,
                context="Replying to *&lt;x&gt;*",
                from_options=[(i, f"box{i}@mailroom.test") for i in range(150)],
                from_selected=3,
                templates=[(i, f"T{i}" * 40) for i in range(120)],
                forward_attachments=["a.pdf"],
            )
        )
        assert validate_view(view) == [], mode
        assert len(view["private_metadata"]) < 3000
        body = next(b for b in view["blocks"] if b.get("block_id") == cb.body_block(2))
        # A rich text input: no 3,000-character cap, the whole text is kept.
        assert body["element"]["type"] == "rich_text_input"
        assert rich_text_to_text(body["element"]["initial_value"]) == long_body + "\n"
        assert "3,000" in body["hint"]["text"]


def test_template_picker_dispatches_and_rotation_changes_block_ids() -> None:
    view = cb.compose_view(_form("reply", templates=[(1, "Thanks")]))
    picker = next(b for b in view["blocks"] if b.get("block_id") == cb.TEMPLATE_BLOCK)
    assert picker["dispatch_action"] is True
    assert picker["element"]["action_id"] == ids.COMPOSE_TEMPLATE_PICK
    block_ids = {b.get("block_id") for b in view["blocks"]}
    assert {"subject_2", "body_2", cb.TO_BLOCK} <= block_ids
    # private_metadata holds ids only
    meta = json.loads(view["private_metadata"])
    assert set(meta) <= {"mode", "mid", "a", "c", "m", "n", "r"}


def test_held_and_result_posts_are_valid() -> None:
    arrived = [cb.Arrived("Jane <j@x.test>", "2024-01-01 10:00 UTC", "Re: <b>", "more *info*")] * 7
    assert validate_view(cb.held_view(arrived, 5)) == []
    for text, blocks in (
        cb.sent_post("U1", ["a@x.test"] * 300, "Subject <!channel>"),
        cb.failed_post("U1", "535 auth failed " * 400, 7),
        cb.held_post("U1", arrived, 7),
    ):
        assert text
        assert validate_message_blocks(blocks) == []
    _, blocks = cb.sent_post("U1", ["a@x.test"], "<!channel>")
    assert "<!channel>" not in json.dumps(blocks)
    _, failed = cb.failed_post("U1", "boom", 7)
    buttons = [e for b in failed if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"]) for b in buttons] == [(ids.SEND_RETRY, "7")]


def test_template_surfaces_are_valid() -> None:
    many = [
        TemplateSummary(i, f"Name {i} <x>", "Subj {{ thread.subject }}", None) for i in range(40)
    ]
    home: dict[str, Any] = {"type": "home", "blocks": template_section(many, is_admin=True)}
    assert validate_view(home) == []
    assert len(home["blocks"]) < 40
    admin_ids = {
        e["action_id"]
        for b in home["blocks"]
        for e in ([b.get("accessory"), *b.get("elements", [])])
        if e and "action_id" in e
    }
    assert admin_ids == {ids.HOME_TEMPLATE_NEW, ids.HOME_TEMPLATE_EDIT, ids.HOME_TEMPLATE_DELETE}
    # A member: New template, and Edit/Delete on their own templates only (shared ones are the
    # author's and the admins').
    mixed = [
        TemplateSummary(1, "Team", "", None, True, "UOTHER"),
        TemplateSummary(2, "Mine", "", None, False, "UME"),
    ]
    plain_home: dict[str, Any] = {
        "type": "home",
        "blocks": template_section(mixed, is_admin=False, user_id="UME"),
    }
    assert validate_view(plain_home) == []
    editable = {
        e["value"]
        for b in plain_home["blocks"]
        for e in b.get("elements", [])
        if e.get("action_id") == ids.HOME_TEMPLATE_EDIT
    }
    assert editable == {"2"}
    assert ids.HOME_TEMPLATE_NEW in json.dumps(plain_home)
    assert validate_view(template_edit_view(None)) == []
    assert validate_view(template_edit_view(3, name="n", subject="s", body="b" * 4000)) == []


def _state(meta: ComposeMeta, **texts: str) -> dict[str, object]:
    values: dict[str, object] = {}
    for block, text in texts.items():
        values[block] = {cb.VALUE: {"type": "plain_text_input", "value": text}}
    return values


def test_submission_errors_sit_next_to_their_field() -> None:
    meta = ComposeMeta(mode="reply", message_id="m@x.test", rotation=1)
    values = _state(
        meta,
        to="Jane <jane@acme.test>, not-an-address",
        cc="bob@acme",
        bcc="",
        subject_1="Re: hi",
        body_1="",
    )
    _, errors = read_submission(values, meta)
    assert set(errors) == {cb.TO_BLOCK, cb.CC_BLOCK, "body_1"}
    assert "not-an-address" in errors[cb.TO_BLOCK]
    sub, errors = read_submission(
        _state(meta, to='"Doe, Jane" <jane@acme.test>', subject_1="Re: hi", body_1="Thanks"), meta
    )
    assert errors == {}
    assert sub.to == [Address("Doe, Jane", "jane@acme.test")]
    assert format_addresses(sub.to) == '"Doe, Jane" <jane@acme.test>'
    _, errors = read_submission(
        _state(ComposeMeta("new", "m@x"), to="a@b.test", body_0="x"), ComposeMeta("new", "m@x")
    )
    assert cb.FROM_BLOCK in errors
