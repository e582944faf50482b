"""Authorization URLs and code exchange for Google and Microsoft (msal), against the fakes."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from bot.providers.errors import AuthError, ConfigError
from bot.providers.oauth import authorization_url, exchange_code
from tests.fakes.oauth_server import FakeOAuth
from tests.providers_api.conftest import (
    GOOGLE_CLIENT,
    MS_CLIENT,
    REDIRECT,
    TENANT,
    google_config,
    microsoft_config,
)


def test_google_authorization_url_asks_for_offline_access(oauth: FakeOAuth) -> None:
    url = authorization_url("gmail", google_config(oauth), "state-123")
    q = parse_qs(urlsplit(url).query)
    assert q["client_id"] == [GOOGLE_CLIENT[0]] and q["redirect_uri"] == [REDIRECT]
    assert q["access_type"] == ["offline"] and q["prompt"] == ["consent"]
    assert q["state"] == ["state-123"] and q["response_type"] == ["code"]
    assert "https://www.googleapis.com/auth/gmail.modify" in q["scope"][0].split()
    assert GOOGLE_CLIENT[1] not in url


def test_microsoft_authorization_url_uses_the_tenant(oauth: FakeOAuth) -> None:
    url = authorization_url("graph", microsoft_config(oauth), "s-1")
    parts = urlsplit(url)
    assert parts.path == f"/{TENANT}/oauth2/v2.0/authorize"
    q = parse_qs(parts.query)
    assert q["state"] == ["s-1"] and q["redirect_uri"] == [REDIRECT]
    scopes = q["scope"][0].split()
    assert "https://graph.microsoft.com/Mail.ReadWrite" in scopes and "offline_access" in scopes
    assert MS_CLIENT[1] not in url


def test_google_code_exchange(oauth: FakeOAuth) -> None:
    code = oauth.issue_code("google", GOOGLE_CLIENT[0], "Owner@Gmail.test", REDIRECT)
    tokens = exchange_code("gmail", google_config(oauth), code, REDIRECT)
    assert tokens["refresh_token"] and tokens["email"] == "owner@gmail.test"
    assert oauth.who(f"Bearer {tokens['access_token']}") == "Owner@Gmail.test"
    with pytest.raises(AuthError):  # a code works once
        exchange_code("gmail", google_config(oauth), code, REDIRECT)


def test_microsoft_code_exchange(oauth: FakeOAuth) -> None:
    code = oauth.issue_code("microsoft", MS_CLIENT[0], "ops@contoso.test", REDIRECT, TENANT)
    tokens = exchange_code("graph", microsoft_config(oauth), code, REDIRECT)
    assert tokens["refresh_token"] and tokens["email"] == "ops@contoso.test"
    assert oauth.state.token_requests[-1]["path"] == f"/{TENANT}/oauth2/v2.0/token"


def test_unknown_tenant_and_missing_secret_are_config_errors(oauth: FakeOAuth) -> None:
    with pytest.raises(ConfigError, match="tenant"):
        authorization_url("graph", microsoft_config(oauth, tenant="nosuch.onmicrosoft.com"), "s")
    with pytest.raises(ConfigError, match="client secret"):
        authorization_url("gmail", {**google_config(oauth), "client_secret": ""}, "s")
    with pytest.raises(ConfigError):
        authorization_url("yahoo", google_config(oauth), "s")
