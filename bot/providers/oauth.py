"""OAuth 2.0 for Gmail (Google) and Microsoft 365 (Microsoft identity platform v2).

One code path for tokens, used by sync, write-back and sending alike (peers.md rows 12-13):
:class:`TokenSource` hands out a valid access token, refreshes it shortly before it expires
or when an API answered 401, and passes every new token set to a ``save`` callback (the
caller encrypts and stores it). Refresh errors are translated once, here:

* ``invalid_grant`` (revoked, expired, password changed, AADSTS70008/700082/50173...) and
  ``interaction_required`` / ``consent_required`` → :class:`AuthError` "needs
  re-authorisation: reconnect the account in the App Home".
* ``invalid_client`` (wrong or expired client secret, AADSTS7000222/7000215) →
  :class:`AuthError` naming the client secret: reconnecting will not help until an admin
  replaces it.
* other 4xx answers (unknown tenant, tenant mismatch such as AADSTS50194) → ConfigError.
* timeouts, connection failures, 5xx, ``temporarily_unavailable`` → TransientError.

Microsoft tokens always go to ``https://<authority_host>/<tenant>``: the tenant from the
app settings, ``common`` only when none is set (chatwoot #14325 refreshed at ``/common``
while the app was single-tenant and lost every mailbox once an hour).

``config`` is the app's settings as a dict (non-secret parts live in ``Account.config
["oauth"]``, the client secret in the encrypted credentials)::

    {"client_id", "client_secret", "redirect_uri", "tenant" (Microsoft),
     "scopes" (optional), "auth_uri" / "token_uri" (Google, optional),
     "authority_host" (Microsoft, optional), "ca_file" (optional, private CAs / tests)}

Nothing here logs a token or a secret.
"""

from __future__ import annotations

import base64
import calendar
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests

from bot.providers.errors import AuthError, ConfigError, ProviderError, TransientError

log = logging.getLogger(__name__)

GOOGLE = "gmail"
MICROSOFT = "graph"
PROVIDERS = (GOOGLE, MICROSOFT)

GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
# gmail.modify: read, label, trash and send; never permanent deletion.
GOOGLE_SCOPES = ("https://www.googleapis.com/auth/gmail.modify", "openid", "email")

MICROSOFT_AUTHORITY_HOST = "login.microsoftonline.com"
# msal adds openid, profile and offline_access itself (and refuses them here).
MICROSOFT_SCOPES = (
    "https://graph.microsoft.com/Mail.ReadWrite",
    "https://graph.microsoft.com/Mail.Send",
    "https://graph.microsoft.com/User.Read",
)

# A shared mailbox (support@) reached through a user with FullAccess + SendAs on it.
MICROSOFT_SHARED_SCOPES = (
    "https://graph.microsoft.com/Mail.ReadWrite.Shared",
    "https://graph.microsoft.com/Mail.Send.Shared",
    "https://graph.microsoft.com/User.Read",
)
# Application permissions (Mail.ReadWrite, Mail.Send as *application* roles) come with .default.
GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
# Scopes Mailroom cannot work without (the rest, e.g. openid, only help).
_REQUIRED = {
    "gmail.modify",
    "mail.readwrite",
    "mail.send",
    "mail.readwrite.shared",
    "mail.send.shared",
}

REFRESH_MARGIN_SECONDS = 120  # refresh this long before expiry: clocks drift, calls take time
REAUTH = "needs re-authorisation: reconnect the account in the App Home"

_REAUTH_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required"})
_CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


@dataclass(frozen=True)
class OAuthApp:
    """The OAuth client (Google Cloud OAuth client / Azure app registration)."""

    provider: str
    client_id: str
    client_secret: str = field(repr=False)  # never in repr() (security review #26)
    redirect_uri: str = ""
    tenant: str = ""
    scopes: tuple[str, ...] = ()
    auth_uri: str = GOOGLE_AUTH_URI
    token_uri: str = GOOGLE_TOKEN_URI
    authority_host: str = MICROSOFT_AUTHORITY_HOST
    ca_file: str | None = None
    timeout: float = 30.0
    # Microsoft application permissions (client credentials): no user, no refresh token; the
    # app's own token, limited by the tenant to chosen mailboxes.
    app_only: bool = False
    # Google service account with domain-wide delegation: client_id is its client_email,
    # client_secret its private key (PEM), and Mailroom acts as ``subject`` (the mailbox).
    subject: str = ""

    @property
    def authority(self) -> str:
        # The configured tenant, always; "common" only for multi-tenant apps without one.
        return f"https://{self.authority_host}/{self.tenant or 'common'}"

    @property
    def verify(self) -> str | bool:
        return self.ca_file or True


