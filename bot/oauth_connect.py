"""Connecting Gmail and Microsoft 365 accounts from the App Home (the OAuth redirect flow).

1. An admin fills the OAuth step modal; :func:`connect_url` signs a ``state`` that carries
   who started it, the provider, the channel, the sync interval, auto-link, the folders
   (well-known ones: nothing can be listed before sign-in) and, for
   *Reconnect*, the account id, and returns the provider's authorization URL.
2. The provider redirects the admin's browser to ``MAILROOM_PUBLIC_URL/oauth/callback``;
   bot/web.py hands ``code`` and ``state`` to :func:`complete`.

The state is stateless (HMAC-signed with a key derived from MAILROOM_SECRET_KEY, so every
replica accepts it), expires after :data:`STATE_MAX_AGE` seconds and is single-use: its nonce
is inserted as a ``JobLock`` row, whose primary key makes a replay (or a double click racing
on two replicas) fail atomically. It is signed, not encrypted: it holds Slack ids, never a
secret. The admin is checked again at the callback (someone may have lost admin meanwhile).

Nothing here logs the code, a token or the client secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from bot.blocks.text import escape_mrkdwn
from bot.config import Settings
from bot.providers.errors import AuthError, ConfigError, ProviderError
from bot.providers.oauth import (
    GOOGLE,
    MICROSOFT,
    MICROSOFT_SHARED_SCOPES,
    PROVIDERS,
    TokenSource,
    app_from_config,
    authorization_url,
    exchange_code,
)
from bot.services import Services
from bot.store.db import read_scope, session_scope
from bot.store.models import Account, AuditLog, JobLock, Provider

log = logging.getLogger(__name__)

CALLBACK_PATH = "/oauth/callback"
STATE_MAX_AGE = 15 * 60  # long enough to sign in with 2FA, short enough to limit a leak
_CLOCK_SKEW = 60  # replicas' clocks may differ a little
_LOCK_PREFIX = "oauth-state:"
LABELS = {GOOGLE: "Gmail", MICROSOFT: "Microsoft 365"}
COMPANIES = {GOOGLE: "Google", MICROSOFT: "Microsoft"}
START_AGAIN = (
    'Start again from "Add email account" (or "Reconnect") in Mailroom\'s App Home in Slack.'
)


class StateError(Exception):
    """The state is not one we issued, was changed, or is too old."""


@dataclass(frozen=True)
class ConnectRequest:
    """What the admin asked for, carried through the provider in ``state``."""

    user_id: str
    provider: str
    channel_id: str | None = None
    interval: int = 300
    auto_link: bool = True
    account_id: int | None = None  # set for Reconnect
    folders: tuple[str, ...] = ()  # Account.folders for a new account
    nonce: str = ""
    # Microsoft 365: a shared mailbox (support@) the signing-in user has FullAccess +
    # SendAs on; reached as /users/{mailbox} with the .Shared scopes.
    mailbox: str | None = None
    issued_at: float = 0.0


# -- settings ----------------------------------------------------------------------------


def missing_settings(settings: Settings, provider: str) -> list[str]:
    """Names of the settings still needed before ``provider`` accounts can be connected."""
    if provider == GOOGLE:
        needed = {
            "GOOGLE_CLIENT_ID": settings.google_client_id,
            "GOOGLE_CLIENT_SECRET": settings.google_client_secret,
        }
    elif provider == MICROSOFT:
        needed = {
            "MICROSOFT_CLIENT_ID": settings.microsoft_client_id,
            "MICROSOFT_CLIENT_SECRET": settings.microsoft_client_secret,
            "MICROSOFT_TENANT": settings.microsoft_tenant,
        }
    else:
        raise ConfigError(f"Unknown OAuth provider {provider!r}")
    needed["MAILROOM_PUBLIC_URL"] = settings.public_url
    return [name for name, value in needed.items() if not value]


def redirect_uri(settings: Settings) -> str:
    if not settings.public_url:
        raise ConfigError("MAILROOM_PUBLIC_URL is not set (docs/oauth-providers.md).")
    return settings.public_url.rstrip("/") + CALLBACK_PATH


def app_config(settings: Settings, provider: str) -> dict[str, Any]:
    """The OAuth app config for bot.providers.oauth (includes the client secret)."""
    missing = missing_settings(settings, provider)
    if missing:
        raise ConfigError(
            f"{LABELS[provider]} accounts cannot be connected until these settings are set: "
            + ", ".join(missing)
        )
    if provider == GOOGLE:
        config: dict[str, Any] = {
            "client_id": settings.google_client_id,
            "client_secret": settings.google_client_secret,
        }
    else:
        config = {
            "client_id": settings.microsoft_client_id,
            "client_secret": settings.microsoft_client_secret,
            "tenant": settings.microsoft_tenant,
        }
    config["redirect_uri"] = redirect_uri(settings)
    overrides = dict(settings.oauth_overrides.get(provider) or {})
    overrides.pop("api", None)
    config.update(overrides)
    return config


def api_config(settings: Settings, provider: str) -> dict[str, Any]:
    """What goes to ``Account.config["api"]`` (normally nothing: the public APIs)."""
    return dict((settings.oauth_overrides.get(provider) or {}).get("api") or {})


# -- state -------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_state(services: Services, request: ConnectRequest, *, now: float | None = None) -> str:
    body = {
        "u": request.user_id,
        "p": request.provider,
        "c": request.channel_id,
        "f": request.interval,
        "a": request.auto_link,
        "r": request.account_id,
        "d": list(request.folders),
        "n": request.nonce or secrets.token_urlsafe(16),
        "m": request.mailbox,
        "t": int(now if now is not None else time.time()),
    }
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{services.vault.sign(payload.encode())}"


def read_state(
    services: Services, state: str, *, now: float | None = None, max_age: float = STATE_MAX_AGE
) -> ConnectRequest:
    """Check the signature and age; raises :class:`StateError` with a reason for the page."""
    payload, _, signature = (state or "").partition(".")
    if not payload or not signature or not services.vault.verify(payload.encode(), signature):
        raise StateError("the sign-in link was not issued by this Mailroom or was changed")
    try:
        body = json.loads(_unb64(payload))
        request = ConnectRequest(
            user_id=str(body["u"]),
            provider=str(body["p"]),
            channel_id=str(body["c"]) if body.get("c") else None,
            interval=max(60, int(body.get("f") or 300)),
            auto_link=bool(body.get("a")),
            account_id=int(body["r"]) if body.get("r") is not None else None,
            folders=tuple(str(f) for f in body.get("d") or ())[:10],
            nonce=str(body["n"]),
            issued_at=float(body["t"]),
            mailbox=str(body["m"]).lower() if body.get("m") else None,
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise StateError("the sign-in link is damaged") from exc
    if request.provider not in PROVIDERS or not request.nonce or not request.user_id:
        raise StateError("the sign-in link is damaged")
    age = (now if now is not None else time.time()) - request.issued_at
    if age > max_age or age < -_CLOCK_SKEW:
        raise StateError(f"the sign-in link expired (it works for {int(max_age // 60)} minutes)")
    return request


def _consume(services: Services, request: ConnectRequest) -> bool:
    """Remember the nonce; False when it was used before (a replay)."""
    now = datetime.now(UTC)
    expires = datetime.fromtimestamp(request.issued_at + STATE_MAX_AGE + _CLOCK_SKEW, UTC)
    try:
        with session_scope(services.session_factory) as s:
            # Forget nonces of states that can no longer verify anyway.
            s.execute(
                delete(JobLock).where(
                    JobLock.name.like(f"{_LOCK_PREFIX}%"),
                    JobLock.expires_at < now - timedelta(seconds=_CLOCK_SKEW),
                )
            )
            s.add(
                JobLock(
                    name=f"{_LOCK_PREFIX}{request.nonce}"[:100],
                    owner=request.user_id,
                    expires_at=expires,
                )
            )
    except IntegrityError:
        return False
    return True


# -- starting ----------------------------------------------------------------------------


def connect_url(
    services: Services,
    *,
    user_id: str,
    provider: str,
    channel_id: str | None = None,
    interval: int = 300,
    auto_link: bool = True,
    account_id: int | None = None,
    timeout: float | None = None,
    folders: tuple[str, ...] = (),
    mailbox: str | None = None,
) -> str:
    """The provider's sign-in URL for this request. Raises ConfigError (settings missing,
    unknown tenant) or TransientError (Microsoft's sign-in unreachable). Microsoft's needs a
    tenant discovery request; ``timeout`` bounds it (inside Slack's 3 s ack window)."""
    request = ConnectRequest(
        user_id=user_id,
        provider=provider,
        channel_id=channel_id,
        interval=interval,
        auto_link=auto_link,
        account_id=account_id,
        folders=folders,
        mailbox=(mailbox or "").strip().lower() or None,
    )
    config = app_config(services.settings, provider)
    if request.mailbox:
        config["scopes"] = shared_scopes(provider)
    if timeout is not None:
        config["timeout"] = timeout
    return authorization_url(provider, config, make_state(services, request))


# -- the callback ------------------------------------------------------------------------


class _Refused(Exception):
    """A step refused the connection; the message is for the admin."""


def _audit_failure(services: Services, request: ConnectRequest, reason: str) -> None:
    with session_scope(services.session_factory) as s:
        s.add(
            AuditLog(
                actor=request.user_id,
                action="account.oauth_failed",
                account_id=request.account_id if _exists(s, request.account_id) else None,
                details={"provider": request.provider, "reason": reason[:500]},
            )
        )


def _exists(session: Any, account_id: int | None) -> bool:
    return account_id is not None and session.get(Account, account_id) is not None


def _dm(session: Any, request: ConnectRequest, key: str, text: str, account_id: int | None) -> None:
    from bot.store.outbox import enqueue

    enqueue(
        session,
        kind="slack.dm",
        key=f"{key}:{request.nonce}",
        payload={"user_id": request.user_id, "text": text},
        account_id=account_id,
        created_by=request.user_id,
    )


def _reconnect(
    services: Services, request: ConnectRequest, config: Mapping[str, Any], tokens: dict[str, Any]
) -> tuple[int, str]:
    from bot.sync.api_sync import store_tokens

    label = LABELS[request.provider]
    email = str(tokens.get("email") or "").lower()
    if not email:
        # Without the address we cannot tell these tokens are the account's own mailbox's:
        # refuse, as _create does (security review #28).
        raise _Refused(
            f"{COMPANIES[request.provider]} did not tell Mailroom which mailbox you signed in "
            "to, so nothing changed. Make sure the email permission was granted and try again."
        )
    with session_scope(services.session_factory) as s:
        account = s.get(Account, request.account_id)
        if account is None:
            raise _Refused("The account was removed from Mailroom meanwhile: nothing changed.")
        stored = services.vault.decrypt(account.credentials) if account.credentials else {}
        shared = ((account.config or {}).get("api") or {}).get("mailbox")
        if not shared and stored.get("oid") and tokens.get("oid"):
            # Microsoft: the same user is the same oid/tid, even after an address change.
            if (stored.get("oid"), stored.get("tid")) != (tokens.get("oid"), tokens.get("tid")):
                raise _Refused(
                    f"You signed in as {email or 'another user'}, but this account is "
                    f"{account.email}. Nothing changed: reconnect again and sign in to "
                    f"{label} as {account.email}."
                )
            if email and email != account.email.lower():
                log.info("account %s: the mailbox's address is now %s", account.id, email)
                account.email = email
        elif email and email != account.email.lower():
            raise _Refused(
                f"You signed in as {email}, but this account is {account.email}. Nothing "
                f"changed: reconnect again and sign in to {label} as {account.email}."
            )
        # Take the app settings as they are now: reconnecting is how a new client secret
        # (e.g. after AADSTS7000222) reaches an account.
        data = services.vault.decrypt(account.credentials) if account.credentials else {}
        data["client_secret"] = config.get("client_secret")
        account.credentials = services.vault.encrypt(data)
        public = {k: v for k, v in config.items() if k != "client_secret"}
        old_api = dict((account.config or {}).get("api") or {})
        new_api = api_config(services.settings, request.provider) or old_api
        if old_api.get("mailbox"):
            new_api = {**new_api, "mailbox": old_api["mailbox"]}  # a shared mailbox stays one
        account.config = {**(account.config or {}), "oauth": public, "api": new_api}
        store_tokens(s, services.vault, account, tokens, actor=request.user_id)
        message = f"Reconnected {account.email} ({label}). Mailroom syncs it again now."
        _dm(s, request, "oauth-connect", f":white_check_mark: {escape_mrkdwn(message)}", account.id)
        return account.id, message


def _create(
    services: Services, request: ConnectRequest, config: Mapping[str, Any], tokens: dict[str, Any]
) -> tuple[int, str]:
    from bot.sync.api_sync import create_oauth_account

    label = LABELS[request.provider]
    email = str(tokens.get("email") or "")
    if not email:
        raise _Refused(
            f"{COMPANIES[request.provider]} did not tell Mailroom the mailbox's address, so "
            "nothing was connected. Make sure the email permission was granted and try again."
        )
    try:
        with session_scope(services.session_factory) as s:
            account = create_oauth_account(
                s,
                services.vault,
                provider=Provider(request.provider),
                email=email,
                oauth=dict(config),
                tokens=tokens,
                channel_id=request.channel_id,
                api={
                    **api_config(services.settings, request.provider),
                    **({"mailbox": email.lower()} if request.mailbox else {}),
                },
                sync_interval_seconds=request.interval,
                auto_link=request.auto_link,
                folders=request.folders,
                created_by=request.user_id,
            )
            where = f" Its mail goes to <#{request.channel_id}>." if request.channel_id else ""
            _dm(
                s,
                request,
                "oauth-connect",
                f":white_check_mark: Connected {escape_mrkdwn(account.email)} ({label}).{where} "
                "Mailroom is reading its recent mail now; new mail is posted as it arrives."
                + (
                    f" :warning: {escape_mrkdwn(str(tokens['warning']))}"
                    if tokens.get("warning")
                    else ""
                ),
                account.id,
            )
            return account.id, f"Connected {account.email} ({label})."
    except ConfigError as exc:  # e.g. the address is connected already
        hint = (
            " To renew its access, use Reconnect in the App Home." if "exists" in str(exc) else ""
        )
        raise _Refused(f"{exc}{hint}") from exc


def complete(
    services: Services, slack_client: WebClient, code: str, state: str
) -> tuple[bool, str]:
    """Finish a connection from the callback. Returns (ok, message for the admin's browser).
    Never raises for bad input; every refusal says what to do."""
    try:
        request = read_state(services, state)
    except StateError as exc:
        log.warning("OAuth callback refused: %s", exc)
        return False, f"Nothing was connected: {exc}. {START_AGAIN}"
    if not _consume(services, request):
        log.warning("OAuth callback refused: state replayed (started by %s)", request.user_id)
        return False, f"Nothing was connected: this sign-in link was used already. {START_AGAIN}"
    try:
        account_id, message = _complete(services, slack_client, request, code)
    except _Refused as exc:
        reason = str(exc)
        log.warning(
            "OAuth %s connection by %s refused: %s", request.provider, request.user_id, reason
        )
        _audit_failure(services, request, reason)
        if not reason.startswith("Only Mailroom admins"):
            with session_scope(services.session_factory) as s:
                _dm(s, request, "oauth-failed", f":x: {escape_mrkdwn(reason)}", None)
        return False, reason
    log.info("OAuth %s account %s connected by %s", request.provider, account_id, request.user_id)
    _after(services, slack_client, request)
    return True, message


def _complete(
    services: Services, slack_client: WebClient, request: ConnectRequest, code: str
) -> tuple[int, str]:
    if not services.access.is_admin(slack_client, request.user_id):
        raise _Refused("Only Mailroom admins can connect email accounts: nothing was connected.")
    if not code or len(code) > 4096:
        raise _Refused(f"The sign-in came back without an authorization code. {START_AGAIN}")
    try:
        config = app_config(services.settings, request.provider)
    except ConfigError as exc:
        raise _Refused(str(exc)) from exc
    if request.account_id is not None:
        with read_scope(services.session_factory) as s:
            account = s.get(Account, request.account_id)
            if account is None or account.provider.value != request.provider:
                raise _Refused("That account is no longer in Mailroom: nothing changed.")
            shared = ((account.config or {}).get("api") or {}).get("mailbox")
            if shared:  # Reconnect a shared mailbox: same scopes, same mailbox
                request = replace(request, mailbox=str(shared).lower())
    if request.mailbox:
        config["scopes"] = shared_scopes(request.provider)
    try:
        tokens = exchange_code(request.provider, config, code, str(config["redirect_uri"]))
        if request.provider == MICROSOFT:
            tokens = _graph_identity(services, request, config, tokens)
    except ProviderError as exc:
        raise _Refused(
            f"{COMPANIES[request.provider]} refused the sign-in, so nothing was connected: {exc}"
        ) from exc
    if request.account_id is not None:
        return _reconnect(services, request, config, tokens)
    return _create(services, request, config, tokens)


def shared_scopes(provider: str) -> list[str]:
    if provider != MICROSOFT:
        raise ConfigError(
            "A Google Workspace mailbox other than the signed-in one is reached through a "
            "service account with domain-wide delegation: `mailroom accounts add-gmail-sa` "
            "(docs/oauth-providers.md, “Shared mailboxes”), or sign in as the mailbox itself."
        )
    return list(MICROSOFT_SHARED_SCOPES)


def _graph_identity(
    services: Services, request: ConnectRequest, config: Mapping[str, Any], tokens: dict[str, Any]
) -> dict[str, Any]:
    """The mailbox's address from Graph, not the sign-in name: ``preferred_username`` is the
    UPN, which Microsoft documents as mutable and not necessarily an address (and it would
    become From:). For a shared mailbox, this also proves the user can open it."""
    from bot.providers.graph import GraphClient, NotFound

    api = api_config(services.settings, MICROSOFT)
    source = TokenSource(app_from_config(MICROSOFT, config), dict(tokens))
    with GraphClient(
        source, base_url=api.get("base_url"), ca_file=api.get("ca_file"), mailbox=request.mailbox
    ) as graph:
        try:
            me = graph.me()
            if request.mailbox:
                graph.folder("inbox")  # FullAccess: 403 / 404 otherwise
        except NotFound as exc:
            raise _Refused(
                f"Microsoft 365 has no mailbox {request.mailbox!r} you can open, so nothing was "
                "connected: check the address and that you have Full Access on it."
            ) from exc
        except AuthError as exc:
            raise _Refused(
                f"You cannot open {request.mailbox or 'this mailbox'}, so nothing was connected: "
                "an Exchange admin must give you Full Access and Send As on it, and consent "
                f"to Mail.ReadWrite.Shared and Mail.Send.Shared ({exc})."
            ) from exc
    out = dict(tokens)
    mail = str(me.get("mail") or "").strip().lower()
    upn = str(me.get("userPrincipalName") or "").strip().lower()
    if mail:
        out["email"] = mail
    elif request.mailbox:
        out["email"] = request.mailbox
    else:
        log.warning(
            "Microsoft 365 user %s has no mail address in Graph; using the sign-in name", upn
        )
        out["email"] = upn or out.get("email")
        out["warning"] = (
            "Microsoft 365 reports no email address for this user, so the sign-in name "
            f"{upn} is used as the address: check that mail sent From it is accepted."
        )
    return out


def connect_app_only_mailbox(
    services: Services,
    *,
    mailbox: str,
    channel_id: str | None,
    interval: int = 300,
    auto_link: bool = True,
    created_by: str | None = None,
) -> int:
    """Microsoft 365 with application permissions (client credentials): the app's own token,
    no user. The tenant must grant the app the *application* permissions Mail.ReadWrite and
    Mail.Send and limit them to chosen mailboxes (RBAC for Applications or an application
    access policy). Checks that the app can open ``mailbox`` first; raises ProviderError /
    ConfigError otherwise. Returns the new account's id."""
    from bot.providers.graph import GraphClient

    config = {**app_config(services.settings, MICROSOFT), "app_only": True}
    api = api_config(services.settings, MICROSOFT)
    source = TokenSource(app_from_config(MICROSOFT, config), {})
    with GraphClient(
        source, base_url=api.get("base_url"), ca_file=api.get("ca_file"), mailbox=mailbox
    ) as graph:
        me = graph.me()
        graph.folder("inbox")
    email = str(me.get("mail") or mailbox).strip().lower()
    return _store_app_account(
        services,
        Provider.GRAPH,
        email,
        config,
        source,
        {**api, "mailbox": email},
        channel_id=channel_id,
        interval=interval,
        auto_link=auto_link,
        created_by=created_by,
    )


def connect_gmail_service_account(
    services: Services,
    *,
    key: Mapping[str, Any],
    mailbox: str,
    channel_id: str | None,
    interval: int = 300,
    auto_link: bool = True,
    created_by: str | None = None,
) -> int:
    """A Google Workspace mailbox through a service account with domain-wide delegation
    (``key``: the service account's JSON key). Mailroom acts as ``mailbox``
    (``subject=``); checks access with ``getProfile`` first. Returns the account id."""
    from bot.providers.gmail import GmailClient

    overrides = dict(services.settings.oauth_overrides.get(GOOGLE) or {})
    config = {
        "client_id": str(key.get("client_email") or ""),
        "client_secret": str(key.get("private_key") or ""),
        "token_uri": str(key.get("token_uri") or "https://oauth2.googleapis.com/token"),
        "subject": mailbox.strip().lower(),
        **({"ca_file": overrides["ca_file"]} if overrides.get("ca_file") else {}),
    }
    api = api_config(services.settings, GOOGLE)
    source = TokenSource(app_from_config(GOOGLE, config), {})
    gmail = GmailClient(source, api_endpoint=api.get("base_url"), ca_file=api.get("ca_file"))
    email = str(gmail.profile().get("emailAddress") or mailbox).strip().lower()
    return _store_app_account(
        services,
        Provider.GMAIL,
        email,
        config,
        source,
        api,
        channel_id=channel_id,
        interval=interval,
        auto_link=auto_link,
        created_by=created_by,
    )


def _store_app_account(
    services: Services,
    provider: Provider,
    email: str,
    config: dict[str, Any],
    source: TokenSource,
    api: dict[str, Any],
    *,
    channel_id: str | None,
    interval: int,
    auto_link: bool,
    created_by: str | None,
) -> int:
    """Store a mailbox that the app reaches with its own credentials (no person signed in),
    once its access was checked. Returns the account id."""
    from bot.sync.api_sync import create_oauth_account

    with session_scope(services.session_factory) as s:
        account = create_oauth_account(
            s,
            services.vault,
            provider=provider,
            email=email,
            oauth=config,
            tokens=dict(source.tokens),
            channel_id=channel_id,
            api=api,
            sync_interval_seconds=interval,
            auto_link=auto_link,
            created_by=created_by,
        )
        return account.id


def _after(services: Services, slack_client: WebClient, request: ConnectRequest) -> None:
    """Best-effort Slack follow-ups: the account is stored whatever happens here."""
    from bot.home import publish_home

    if request.account_id is None and request.channel_id:
        try:
            slack_client.conversations_join(channel=request.channel_id)
        except Exception as exc:  # private channels need an invitation; posting says so
            log.info("could not join %s: %s", request.channel_id, exc)
    try:
        publish_home(services, slack_client, request.user_id)
    except Exception:
        log.exception("App Home refresh after an OAuth connection failed")


def provider_error(services: Services, error: str, description: str, state: str) -> str:
    """The message for a callback that carries ``error`` (the admin declined, or the
    provider refused the request) instead of a code."""
    provider = ""
    try:
        request = read_state(services, state)
        provider = request.provider
        _audit_failure(services, request, f"{error}: {description}"[:500])
    except StateError:
        pass
    company = COMPANIES.get(provider, "The sign-in service")
    if error == "access_denied":
        return (
            "You did not grant Mailroom access to the mailbox, so nothing was connected. "
            "To connect it, start again from the App Home and accept every permission asked for."
        )
    detail = f"{error}: {description}" if description else error
    return (
        f"{company} refused the sign-in ({detail[:300]}), so nothing was connected. "
        "Check the OAuth app settings (docs/oauth-providers.md), then start again from the "
        "App Home."
    )
