"""The Slack app boots, verifies signatures for real, and publishes the App Home."""

from __future__ import annotations

import json
import urllib.request

from tests.appfixtures import Mailroom
from tests.slackfake.validate import validate_view


def test_app_home_opened_publishes_a_valid_home_view(mailroom: Mailroom) -> None:
    resp = mailroom.driver.event({"type": "app_home_opened", "user": "UMEMBER", "tab": "home"})
    assert resp.status == 200
    call = mailroom.fake.wait_for("views.publish")[0]
    assert call.args["user_id"] == "UMEMBER"
    view = call.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["type"] == "home"
    assert validate_view(view) == []
    text = json.dumps(view)
    assert "No email account is connected yet" in text
    assert "home_add_account" not in text  # only admins get the button


def test_admins_see_the_add_account_button(mailroom: Mailroom) -> None:
    mailroom.account("support@example.com")
    mailroom.driver.event({"type": "app_home_opened", "user": "UADMIN", "tab": "home"})
    view = mailroom.fake.wait_for("views.publish")[0].args["view"]
    text = view if isinstance(view, str) else json.dumps(view)
    assert "home_add_account" in text
    assert "support@example.com" in text


def test_bad_or_stale_signatures_get_401_and_no_web_api_call(mailroom: Mailroom) -> None:
    event = {"type": "app_home_opened", "user": "UMEMBER", "tab": "home"}
    assert mailroom.driver.event(event, bad_signature=True).status == 401
    assert mailroom.driver.event(event, stale=True).status == 401
    assert mailroom.fake.calls_to("views.publish") == []


def test_a_retried_event_is_handled_once(mailroom: Mailroom) -> None:
    event = {"type": "app_home_opened", "user": "UMEMBER", "tab": "home"}
    assert mailroom.driver.event(event, event_id="Ev1").status == 200
    mailroom.fake.wait_for("views.publish")
    assert mailroom.driver.event(event, event_id="Ev1", retry_num=1).status == 200
    assert len(mailroom.fake.calls_to("views.publish")) == 1


def test_health_endpoint_answers(mailroom: Mailroom) -> None:
    url = mailroom.url.replace("/slack/events", "/healthz")
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        assert json.loads(resp.read()) == {"ok": True}
