"""Settings, signatures and the callback server's routing, without Slack."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

from bot.config import ConfigError, Settings, load_settings
from bot.crypto import Vault, generate_key
from bot.oauth_connect import (
    ConnectRequest,
    StateError,
    app_config,
    make_state,
    missing_settings,
    read_state,
)
from bot.web import make_wsgi_app
from tests.slackfake.serve import serve_wsgi


def test_settings_from_the_environment() -> None:
    s = load_settings(
        {
            "MAILROOM_PUBLIC_URL": "https://mail.example.com/",
            "GOOGLE_CLIENT_ID": " gid ",
            "GOOGLE_CLIENT_SECRET": "gsecret",
            "MICROSOFT_TENANT": "contoso.onmicrosoft.com",
        },
        dotenv=False,
    )
    assert s.public_url == "https://mail.example.com" and s.google_client_id == "gid"
    assert "gsecret" not in repr(s)
    assert missing_settings(s, "gmail") == []
    assert missing_settings(s, "graph") == ["MICROSOFT_CLIENT_ID", "MICROSOFT_CLIENT_SECRET"]
    assert app_config(s, "gmail")["redirect_uri"] == "https://mail.example.com/oauth/callback"
    assert app_config(s, "gmail")["client_secret"] == "gsecret"
    assert s.oauth_overrides == {}  # never from the environment
    assert load_settings({"MAILROOM_PUBLIC_URL": "http://localhost:3000"}, dotenv=False).public_url
    for bad in ("http://mail.example.com", "ftp://x", "https://u:p@x.example", "https://x/?a=1"):
        with pytest.raises(ConfigError, match="MAILROOM_PUBLIC_URL"):
            load_settings({"MAILROOM_PUBLIC_URL": bad}, dotenv=False)


def test_state_is_bound_to_the_key_and_the_content() -> None:
    services: Any = type("S", (), {"vault": Vault(generate_key())})()
    other: Any = type("S", (), {"vault": Vault(generate_key())})()
    state = make_state(services, ConnectRequest("UADMIN", "graph", "C1", 900, False, 7))
    got = read_state(services, state)
    assert (got.provider, got.channel_id, got.interval, got.auto_link, got.account_id) == (
        "graph",
        "C1",
        900,
        False,
        7,
    )
    for bad in (state + "x", state.replace(".", ".x", 1), "", "abc", "a.b"):
        with pytest.raises(StateError):
            read_state(services, bad)
    with pytest.raises(StateError):
        read_state(other, state)  # another installation's key


def test_socket_mode_server_serves_the_callback_but_not_slack_events(mailroom: Any) -> None:
    wsgi = make_wsgi_app(mailroom.app, mailroom.services, slack_events=False)
    with serve_wsgi(wsgi, path="") as base:

        def get(path: str, data: bytes | None = None) -> int:
            try:
                with urllib.request.urlopen(base + path, data=data, timeout=10) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        assert get("/healthz") == 200
        assert get("/slack/events", data=b"{}") == 404  # unsigned in Socket Mode: never exposed
        assert get("/oauth/callback", data=b"code=x") == 405
        assert get("/oauth/callback?code=x&state=y") == 400


def test_settings_default_has_no_oauth() -> None:
    assert missing_settings(Settings(), "gmail") == [
        "GOOGLE_CLIENT_ID",
        "GOOGLE_CLIENT_SECRET",
        "MAILROOM_PUBLIC_URL",
    ]
