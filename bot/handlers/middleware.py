"""Global middleware: hand the services to every listener; drop Slack's duplicate events.

Nothing here writes to the database: middleware runs before the ack, and on SQLite a write
waits for the one write lock (a sync batch holds it), so a write here made Slack time out
during a big sync. Duplicate events are dropped by `first_delivery_only` inside the event
listener, which Bolt runs after it has acknowledged the event."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from sqlalchemy.exc import IntegrityError

from bot.services import Services
from bot.store.db import session_scope
from bot.store.models import SlackEvent

log = logging.getLogger(__name__)


def services_of(context: BoltContext) -> Services:
    svc: Services = context["services"]
    return svc


def first_delivery_only(fn: Callable[..., None]) -> Callable[..., None]:
    """Wrap an Events API listener: Slack delivers events at least once (retries carry
    X-Slack-Retry-Num). The first delivery records the event id and runs `fn`; a later one
    is dropped. Bolt acknowledges events before it runs the listener, so the write never
    delays the ack. `fn` gets the subset of (body, context, event, client) it names."""
    wanted = inspect.getfullargspec(fn).args

    def listener(
        body: dict[str, Any], context: BoltContext, event: dict[str, Any], client: WebClient
    ) -> None:
        event_id = body.get("event_id")
        if event_id:
            try:
                with session_scope(services_of(context).session_factory) as session:
                    session.add(SlackEvent(event_id=str(event_id)))
            except IntegrityError:
                log.info("duplicate Slack event %s dropped", event_id)
                return
        given: dict[str, Any] = {"body": body, "context": context, "event": event}
        given["client"] = client
        fn(**{name: given[name] for name in wanted})

    listener.__name__ = fn.__name__
    listener.__qualname__ = fn.__qualname__
    return listener


def register(app: App, services: Services) -> None:
    def inject_services(context: BoltContext, next: Callable[[], None]) -> None:
        context["services"] = services
        next()

    app.use(inject_services)