def app_from_config(provider: str, config: Mapping[str, Any]) -> OAuthApp:
    """Validate ``config`` (see the module doc) into an :class:`OAuthApp`."""
    if provider not in PROVIDERS:
        raise ConfigError(f"Unknown OAuth provider {provider!r}: use 'gmail' or 'graph'.")
    client_id = str(config.get("client_id") or "").strip()
    secret = str(config.get("client_secret") or "")
    if not client_id or not secret:
        what = "Google Cloud OAuth client" if provider == GOOGLE else "Azure app registration"
        raise ConfigError(
            f"The {what} needs a client id and a client secret (docs/oauth-providers.md)."
        )
    default_scopes = GOOGLE_SCOPES if provider == GOOGLE else MICROSOFT_SCOPES
    scopes = tuple(config.get("scopes") or default_scopes)
    tenant = str(config.get("tenant") or "").strip().strip("/")
    if any(c in tenant for c in "/?#@ ") or any(c in client_id for c in "\r\n"):
        raise ConfigError(f"The tenant {tenant!r} is not a tenant id or domain.")
    return OAuthApp(
        provider=provider,
        client_id=client_id,
        client_secret=secret,
        redirect_uri=str(config.get("redirect_uri") or ""),
        tenant=tenant,
        scopes=scopes,
        auth_uri=str(config.get("auth_uri") or GOOGLE_AUTH_URI),
        token_uri=str(config.get("token_uri") or GOOGLE_TOKEN_URI),
        authority_host=str(config.get("authority_host") or MICROSOFT_AUTHORITY_HOST),
        ca_file=config.get("ca_file") or None,
        timeout=float(config.get("timeout") or 30.0),
        app_only=bool(config.get("app_only")) and provider == MICROSOFT,
        subject=str(config.get("subject") or "") if provider == GOOGLE else "",
    )


class VerifyingSession(requests.Session):
    """A session that always verifies TLS against ``verify``: REQUESTS_CA_BUNDLE in the
    environment would otherwise silently replace a configured private CA."""

    def __init__(self, verify: str | bool = True, timeout: float | None = None) -> None:
        super().__init__()
        self.verify = verify
        self.default_timeout = timeout

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        if kwargs.get("timeout") is None and self.default_timeout is not None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


# -- Microsoft: msal ---------------------------------------------------------------------


def _msal_app(app: OAuthApp) -> Any:
    """A ConfidentialClientApplication bound to the app's own authority (tenant)."""
    import msal

    custom_host = app.authority_host != MICROSOFT_AUTHORITY_HOST
    try:
        return msal.ConfidentialClientApplication(
            app.client_id,
            client_credential=app.client_secret,
            authority=app.authority,
            http_client=VerifyingSession(app.verify, app.timeout),
            # A sovereign cloud or test authority is not in Microsoft's instance list.
            instance_discovery=False if custom_host else None,
            validate_authority=not custom_host,
        )
    except ValueError as exc:  # tenant discovery answered 4xx: no such tenant
        raise ConfigError(
            f"Microsoft does not know the tenant {app.tenant or 'common'!r}: check the "
            "Directory (tenant) ID of the app registration."
        ) from exc
    except requests.RequestException as exc:
        raise TransientError(
            f"Microsoft sign-in could not be reached ({type(exc).__name__})."
        ) from exc


