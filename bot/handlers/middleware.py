"""Global middleware: hand the services to every listener; drop Slack's duplicate events.

Nothing here writes to the database: middleware runs before the ack, and on SQLite a write
waits for the one write lock (a sync batch holds it), so a write here made Slack time out
during a big sync. Duplicate events are dropped by `first_delivery_only` inside the event
listener, which Bolt runs after it has acknowledged the event, and which records the event
id only after the listener's work."""

from __future__ import annotations

import inspect
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from sqlalchemy.exc import IntegrityError

from bot.services import Services
from bot.store.db import read_scope, session_scope
from bot.store.models import SlackEvent

log = logging.getLogger(__name__)


def services_of(context: BoltContext) -> Services:
    svc: Services = context["services"]
    return svc


class _Seen:
    """Event ids this process has taken, newest last (bounded)."""

    def __init__(self, size: int = 10_000) -> None:
        self.ids: OrderedDict[str, None] = OrderedDict()
        self.size = size
        self.lock = threading.Lock()

    def take(self, event_id: str) -> bool:
        """True the first time an id is seen here."""
        with self.lock:
            if event_id in self.ids:
                return False
            self.ids[event_id] = None
            while len(self.ids) > self.size:
                self.ids.popitem(last=False)
            return True


def first_delivery_only(fn: Callable[..., None]) -> Callable[..., None]:
    """Wrap an Events API listener: Slack delivers events at least once (retries carry
    X-Slack-Retry-Num); a redelivery is dropped.

    Bolt acknowledges an event before it runs the listener, so nothing here delays the ack,
    and the listener's own work (reads: the App Home) waits for no writer either: a retry is
    recognised in this process's memory or by a read of the ids other processes recorded,
    and the id is recorded (one short write) after the work. Two deliveries racing across
    processes can both run; the events handled here are safe to handle twice (publishing
    the Home again, a log line). `fn` gets the subset of (body, context, event, client) it
    names."""
    wanted = inspect.getfullargspec(fn).args
    seen = _Seen()

    def listener(
        body: dict[str, Any], context: BoltContext, event: dict[str, Any], client: WebClient
    ) -> None:
        event_id = str(body.get("event_id") or "")
        services = services_of(context)
        if event_id:
            if not seen.take(event_id):
                log.info("duplicate Slack event %s dropped", event_id)
                return
            with read_scope(services.session_factory) as session:
                if session.get(SlackEvent, event_id) is not None:
                    log.info("duplicate Slack event %s dropped (seen by another process)", event_id)
                    return
        given: dict[str, Any] = {"body": body, "context": context, "event": event}
        given["client"] = client
        try:
            fn(**{name: given[name] for name in wanted})
        finally:
            if event_id:
                _record(services, event_id)

    listener.__name__ = fn.__name__
    listener.__qualname__ = fn.__qualname__
    return listener


def _record(services: Services, event_id: str) -> None:
    try:
        with session_scope(services.session_factory) as session:
            session.add(SlackEvent(event_id=event_id))
    except IntegrityError:
        pass  # another process recorded it meanwhile
    except Exception:  # best effort: the in-process memory still drops retries here
        log.warning("could not record Slack event %s", event_id, exc_info=True)


def register(app: App, services: Services) -> None:
    def inject_services(context: BoltContext, next: Callable[[], None]) -> None:
        context["services"] = services
        next()

    app.use(inject_services)
