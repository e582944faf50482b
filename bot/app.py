"""Building the Bolt app and the services it runs on."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.access import AccessControl
from bot.config import Settings
from bot.crypto import load_vault
from bot.services import Services
from bot.store.db import make_engine, make_session_factory

if TYPE_CHECKING:
    # Imported where used: `mailroom sync --once` and `accounts …` build services without
    # Bolt, the listeners or the Slack client (issue 19: start-up time and memory).
    from slack_bolt import App
    from slack_sdk import WebClient

log = logging.getLogger(__name__)

LISTENER_THREADS = 16


def make_services(settings: Settings) -> Services:
    engine = make_engine(settings.database_url)
    return Services(
        settings=settings,
        session_factory=make_session_factory(engine),
        vault=load_vault(settings),
        access=AccessControl(settings.admins),
    )


def make_web_client(settings: Settings) -> WebClient:
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    client = WebClient(
        token=settings.slack_bot_token, base_url=settings.slack_api_url or WebClient.BASE_URL
    )
    # Interactive calls get one quick retry on 429; bulk posting is paced by the outbox instead.
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    return client


def create_app(services: Services) -> App:
    from concurrent.futures import ThreadPoolExecutor

    from slack_bolt import App

    from bot.handlers import register_listeners

    settings = services.settings
    app = App(
        client=make_web_client(settings),
        signing_secret=settings.slack_signing_secret or "socket-mode-has-no-signing-secret",
        # Socket Mode requests are not signed; HTTP requests always are.
        request_verification_enabled=not settings.socket_mode,
        token_verification_enabled=False,  # no auth.test round trip at start-up
        listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS),
    )
    register_listeners(app, services)
    return app