def _microsoft_error(result: Mapping[str, Any]) -> ProviderError:
    error = str(result.get("error") or "")
    description = str(result.get("error_description") or "").splitlines()[0:1]
    detail = description[0][:200] if description else error
    codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
    if error in _REAUTH_ERRORS:
        return AuthError(f"Microsoft 365 {REAUTH} ({detail})")
    if error in _CLIENT_ERRORS or 7000222 in codes or 7000215 in codes:
        return AuthError(
            "Microsoft refused the app's client secret (wrong or expired): create a new "
            "secret in the Azure app registration and update Mailroom's settings, then "
            f"reconnect the account in the App Home ({detail})"
        )
    if error in _TRANSIENT_ERRORS:
        return TransientError(f"Microsoft sign-in is temporarily unavailable ({detail}).")
    return ConfigError(f"Microsoft sign-in refused the request: {detail}")


def _microsoft_tokens(result: Mapping[str, Any], previous_refresh: str | None) -> dict[str, Any]:
    if "error" in result or not result.get("access_token"):
        raise _microsoft_error(result)
    claims = result.get("id_token_claims") or {}
    out: dict[str, Any] = {
        "access_token": result["access_token"],
        # Microsoft rotates refresh tokens; keep the old one if none came back.
        "refresh_token": result.get("refresh_token") or previous_refresh,
        "expires_at": time.time() + float(result.get("expires_in") or 3600),
        "scope": result.get("scope") or "",
    }
    email = claims.get("preferred_username") or claims.get("email")
    if email:
        out["email"] = str(email).lower()
    # The user's immutable ids: Reconnect checks these, not the (mutable) address.
    for claim in ("oid", "tid"):
        if claims.get(claim):
            out[claim] = str(claims[claim])
    return out


# -- Google: google-auth -----------------------------------------------------------------


def _google_error(data: Any, status: int | None = None) -> ProviderError:
    if not isinstance(data, Mapping):
        data = {}
    error = str(data.get("error") or "")
    detail = str(data.get("error_description") or error or f"HTTP {status}")[:200]
    if error in _REAUTH_ERRORS:
        return AuthError(f"Gmail {REAUTH} ({detail})")
    if error in _CLIENT_ERRORS:
        return AuthError(
            "Google refused the OAuth client id or secret: check the Google Cloud OAuth "
            f"client and Mailroom's settings, then reconnect the account ({detail})"
        )
    if error in _TRANSIENT_ERRORS or (status is not None and status >= 500):
        return TransientError(f"Google sign-in is temporarily unavailable ({detail}).")
    return ConfigError(f"Google sign-in refused the request: {detail}")


def _google_refresh(app: OAuthApp, refresh_token: str) -> dict[str, Any]:
    from google.auth import exceptions as gexc
    from google.auth.transport.requests import Request
    from google.oauth2.credentials import Credentials

    creds = Credentials(
        token=None,
        refresh_token=refresh_token,
        token_uri=app.token_uri,
        client_id=app.client_id,
        client_secret=app.client_secret,
    )
    session = VerifyingSession(app.verify)
    try:
        creds.refresh(Request(session))
    except gexc.RefreshError as exc:
        data = exc.args[1] if len(exc.args) > 1 else None
        if data is None and exc.retryable:
            raise TransientError("Google sign-in is temporarily unavailable.") from exc
        raise _google_error(data) from exc
    except gexc.TransportError as exc:
        raise TransientError(
            f"Google sign-in could not be reached ({type(exc).__name__})."
        ) from exc
    finally:
        session.close()
    # google-auth keeps expiry as naive UTC.
    expires_at = (
        float(calendar.timegm(creds.expiry.timetuple())) if creds.expiry else time.time() + 3600
    )
    return {
        "access_token": creds.token,
        # Google keeps the refresh token unless it sends a new one.
        "refresh_token": creds.refresh_token or refresh_token,
        "expires_at": expires_at,
    }


