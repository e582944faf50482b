"""Connecting and reconnecting Gmail / Microsoft 365 accounts from the App Home, through
signed Slack requests, the app's own HTTP server and the fake OAuth token endpoints."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from bot.blocks import ids
from bot.blocks.accounts import oauth_step_modal, provider_chooser_modal
from bot.oauth_connect import ConnectRequest, make_state, read_state
from bot.store.db import session_scope
from bot.store.models import Account, AccountStatus, AuditLog, Provider
from bot.sync.api_sync import create_oauth_account
from tests.fakes.graph_server import FakeGraph
from tests.oauth_connect.conftest import GOOGLE, MICROSOFT, TENANT, Connect, link_of


def accounts(connect: Connect) -> list[Account]:
    with connect.mailroom.services.session_factory() as s:
        return list(s.scalars(select(Account).order_by(Account.id)))


def slack_traffic(connect: Connect) -> str:
    return json.dumps([[c.method, c.args] for c in connect.mailroom.fake.calls])


def assert_views_valid(connect: Connect) -> None:
    fake = connect.mailroom.fake
    for method in ("views.open", "views.update", "views.publish", "chat.postMessage"):
        for call in fake.calls_to(method):
            assert call.ok, (method, call.response)
    assert fake.ack_problems == []


def test_admin_connects_gmail_and_nothing_secret_leaks(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url, query = connect.sign_in_link("gmail", interval="60", auto_link=False)
    assert url.startswith(f"{connect.oauth.url}/o/oauth2/v2/auth?")
    assert query["redirect_uri"] == [connect.redirect_uri]
    assert query["client_id"] == [GOOGLE[0]] and query["access_type"] == ["offline"]
    request = read_state(connect.mailroom.services, query["state"][0])
    assert (request.user_id, request.provider, request.channel_id) == ("UADMIN", "gmail", "CINBOX")
    assert request.interval == 60 and request.auto_link is False and request.account_id is None

    code = connect.oauth.issue_code("google", GOOGLE[0], "Support@Gmail.test", connect.redirect_uri)
    status, page = connect.callback(code=code, state=query["state"][0])
    assert status == 200 and "Mailbox connected" in page and "support@gmail.test" in page

    [account] = accounts(connect)
    assert account.provider == Provider.GMAIL and account.email == "support@gmail.test"
    assert account.status == AccountStatus.ACTIVE and account.channel_id == "CINBOX"
    assert account.sync_interval_seconds == 60 and account.auto_link is False
    assert account.created_by == "UADMIN"
    assert "client_secret" not in json.dumps(account.config)
    assert account.config["api"] == {"base_url": "https://127.0.0.1:9/gmail"}
    secrets = connect.mailroom.services.vault.decrypt(account.credentials)
    assert secrets["client_secret"] == GOOGLE[1]
    assert (
        connect.oauth.state.refresh_tokens[secrets["refresh_token"]].email == "Support@Gmail.test"
    )
    assert account.credentials is not None
    for value in (GOOGLE[1], secrets["refresh_token"], secrets["access_token"]):
        assert value.encode() not in account.credentials  # encrypted at rest
    with connect.mailroom.services.session_factory() as s:
        actions = [a.action for a in s.scalars(select(AuditLog))]
    assert "account.add" in actions

    connect.mailroom.run_outbox()
    dms = [c for c in connect.mailroom.fake.calls_to("chat.postMessage") if c.ok]
    assert any("Connected support@gmail.test" in str(c.args.get("text")) for c in dms)
    assert connect.mailroom.fake.home("UADMIN") is not None  # republished
    assert "support@gmail.test" in json.dumps(connect.mailroom.fake.home("UADMIN"))
    assert_views_valid(connect)

    leaked = (GOOGLE[1], secrets["refresh_token"], secrets["access_token"], code)
    traffic, logs = slack_traffic(connect), caplog.text
    for value in leaked:
        assert value not in traffic and value not in logs


def test_microsoft_connect_signs_in_at_the_tenant(connect: Connect) -> None:
    url, query = connect.sign_in_link("graph", auto_link=True)
    assert urlsplit(url).path == f"/{TENANT}/oauth2/v2.0/authorize"
    code = connect.oauth.issue_code(
        "microsoft", MICROSOFT[0], "ops@contoso.test", connect.redirect_uri, TENANT
    )
    status, page = connect.callback(code=code, state=query["state"][0])
    assert status == 200, page
    assert connect.oauth.state.token_requests[-1]["path"] == f"/{TENANT}/oauth2/v2.0/token"
    [account] = accounts(connect)
    assert account.provider == Provider.GRAPH and account.email == "ops@contoso.test"
    assert account.config["oauth"]["tenant"] == TENANT and account.auto_link is True
    assert MICROSOFT[1] not in slack_traffic(connect)
    assert_views_valid(connect)


def test_tampered_expired_replayed_and_declined_states_are_refused(connect: Connect) -> None:
    services = connect.mailroom.services
    _url, query = connect.sign_in_link("gmail")
    state = query["state"][0]
    payload, _, sig = state.partition(".")
    forged_body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged_body["c"] = "COTHER"  # send the mail to another channel
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged_body).encode()).rstrip(b"=")

    def code() -> str:
        return connect.oauth.issue_code("google", GOOGLE[0], "box@gmail.test", connect.redirect_uri)

    status, page = connect.callback(code=code(), state=f"{forged_payload.decode()}.{sig}")
    assert status == 400 and "was changed" in page and "Add email account" in page
    expired = make_state(
        services, ConnectRequest("UADMIN", "gmail", "CINBOX"), now=time.time() - 16 * 60
    )
    status, page = connect.callback(code=code(), state=expired)
    assert status == 400 and "expired" in page
    status, page = connect.callback(error="access_denied", state=state)
    assert status == 400 and "did not grant" in page
    status, page = connect.callback(
        error="invalid_request", error_description="<script>alert(1)</script>", state=state
    )
    assert status == 400 and "<script>" not in page and "&lt;script&gt;" in page
    status, page = connect.callback(state=state)  # no code
    assert status == 400 and "without a sign-in" in page
    assert accounts(connect) == []

    status, _ = connect.callback(code=code(), state=state)
    assert status == 200
    second = code()
    status, page = connect.callback(code=second, state=state)
    assert status == 400 and "used already" in page
    assert second in connect.oauth.state.codes  # refused before any code exchange
    assert len(accounts(connect)) == 1


def test_reconnect_stores_new_tokens_and_reactivates(connect: Connect) -> None:
    services, oauth = connect.mailroom.services, connect.oauth
    config = {
        "client_id": GOOGLE[0],
        "client_secret": "an-old-secret",
        "redirect_uri": connect.redirect_uri,
        "token_uri": f"{oauth.url}/token",
        "ca_file": oauth.ca_file,
    }
    with session_scope(services.session_factory) as s:
        acc = create_oauth_account(
            s,
            services.vault,
            provider=Provider.GMAIL,
            email="team@gmail.test",
            oauth=config,
            tokens=oauth.grant("google", GOOGLE[0], "team@gmail.test"),
            channel_id="CINBOX",
        )
        acc.status, acc.last_error = AccountStatus.NEEDS_REAUTH, "Gmail needs re-authorisation"
        account_id = acc.id
    old = services.vault.decrypt(accounts(connect)[0].credentials)["refresh_token"]

    connect.mailroom.driver.event({"type": "app_home_opened", "user": "UADMIN", "tab": "home"})
    connect.mailroom.fake.wait_for("views.publish", 1)
    home = connect.mailroom.fake.home("UADMIN")
    menu = next(
        b["accessory"] for b in home["blocks"] if b.get("block_id") == f"account_{account_id}"
    )
    option = next(o for o in menu["options"] if o["value"] == f"reconnect:{account_id}")
    assert len(menu["options"]) <= 5
    connect.mailroom.driver.block_action(
        "UADMIN",
        ids.HOME_ACCOUNT_MENU,
        view=home["id"],
        block_id=f"account_{account_id}",
        action_type="overflow",
        selected_option=option,
    )
    opened = connect.mailroom.fake.wait_for("views.open", 1)[-1]
    view_id = opened.response["view"]["id"]
    connect.mailroom.fake.wait_until(
        lambda: ids.ACCOUNT_OAUTH_OPEN in json.dumps(connect.mailroom.fake.view(view_id))
    )
    _url, query = link_of(connect.mailroom.fake.view(view_id))
    state = query["state"][0]
    assert read_state(services, state).account_id == account_id

    # signing in as another mailbox changes nothing
    other = oauth.issue_code("google", GOOGLE[0], "someone@gmail.test", connect.redirect_uri)
    status, page = connect.callback(code=other, state=state)
    assert status == 400 and "team@gmail.test" in page
    assert accounts(connect)[0].status == AccountStatus.NEEDS_REAUTH

    connect.mailroom.driver.block_action(
        "UADMIN",
        ids.HOME_ACCOUNT_MENU,
        view=home["id"],
        block_id=f"account_{account_id}",
        action_type="overflow",
        selected_option=option,
    )
    second = connect.mailroom.fake.wait_for("views.open", 2)[-1].response["view"]["id"]
    connect.mailroom.fake.wait_until(
        lambda: ids.ACCOUNT_OAUTH_OPEN in json.dumps(connect.mailroom.fake.view(second))
    )
    _url, query = link_of(connect.mailroom.fake.view(second))
    code = oauth.issue_code("google", GOOGLE[0], "team@gmail.test", connect.redirect_uri)
    status, page = connect.callback(code=code, state=query["state"][0])
    assert status == 200 and "Reconnected team@gmail.test" in page
    [account] = accounts(connect)
    assert account.status == AccountStatus.ACTIVE and account.last_error is None
    data = services.vault.decrypt(account.credentials)
    assert data["refresh_token"] != old and data["refresh_token"] in oauth.state.refresh_tokens
    assert data["client_secret"] == GOOGLE[1]  # the current secret reached the account
    with services.session_factory() as s:
        assert "account.reconnect" in [a.action for a in s.scalars(select(AuditLog))]
    connect.mailroom.run_outbox()
    assert any(
        "Reconnected team@gmail.test" in str(c.args.get("text"))
        for c in connect.mailroom.fake.calls_to("chat.postMessage")
    )
    assert data["refresh_token"] not in slack_traffic(connect)
    assert_views_valid(connect)


def test_non_admins_cannot_pick_submit_or_complete(connect: Connect) -> None:
    fake, driver = connect.mailroom.fake, connect.mailroom.driver
    chooser = {**provider_chooser_modal({"gmail": [], "graph": []}), "id": "VFORGED1"}
    driver.block_action("UMEMBER", ids.ACCOUNT_PROVIDER_PICK, "gmail", view=chooser)
    step = {**oauth_step_modal("gmail"), "id": "VFORGED2"}
    resp = driver.view_submission("UMEMBER", step, {"acc_channel": {"v": "CINBOX"}})
    assert "Only Mailroom admins" in resp.body and "oauth2" not in resp.body
    assert "state=" not in slack_traffic(connect)  # no sign-in link was ever made
    assert ids.VIEW_ACCOUNT_OAUTH not in json.dumps([c.args for c in fake.calls_to("views.update")])

    # a state for a non-admin (an admin who lost the role, or a forged flow) is refused
    state = make_state(connect.mailroom.services, ConnectRequest("UMEMBER", "gmail", "CINBOX"))
    code = connect.oauth.issue_code("google", GOOGLE[0], "x@gmail.test", connect.redirect_uri)
    status, page = connect.callback(code=code, state=state)
    assert status == 400 and "Only Mailroom admins" in page
    assert code in connect.oauth.state.codes and accounts(connect) == []


def test_chooser_names_the_missing_settings(connect: Connect) -> None:
    services = connect.mailroom.services
    services.settings = dataclasses.replace(
        services.settings, public_url=None, microsoft_tenant=None, google_client_secret=None
    )
    chooser = connect.open_chooser()
    text = json.dumps(chooser)
    assert "GOOGLE_CLIENT_SECRET" in text and "MICROSOFT_TENANT" in text
    assert "MAILROOM_PUBLIC_URL" in text and "GOOGLE_CLIENT_ID" not in text
    values = [
        b["accessory"]["value"] for b in chooser["blocks"] if b.get("accessory", {}).get("value")
    ]
    assert values == ["imap"]  # no Gmail / Microsoft button until configured
    services.settings = dataclasses.replace(services.settings, public_url="https://m.example")
    again = json.dumps(connect.open_chooser())
    assert "MAILROOM_PUBLIC_URL" not in again and "GOOGLE_CLIENT_SECRET" in again
    # a stale or forged pick of an unconfigured provider says what is missing
    connect.mailroom.driver.block_action(
        "UADMIN", ids.ACCOUNT_PROVIDER_PICK, "gmail", view=chooser["id"]
    )
    fake = connect.mailroom.fake
    fake.wait_until(lambda: "first" in json.dumps(fake.view(chooser["id"])))
    shown = json.dumps(fake.view(chooser["id"]))
    assert "GOOGLE_CLIENT_SECRET" in shown and ids.VIEW_ACCOUNT_OAUTH not in shown
    assert_views_valid(connect)


def test_microsoft_address_is_the_mailbox_mail_not_the_sign_in_name(
    connect: Connect, graph_fake: FakeGraph
) -> None:
    graph_fake.smtp["j.doe@contoso.onmicrosoft.com"] = "jane@contoso.test"
    _url, query = connect.sign_in_link("graph")
    code = connect.oauth.issue_code(
        "microsoft", MICROSOFT[0], "j.doe@contoso.onmicrosoft.com", connect.redirect_uri, TENANT
    )
    status, page = connect.callback(code=code, state=query["state"][0])
    assert status == 200, page
    [account] = accounts(connect)
    assert account.email == "jane@contoso.test"  # From: is the real address, not the UPN


def test_a_shared_mailbox_connects_through_a_delegate(
    connect: Connect, graph_fake: FakeGraph
) -> None:
    shared = f"support-{time.time_ns()}@contoso.test"
    url, query = connect.sign_in_link("graph", shared=shared.upper())
    scopes = parse_qs(urlsplit(url).query)["scope"][0].split()
    assert "https://graph.microsoft.com/Mail.ReadWrite.Shared" in scopes
    assert "https://graph.microsoft.com/Mail.Send.Shared" in scopes
    code = connect.oauth.issue_code(
        "microsoft", MICROSOFT[0], "agent@contoso.test", connect.redirect_uri, TENANT
    )
    # Without Full Access on the shared mailbox: refused, nothing stored.
    status, page = connect.callback(code=code, state=query["state"][0])
    assert status == 400 and "Full Access" in page
    assert accounts(connect) == []
    graph_fake.full_access[shared] = {"agent@contoso.test"}
    _url, query = connect.sign_in_link("graph", shared=shared)
    code = connect.oauth.issue_code(
        "microsoft", MICROSOFT[0], "agent@contoso.test", connect.redirect_uri, TENANT
    )
    status, page = connect.callback(code=code, state=query["state"][0])
    assert status == 200, page
    [account] = accounts(connect)
    assert account.email == shared
    assert account.config["api"]["mailbox"] == shared
    assert "Mail.Send.Shared" in " ".join(account.config["oauth"]["scopes"])


def test_microsoft_reconnect_follows_the_user_not_the_address(
    connect: Connect, graph_fake: FakeGraph
) -> None:
    services = connect.mailroom.services
    upn = f"kim-{time.time_ns()}@contoso.onmicrosoft.com"
    _url, query = connect.sign_in_link("graph")
    code = connect.oauth.issue_code("microsoft", MICROSOFT[0], upn, connect.redirect_uri, TENANT)
    assert connect.callback(code=code, state=query["state"][0])[0] == 200
    [account] = [a for a in accounts(connect) if a.email == upn]
    # Someone else signing in is refused; the same user after an address change is not.
    other = connect.oauth.issue_code(
        "microsoft", MICROSOFT[0], "intruder@contoso.test", connect.redirect_uri, TENANT
    )
    state = make_state(services, ConnectRequest("UADMIN", "graph", account_id=account.id))
    status, page = connect.callback(code=other, state=state)
    assert status == 400 and upn in page
    graph_fake.smtp[upn] = "kim.new@contoso.test"
    again = connect.oauth.issue_code("microsoft", MICROSOFT[0], upn, connect.redirect_uri, TENANT)
    state = make_state(services, ConnectRequest("UADMIN", "graph", account_id=account.id))
    status, page = connect.callback(code=again, state=state)
    assert status == 200, page
    assert [a.email for a in accounts(connect) if a.id == account.id] == ["kim.new@contoso.test"]
