"""Gmail and Microsoft 365 accounts: creating them, their tokens, and their API clients.

``Account.config`` = ``{"oauth": {client_id, tenant, redirect_uri, [token_uri,
authority_host, ca_file]}, "api": {[base_url, ca_file, full_sync_limit, page_size]}}``;
``Account.credentials`` = Vault JSON ``{client_secret, access_token, refresh_token,
expires_at, scope}``. Tokens are refreshed by bot.providers.oauth.TokenSource and saved
back here in their own short transaction (the one token path, peers.md row 13).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.crypto import Vault
from bot.providers.errors import AuthError, ConfigError
from bot.providers.gmail import GmailClient
from bot.providers.graph import GraphClient
from bot.providers.oauth import REAUTH, OAuthApp, TokenSource, app_from_config
from bot.services import Services
from bot.store.db import SessionFactory, session_scope
from bot.store.models import (
    Account,
    AccountStatus,
    AuditLog,
    Provider,
)

log = logging.getLogger(__name__)


def _secrets(vault: Vault, account: Account) -> dict[str, Any]:
    if not account.credentials:
        raise AuthError(f"{account.email} has no stored tokens and {REAUTH}.")
    return vault.decrypt(account.credentials)


def oauth_app(vault: Vault, account: Account) -> OAuthApp:
    config = dict((account.config or {}).get("oauth") or {})
    config["client_secret"] = _secrets(vault, account).get("client_secret")
    return app_from_config(account.provider.value, config)


def _saver(
    factory: SessionFactory, vault: Vault, account_id: int
) -> Callable[[dict[str, Any]], None]:
    def save(tokens: dict[str, Any]) -> None:
        with session_scope(factory) as s:
            acc = s.get_one(Account, account_id)
            data = vault.decrypt(acc.credentials) if acc.credentials else {}
            data.update({k: v for k, v in tokens.items() if k != "email"})
            acc.credentials = vault.encrypt(data)

    return save


def token_source(services: Services, account: Account) -> TokenSource:
    data = _secrets(services.vault, account)
    tokens = {k: data.get(k) for k in ("access_token", "refresh_token", "expires_at")}
    return TokenSource(
        oauth_app(services.vault, account),
        tokens,
        save=_saver(services.session_factory, services.vault, account.id),
    )


def api_config(account: Account) -> dict[str, Any]:
    return dict((account.config or {}).get("api") or {})


def gmail_client(services: Services, account: Account) -> GmailClient:
    api = api_config(account)
    return GmailClient(
        token_source(services, account),
        api_endpoint=api.get("base_url"),
        ca_file=api.get("ca_file"),
    )


def graph_client(services: Services, account: Account) -> GraphClient:
    api = api_config(account)
    return GraphClient(
        token_source(services, account),
        base_url=api.get("base_url"),
        ca_file=api.get("ca_file"),
        page_size=int(api.get("page_size") or 50),
        # A shared mailbox (or another user's) reached as /users/{mailbox}/…
        mailbox=str(api.get("mailbox") or "") or None,
        slot_key=f"account:{account.id}",  # Graph's 4 concurrent requests per mailbox
    )


def create_oauth_account(
    session: Session,
    vault: Vault,
    *,
    provider: Provider,
    email: str,
    oauth: dict[str, Any],
    tokens: dict[str, Any],
    channel_id: str | None,
    api: dict[str, Any] | None = None,
    sync_interval_seconds: int = 300,
    folders: Sequence[str] = (),
    auto_link: bool = True,
    created_by: str | None = None,
) -> Account:
    """Add a Gmail / Microsoft 365 account after a successful :func:`exchange_code`.
    ``oauth`` is the app config including ``client_secret`` (kept encrypted)."""
    if provider not in (Provider.GMAIL, Provider.GRAPH):
        raise ConfigError(f"{provider} is not an OAuth provider")
    app_from_config(provider.value, oauth)  # validates
    from bot.accounts import AccountError, add_account_row

    public = {k: v for k, v in oauth.items() if k != "client_secret"}
    secrets: dict[str, Any] = {
        k: tokens.get(k) for k in ("access_token", "refresh_token", "expires_at", "scope")
    }
    secrets.update({k: tokens[k] for k in ("oid", "tid") if tokens.get(k)})
    try:
        return add_account_row(
            session,
            provider=provider,
            email=email,
            config={"oauth": public, "api": dict(api or {})},
            credentials=vault.encrypt({"client_secret": oauth.get("client_secret"), **secrets}),
            channel_id=channel_id,
            sync_interval_seconds=sync_interval_seconds,
            folders=folders,
            auto_link=auto_link,
            created_by=created_by,
        )
    except AccountError as exc:
        raise ConfigError(str(exc)) from exc


def store_tokens(
    session: Session,
    vault: Vault,
    account: Account,
    tokens: dict[str, Any],
    *,
    actor: str = "system",
) -> None:
    """Reconnect: new tokens from a fresh consent; the account syncs again at once."""
    data = vault.decrypt(account.credentials) if account.credentials else {}
    data.update(
        {k: tokens.get(k) for k in ("access_token", "refresh_token", "expires_at", "scope")}
    )
    data.update({k: tokens[k] for k in ("oid", "tid") if tokens.get(k)})
    account.credentials = vault.encrypt(data)
    account.status = AccountStatus.ACTIVE
    account.consecutive_failures = 0
    account.last_error = None
    account.next_sync_at = datetime.now(UTC)
    session.add(
        AuditLog(actor=actor, action="account.reconnect", account_id=account.id, details={})
    )


def load_account(services: Services, account_id: int) -> Account:
    with session_scope(services.session_factory) as s:
        account = s.get_one(Account, account_id)
        s.expunge(account)
    if account.provider not in (Provider.GMAIL, Provider.GRAPH):
        raise ConfigError(f"{account.email} is not a Gmail or Microsoft 365 account")
    return account