def _google_delegated_token(app: OAuthApp) -> dict[str, Any]:
    """A Gmail access token for ``app.subject`` through the service account's domain-wide
    delegation (a JWT signed with its key, exchanged at the token URI; no refresh token)."""
    from google.auth import exceptions as gexc
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    try:
        creds = service_account.Credentials.from_service_account_info(
            {
                "client_email": app.client_id,
                "private_key": app.client_secret,
                "token_uri": app.token_uri,
            },
            scopes=[s for s in app.scopes if "googleapis.com/auth/" in s],
            subject=app.subject,
        )
    except ValueError as exc:
        raise ConfigError(f"The service account key cannot be read ({exc}).") from exc
    session = VerifyingSession(app.verify)
    try:
        creds.refresh(Request(session))
    except gexc.RefreshError as exc:
        data = exc.args[1] if len(exc.args) > 1 else None
        if isinstance(data, Mapping) and data.get("error") in ("unauthorized_client",):
            raise ConfigError(
                "Google refused domain-wide delegation for the service account: a Workspace "
                "super admin must allow its client id the gmail.modify scope (Admin console → "
                "Security → Access and data control → API controls → Domain-wide delegation)."
            ) from exc
        raise _google_error(data) from exc
    except gexc.TransportError as exc:
        raise TransientError(
            f"Google sign-in could not be reached ({type(exc).__name__})."
        ) from exc
    finally:
        session.close()
    expires_at = (
        float(calendar.timegm(creds.expiry.timetuple())) if creds.expiry else time.time() + 3600
    )
    return {"access_token": creds.token, "expires_at": expires_at}


def _unverified_claims(id_token: str) -> dict[str, Any]:
    # Received straight from the token endpoint over TLS, so its origin is known
    # (OpenID Connect Core §3.1.3.7); only the e-mail is read from it.
    try:
        payload = id_token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- authorization -----------------------------------------------------------------------


def authorization_url(provider: str, config: Mapping[str, Any], state: str) -> str:
    """Where to send an admin to grant Mailroom access to a mailbox. ``state`` comes back
    on the redirect and must be checked by the callback (CSRF)."""
    app = app_from_config(provider, config)
    if not app.redirect_uri:
        raise ConfigError("The OAuth redirect URI is not set (docs/oauth-providers.md).")
    if app.provider == GOOGLE:
        query = {
            "client_id": app.client_id,
            "redirect_uri": app.redirect_uri,
            "response_type": "code",
            "scope": " ".join(app.scopes),
            "access_type": "offline",  # a refresh token
            "prompt": "consent",  # ...every time, also on reconnect
            "include_granted_scopes": "true",
            "state": state,
        }
        return f"{app.auth_uri}?{urlencode(query)}"
    # The older, stateless msal calls: the callback only has `state` to go on, and the
    # auth-code-flow API would need its flow dict stored between redirect and callback.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        url: str = _msal_app(app).get_authorization_request_url(
            list(app.scopes), state=state, redirect_uri=app.redirect_uri, prompt="select_account"
        )
    return url


def exchange_code(
    provider: str, config: Mapping[str, Any], code: str, redirect_uri: str
) -> dict[str, Any]:
    """Trade the callback's ``code`` for tokens: ``{"access_token", "refresh_token",
    "expires_at", "scope", "email"?}``. Raises AuthError / ConfigError / TransientError."""
    app = app_from_config(provider, config)
    if app.provider == MICROSOFT:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            result = _msal_app(app).acquire_token_by_authorization_code(
                code, list(app.scopes), redirect_uri=redirect_uri
            )
        tokens = _microsoft_tokens(result, None)
    else:
        try:
            resp = requests.post(
                app.token_uri,
                data={
                    "code": code,
                    "client_id": app.client_id,
                    "client_secret": app.client_secret,
                    "redirect_uri": redirect_uri,
                    "grant_type": "authorization_code",
                },
                timeout=app.timeout,
                verify=app.verify,
            )
        except requests.RequestException as exc:
            raise TransientError(
                f"Google sign-in could not be reached ({type(exc).__name__})."
            ) from exc
        try:
            data = resp.json()
        except ValueError:
            data = {}
        if resp.status_code != 200 or not data.get("access_token"):
            raise _google_error(data, resp.status_code)
        tokens = {
            "access_token": data["access_token"],
            "refresh_token": data.get("refresh_token"),
            "expires_at": time.time() + float(data.get("expires_in") or 3600),
            "scope": data.get("scope") or "",
        }
        email = _unverified_claims(str(data.get("id_token") or "")).get("email")
        if email:
            tokens["email"] = str(email).lower()
    missing = missing_scopes(app, str(tokens.get("scope") or ""))
    if missing:
        raise AuthError(_scope_refusal(app, missing))
    if not tokens.get("refresh_token"):
        raise AuthError(
            "The sign-in gave no refresh token, so Mailroom could not keep syncing: "
            "remove Mailroom's access in the account's security settings and connect again."
        )
    return tokens


