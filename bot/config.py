"""All configuration, read from the environment (and a `.env` file) in one place.

Nothing else in `bot/` reads `os.environ`: settings are passed down as a `Settings` object.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import load_dotenv

log = logging.getLogger(__name__)

MANIFEST_HINT = (
    "Create the Slack app from `manifest.dev.yml` (Socket Mode) or `manifest.prod.yml` (HTTP) "
    "at https://api.slack.com/apps → Create New App → From a manifest, install it to your "
    "workspace, then copy the tokens as the README's 'Create the Slack app' section shows."
)

# Every setting, with what it is for. tests/test_docs.py checks each one is documented.
SETTINGS_HELP: dict[str, str] = {
    "SLACK_BOT_TOKEN": "Bot token (xoxb-…) from OAuth & Permissions.",
    "SLACK_APP_TOKEN": "App-level token (xapp-…, scope connections:write): turns on Socket Mode.",
    "SLACK_SIGNING_SECRET": "Signing secret from Basic Information: needed for HTTP mode.",
    "SLACK_API_URL": "Web API base URL (default https://slack.com/api/); GovSlack and tests.",
    "SLACK_FILES_URL": (
        "Origin Slack serves files from (default https://files.slack.com); the only host the "
        "bot token is sent to for a file download. GovSlack and tests."
    ),
    "PORT": "HTTP port in HTTP mode (default 3000).",
    "DATABASE_URL": "SQLAlchemy URL; default a SQLite file in the data folder.",
    "MAILROOM_DATA_DIR": "Folder for the SQLite file and the generated secret key (default ./data).",
    "MAILROOM_SECRET_KEY": "Fernet key encrypting credentials at rest; required with PostgreSQL.",
    "MAILROOM_ADMINS": "Comma-separated Slack user ids that may manage accounts and templates.",
    "MAILROOM_RUN_WORKER": "In `serve`, also run the sync worker in-process (default 1).",
    "MAILROOM_LOG_LEVEL": "Logging level (default INFO).",
    "MAILROOM_PUBLIC_URL": (
        "https base URL where Mailroom's /oauth/callback is reachable (e.g. "
        "https://mailroom.example.com); needed to connect Gmail and Microsoft 365 accounts."
    ),
    "GOOGLE_CLIENT_ID": "Client id of the Google Cloud OAuth client (Gmail accounts).",
    "GOOGLE_CLIENT_SECRET": "Client secret of the Google Cloud OAuth client (Gmail accounts).",
    "MICROSOFT_CLIENT_ID": "Application (client) id of the Entra ID app (Microsoft 365 accounts).",
    "MICROSOFT_CLIENT_SECRET": "Client secret of the Entra ID app (Microsoft 365 accounts).",
    "MICROSOFT_TENANT": (
        "Directory (tenant) id or domain of the Entra ID app; `organizations` for a "
        "multi-tenant app. No default: a wrong guess fails only after sign-in (AADSTS50194)."
    ),
    "MAILROOM_GMAIL_PUSH_TOPIC": (
        "Cloud Pub/Sub topic (projects/P/topics/T) Gmail publishes to: turns on Gmail push "
        "(users.watch). Unset: Gmail accounts are polled at least every 60 s."
    ),
    "MAILROOM_GMAIL_PUSH_SERVICE_ACCOUNT": (
        "Email of the service account the Pub/Sub push subscription signs its tokens with; "
        "pushes signed by anyone else are refused. Required with MAILROOM_GMAIL_PUSH_TOPIC."
    ),
    "MAILROOM_GMAIL_PUSH_AUDIENCE": (
        "Audience of the push subscription's token (default MAILROOM_PUBLIC_URL/push/gmail)."
    ),
    "MAILROOM_GMAIL_PULL_SUBSCRIPTION": (
        "Pub/Sub pull subscription (projects/P/subscriptions/S) on the Gmail topic: the worker "
        "pulls notifications instead of receiving pushes (no public URL needed)."
    ),
    "MAILROOM_GMAIL_PULL_CREDENTIALS": (
        "Service-account key file (JSON) allowed to pull that subscription (Pub/Sub "
        "Subscriber); default: Application Default Credentials."
    ),
    "MAILROOM_GRAPH_PUSH": (
        "1: Microsoft 365 accounts get Graph change notifications at MAILROOM_PUBLIC_URL/"
        "push/graph (public https). Default 0: polled at least every 60 s."
    ),
}

#: Where Google publishes the keys its OIDC tokens (Pub/Sub push) are signed with.
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class ConfigError(Exception):
    """The configuration cannot work; the message says what to set."""


@dataclass(frozen=True)
class Settings:
    # Secrets never show in repr(): a log line, a traceback with locals or a failing test's
    # output would otherwise print them (security review #26). The database URL may carry a
    # password.
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_api_url: str | None = None
    port: int = 3000
    database_url: str = field(default="", repr=False)
    data_dir: Path = Path("data")
    secret_key: str | None = field(default=None, repr=False)
    admins: frozenset[str] = field(default_factory=frozenset)
    run_worker: bool = True
    log_level: str = "INFO"
    public_url: str | None = None  # no trailing slash
    google_client_id: str | None = None
    google_client_secret: str | None = field(default=None, repr=False)
    microsoft_client_id: str | None = None
    microsoft_client_secret: str | None = field(default=None, repr=False)
    microsoft_tenant: str | None = None
    # Not from the environment: tests (and sovereign clouds, via code) point the OAuth and API
    # endpoints elsewhere. Per provider ("gmail" / "graph"): keys merged into the OAuth app
    # config (token_uri, auth_uri, authority_host, ca_file...), and "api" for Account.config.
    oauth_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    # Where Slack serves files: the only origin the bot token is sent to for a download.
    # GovSlack, and tests (the fake Slack serves files on loopback), set it explicitly.
    slack_files_url: str = "https://files.slack.com"
    # Push notifications (docs/oauth-providers.md "Push notifications").
    gmail_push_topic: str | None = None
    gmail_push_service_account: str | None = None
    gmail_push_audience: str | None = None
    gmail_pull_subscription: str | None = None
    gmail_pull_credentials: str | None = None
    graph_push: bool = False
    google_certs_url: str = GOOGLE_CERTS_URL  # not from the environment: tests' fake keys
    pubsub_api_url: str = "https://pubsub.googleapis.com/v1"  # likewise

    @property
    def gmail_push(self) -> bool:
        """Gmail accounts are watched: notifications arrive by push or are pulled."""
        return bool(
            self.gmail_push_topic
            and (self.gmail_push_service_account or self.gmail_pull_subscription)
        )

    @property
    def gmail_push_expected_audience(self) -> str | None:
        if self.gmail_push_audience:
            return self.gmail_push_audience
        return f"{self.public_url}/push/gmail" if self.public_url else None

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def missing_for_serve(self) -> list[str]:
        """Names of the variables `mailroom serve` still needs, with what each is for."""
        missing = []
        if not self.slack_bot_token:
            missing.append("SLACK_BOT_TOKEN")
        if not self.slack_app_token and not self.slack_signing_secret:
            missing.append("SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode)")
        return missing


def normalize_public_url(value: str | None) -> str | None:
    """The base URL OAuth providers redirect back to. https, except on loopback (Google and
    Microsoft accept http://localhost redirect URIs for development)."""
    if not value or not value.strip():
        return None
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    ok_scheme = parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK_HOSTS)
    if not ok_scheme or not host or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(
            f"MAILROOM_PUBLIC_URL must be an https URL such as https://mailroom.example.com "
            f"(http only for localhost), got {value!r}"
        )
    return url


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def normalize_database_url(url: str) -> str:
    """Accept the `postgres://` / `postgresql://` URLs hosts hand out; use psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def load_settings(env: dict[str, str] | None = None, *, dotenv: bool = True) -> Settings:
    """Build settings from `env` (default: the process environment plus `.env`)."""
    if env is None:
        if dotenv:
            load_dotenv(Path.cwd() / ".env", override=False)
        env = dict(os.environ)
    data_dir = Path(env.get("MAILROOM_DATA_DIR") or "data")
    database_url = env.get("DATABASE_URL") or f"sqlite:///{(data_dir / 'mailroom.db').as_posix()}"
    admins = frozenset(
        a.strip() for a in (env.get("MAILROOM_ADMINS") or "").split(",") if a.strip()
    )
    try:
        port = int(env.get("PORT") or "3000")
    except ValueError as exc:
        raise ConfigError(f"PORT must be a number, got {env.get('PORT')!r}") from exc
    return Settings(
        slack_bot_token=env.get("SLACK_BOT_TOKEN") or None,
        slack_app_token=env.get("SLACK_APP_TOKEN") or None,
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
        slack_api_url=env.get("SLACK_API_URL") or None,
        slack_files_url=(env.get("SLACK_FILES_URL") or "").strip().rstrip("/")
        or "https://files.slack.com",
        port=port,
        database_url=normalize_database_url(database_url),
        data_dir=data_dir,
        secret_key=env.get("MAILROOM_SECRET_KEY") or None,
        admins=admins,
        run_worker=_bool(env.get("MAILROOM_RUN_WORKER"), True),
        log_level=(env.get("MAILROOM_LOG_LEVEL") or "INFO").upper(),
        public_url=normalize_public_url(env.get("MAILROOM_PUBLIC_URL")),
        google_client_id=(env.get("GOOGLE_CLIENT_ID") or "").strip() or None,
        google_client_secret=env.get("GOOGLE_CLIENT_SECRET") or None,
        microsoft_client_id=(env.get("MICROSOFT_CLIENT_ID") or "").strip() or None,
        microsoft_client_secret=env.get("MICROSOFT_CLIENT_SECRET") or None,
        microsoft_tenant=(env.get("MICROSOFT_TENANT") or "").strip().strip("/") or None,
        gmail_push_topic=(env.get("MAILROOM_GMAIL_PUSH_TOPIC") or "").strip() or None,
        gmail_push_service_account=(
            (env.get("MAILROOM_GMAIL_PUSH_SERVICE_ACCOUNT") or "").strip().lower() or None
        ),
        gmail_push_audience=(env.get("MAILROOM_GMAIL_PUSH_AUDIENCE") or "").strip() or None,
        gmail_pull_subscription=(env.get("MAILROOM_GMAIL_PULL_SUBSCRIPTION") or "").strip() or None,
        gmail_pull_credentials=(env.get("MAILROOM_GMAIL_PULL_CREDENTIALS") or "").strip() or None,
        graph_push=_bool(env.get("MAILROOM_GRAPH_PUSH"), False),
    )
