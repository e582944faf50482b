"""The OAuth add step offers the folders it can name before sign-in (issue #17 point 2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.blocks import ids
from bot.blocks.accounts import B_FOLDERS
from bot.oauth_connect import read_state
from bot.store.models import Account
from tests.oauth_connect.conftest import GOOGLE, MICROSOFT, TENANT, Connect


def _step_view(connect: Connect, provider: str) -> dict[str, Any]:
    fake = connect.mailroom.fake
    chooser = connect.open_chooser()
    connect.mailroom.driver.block_action(
        "UADMIN", ids.ACCOUNT_PROVIDER_PICK, provider, view=chooser["id"]
    )
    fake.wait_until(lambda: ids.VIEW_ACCOUNT_OAUTH in json.dumps(fake.view(chooser["id"])))
    view = fake.view(chooser["id"])
    assert view is not None
    return view


@pytest.mark.parametrize(
    ("provider", "choices", "own"),
    [
        (
            "gmail",
            [
                ("Inbox", "INBOX"),
                ("Sent", "SENT"),
                ("Archive (All Mail not in Inbox)", "ARCHIVE"),
            ],
            "Your own labels",
        ),
        (
            "graph",
            [("Inbox", "inbox"), ("Sent Items", "sentitems"), ("Archive", "archive")],
            "Your own folders",
        ),
    ],
)
def test_oauth_step_offers_the_well_known_folders(
    connect: Connect, provider: str, choices: list[tuple[str, str]], own: str
) -> None:
    view = _step_view(connect, provider)
    [block] = [b for b in view["blocks"] if b.get("block_id") == B_FOLDERS]
    options = [(o["text"]["text"], o["value"]) for o in block["element"]["options"]]
    assert options == choices
    text = json.dumps(view)
    assert own in text and "Edit sync settings" in text and "IMAP" not in text


def test_folders_chosen_before_sign_in_are_the_new_accounts(connect: Connect) -> None:
    _url, query = connect.sign_in_link("gmail", folders=("INBOX", "ARCHIVE"))
    state = query["state"][0]
    assert read_state(connect.mailroom.services, state).folders == ("INBOX", "ARCHIVE")
    code = connect.oauth.issue_code("google", GOOGLE[0], "team@gmail.test", connect.redirect_uri)
    status, page = connect.callback(code=code, state=state)
    assert status == 200, page

    _url, query = connect.sign_in_link("graph", folders=("sentitems",))
    code = connect.oauth.issue_code(
        "microsoft", MICROSOFT[0], "ops@contoso.test", connect.redirect_uri, TENANT
    )
    status, page = connect.callback(code=code, state=query["state"][0])
    assert status == 200, page
    with connect.mailroom.services.session_factory() as s:
        by_email = {a.email: a.folders for a in s.query(Account)}
    assert by_email == {"team@gmail.test": ["INBOX", "ARCHIVE"], "ops@contoso.test": ["sentitems"]}
    assert connect.mailroom.fake.ack_problems == []
