"""Global middleware: hand the services to every listener, and drop Slack's duplicate events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltContext, BoltResponse
from sqlalchemy.exc import IntegrityError

from bot.services import Services
from bot.store.db import session_scope
from bot.store.models import SlackEvent

log = logging.getLogger(__name__)


def services_of(context: BoltContext) -> Services:
    svc: Services = context["services"]
    return svc


def register(app: App, services: Services) -> None:
    def inject_services(context: BoltContext, next: Callable[[], None]) -> None:
        context["services"] = services
        next()

    def dedupe_events(body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:
        # Slack delivers events at least once (retries carry X-Slack-Retry-Num). The first
        # delivery records the event id; any later one is acknowledged and dropped.
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if not event_id:
            next()
            return None
        try:
            with session_scope(services.session_factory) as session:
                session.add(SlackEvent(event_id=str(event_id)))
        except IntegrityError:
            log.info("duplicate Slack event %s dropped", event_id)
            return BoltResponse(status=200, body="")
        next()
        return None

    app.use(inject_services)
    app.use(dedupe_events)