def _scope_name(scope: str) -> str:
    return scope.rstrip("/").rsplit("/", 1)[-1].lower()


def missing_scopes(app: OAuthApp, granted: str) -> list[str]:
    """The required scopes Mailroom asked for that the token was not granted. Google's
    granular consent lets a person untick the Gmail permission; Microsoft returns what the
    user or admin consented to. An empty ``granted`` is not judged (some grants omit it)."""
    if not granted.strip():
        return []
    have = {_scope_name(s) for s in granted.split()}
    wanted = [s for s in app.scopes if _scope_name(s) in _REQUIRED]
    return [s for s in wanted if _scope_name(s) not in have]


def _scope_refusal(app: OAuthApp, missing: list[str]) -> str:
    names = ", ".join(_scope_name(s) for s in missing)
    if app.provider == GOOGLE:
        return (
            f"the Gmail permission was not granted ({names}): on Google's consent screen, "
            "tick “Read, compose, and send emails from your Gmail account” (Google lets you "
            "untick it), then connect again. Nothing was connected."
        )
    return (
        f"Microsoft 365 did not grant {names}: an admin must consent to these permissions "
        "for the app (Entra admin center → App registrations → API permissions → Grant admin "
        "consent), then connect again. Nothing was connected."
    )


# -- the one token path ------------------------------------------------------------------


@dataclass
class TokenSource:
    """Valid access tokens for one account. Thread-safe; ``save`` gets every new token set
    (including the rotated refresh token) and must persist it."""

    app: OAuthApp
    tokens: dict[str, Any] = field(repr=False)  # access and refresh tokens
    save: Callable[[dict[str, Any]], None] | None = None
    now: Callable[[], float] = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def access_token(self) -> str:
        with self._lock:
            expires_at = float(self.tokens.get("expires_at") or 0)
            token = self.tokens.get("access_token")
            if token and expires_at - REFRESH_MARGIN_SECONDS > self.now():
                return str(token)
            return self._refresh_locked()

    def refresh(self, rejected: str | None = None) -> str:
        """A new access token. ``rejected`` is the token an API just refused with 401: when
        another thread already replaced it, that newer token is returned instead."""
        with self._lock:
            current = self.tokens.get("access_token")
            if rejected is not None and current and current != rejected:
                return str(current)
            return self._refresh_locked()

    def _refresh_locked(self) -> str:
        if self.app.app_only:
            result = _msal_app(self.app).acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
            fresh = _microsoft_tokens(result, None)
            fresh.pop("refresh_token", None)
            self.tokens = {**self.tokens, **fresh}
            if self.save is not None:
                self.save(dict(self.tokens))
            return str(self.tokens["access_token"])
        if self.app.subject:
            fresh = _google_delegated_token(self.app)
            self.tokens = {**self.tokens, **fresh}
            if self.save is not None:
                self.save(dict(self.tokens))
            return str(self.tokens["access_token"])
        refresh_token = self.tokens.get("refresh_token")
        if not refresh_token:
            raise AuthError(f"The account has no refresh token and {REAUTH}.")
        if self.app.provider == MICROSOFT:
            result = _msal_app(self.app).acquire_token_by_refresh_token(
                refresh_token, list(self.app.scopes)
            )
            fresh = _microsoft_tokens(result, refresh_token)
        else:
            fresh = _google_refresh(self.app, refresh_token)
        self.tokens = {**self.tokens, **fresh}
        log.info("refreshed the %s access token", self.app.provider)
        if self.save is not None:
            self.save(dict(self.tokens))
        return str(self.tokens["access_token"])
