"""Clients are shared address-book data: every member browses, searches, adds and edits them
from the App Home and `/inbox clients`; admins also delete them and import a CSV file uploaded
in Slack, with each bad line reported by number in the modal."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from bot.blocks import ids
from bot.blocks.clients import B_CSV_FILE, B_EMAILS, B_NAME
from bot.store.db import session_scope
from bot.store.models import AuditLog, Client, ClientAddress
from tests.commands.conftest import last_response
from tests.home.test_home_flows import open_home, opened_view


def _clients(*names: str, mailroom: Any) -> dict[str, int]:
    out = {}
    with session_scope(mailroom.services.session_factory) as s:
        for name in names:
            c = Client(name=name, company=f"{name} Inc")
            s.add(c)
            s.flush()
            s.add(ClientAddress(client_id=c.id, email=f"hello@{name.lower()}.test"))
            out[name] = c.id
    return out


def _menu_values(home: dict[str, Any], client_id: int) -> list[str]:
    block = next(b for b in home["blocks"] if b.get("block_id") == f"client_{client_id}")
    return [o["value"] for o in block["accessory"]["options"]]


def _search_block(home: dict[str, Any]) -> dict[str, Any]:
    return next(
        b for b in home["blocks"] if str(b.get("block_id", "")).startswith("home_client_search")
    )


def test_a_member_browses_searches_and_edits_clients_but_cannot_delete(mailroom: Any) -> None:
    mailroom.account("support@example.com")
    ids_ = _clients("Acme", "Globex", "Initech", mailroom=mailroom)
    home = open_home(mailroom, "UMEMBER")
    text = json.dumps(home)
    assert "Acme" in text and "Globex" in text and "Initech" in text
    assert _menu_values(home, ids_["Acme"]) == [f"edit:{ids_['Acme']}", f"timeline:{ids_['Acme']}"]
    assert ids.HOME_CLIENT_IMPORT not in text  # admins only

    # Search (Enter in the box): only the matches, by company or address too.
    block = _search_block(home)
    before = len(mailroom.fake.calls_to("views.publish"))
    mailroom.driver.block_action(
        "UMEMBER",
        ids.HOME_CLIENT_SEARCH,
        "globex.test",
        view=home["id"],
        block_id=block["block_id"],
    )
    mailroom.fake.wait_for("views.publish", before + 1)
    found = mailroom.fake.home("UMEMBER")
    listed = [
        b["block_id"] for b in found["blocks"] if str(b.get("block_id", "")).startswith("client_")
    ]
    assert listed == [f"client_{ids_['Globex']}"]
    assert "globex.test" in _search_block(found)["element"]["initial_value"]

    # Edit from the menu: a member may.
    mailroom.driver.block_action(
        "UMEMBER",
        ids.HOME_CLIENT_EDIT,
        view=found["id"],
        block_id=f"client_{ids_['Globex']}",
        selected_option={
            "text": {"type": "plain_text", "text": "Edit"},
            "value": f"edit:{ids_['Globex']}",
        },
    )
    modal = opened_view(mailroom, 1)
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        modal["id"],
        {B_NAME: {"v": "Globex"}, B_EMAILS: {"v": "hello@globex.test\nceo@globex.test"}},
    )
    assert resp.status == 200 and resp.body == "", resp.body

    def emails() -> set[str]:
        with mailroom.services.session_factory() as s:
            return set(
                s.scalars(
                    select(ClientAddress.email).where(ClientAddress.client_id == ids_["Globex"])
                )
            )

    # The write follows the ack (then the Home is published): wait for it, not for the ack.
    mailroom.fake.wait_until(lambda: emails() == {"hello@globex.test", "ceo@globex.test"})

    # A forged Delete from a member: refused, nothing deleted.
    mailroom.driver.block_action(
        "UMEMBER",
        ids.HOME_CLIENT_EDIT,
        selected_option={
            "text": {"type": "plain_text", "text": "x"},
            "value": f"delete:{ids_['Acme']}",
        },
        action_type="overflow",
    )
    mailroom.fake.wait_until(lambda: len(mailroom.fake.calls_to("views.open")) >= 2)
    assert "Only Mailroom admins" in json.dumps(mailroom.fake.calls_to("views.open")[1].args)
    forged = {
        "type": "modal",
        "id": "VFORGED",
        "callback_id": ids.VIEW_CLIENT_DELETE,
        "private_metadata": json.dumps({"client_id": ids_["Acme"]}),
        "blocks": [],
    }
    assert "Only Mailroom admins" in mailroom.driver.view_submission("UMEMBER", forged).body
    with mailroom.services.session_factory() as s:
        assert s.get(Client, ids_["Acme"]) is not None


def test_inbox_clients_lists_and_finds_clients(mailroom: Any) -> None:
    mailroom.account("support@example.com")
    ids_ = _clients("Acme", "Globex", mailroom=mailroom)
    mailroom.driver.command(text="clients")
    everything = last_response(mailroom, 1)
    assert everything["response_type"] == "ephemeral"
    assert "Acme" in json.dumps(everything) and "Globex" in json.dumps(everything)
    mailroom.driver.command(text="clients acme inc")
    found = last_response(mailroom, 2)
    rows = [b for b in found["blocks"] if str(b.get("block_id", "")).startswith("client_")]
    assert [b["block_id"] for b in rows] == [f"client_{ids_['Acme']}"]
    assert f"edit:{ids_['Acme']}" in json.dumps(rows)


def test_an_admin_deletes_with_confirmation_and_imports_a_csv_upload(mailroom: Any) -> None:
    mailroom.account("support@example.com")
    ids_ = _clients("Acme", mailroom=mailroom)
    home = open_home(mailroom, "UADMIN")
    assert f"delete:{ids_['Acme']}" in _menu_values(home, ids_["Acme"])
    mailroom.driver.block_action(
        "UADMIN",
        ids.HOME_CLIENT_EDIT,
        view=home["id"],
        block_id=f"client_{ids_['Acme']}",
        selected_option={
            "text": {"type": "plain_text", "text": "x"},
            "value": f"delete:{ids_['Acme']}",
        },
    )
    confirm = opened_view(mailroom, 1)
    assert "Delete *Acme*" in json.dumps(confirm)
    assert mailroom.driver.view_submission("UADMIN", confirm["id"]).body == ""
    mailroom.settle()
    with mailroom.services.session_factory() as s:
        assert s.get(Client, ids_["Acme"]) is None
        assert s.scalars(select(AuditLog.action).where(AuditLog.action == "client.delete")).all()

    # Import: three rows, the third without a name (line 4 of the file, counting the header).
    csv_text = (
        "name,company,emails,domains\n"
        "Umbrella,Umbrella Corp,info@umbrella.test,umbrella.test\n"
        "Hooli,,gavin@hooli.test;press@hooli.test,\n"
        ",Nameless Ltd,who@nameless.test,\n"
    )
    uploaded = mailroom.fake.add_file("clients.csv", csv_text.encode(), "text/csv", user="UADMIN")
    home = mailroom.fake.home("UADMIN")
    mailroom.driver.block_action("UADMIN", ids.HOME_CLIENT_IMPORT, view=home["id"])
    modal = opened_view(mailroom, 2)
    assert modal["callback_id"] == ids.VIEW_CLIENT_IMPORT
    missing = mailroom.driver.view_submission("UADMIN", modal["id"], {B_CSV_FILE: {"v": []}})
    assert B_CSV_FILE in json.loads(missing.body)["errors"]
    resp = mailroom.driver.view_submission("UADMIN", modal["id"], {B_CSV_FILE: {"v": [uploaded]}})
    assert resp.status == 200

    def reported() -> bool:
        return "added" in json.dumps(mailroom.fake.view(modal["id"]) or {})

    mailroom.fake.wait_until(reported, timeout=15)
    report = json.dumps(mailroom.fake.view(modal["id"]))
    assert "2 clients added" in report and "line 4" in report and "missing name" in report
    with mailroom.services.session_factory() as s:
        names = set(s.scalars(select(Client.name)))
        assert names == {"Umbrella", "Hooli"}


def test_a_member_cannot_import(mailroom: Any) -> None:
    mailroom.account("support@example.com")
    uploaded = mailroom.fake.add_file("c.csv", b"name\nEvil Corp\n", "text/csv")
    forged = {
        "type": "modal",
        "id": "VFORGED",
        "callback_id": ids.VIEW_CLIENT_IMPORT,
        "blocks": [],
        "state": {"values": {B_CSV_FILE: {"v": {"type": "file_input", "files": [uploaded]}}}},
    }
    assert "Only Mailroom admins" in mailroom.driver.view_submission("UMEMBER", forged).body
    with mailroom.services.session_factory() as s:
        assert s.scalars(select(Client.name)).all() == []
