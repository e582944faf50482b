"""The snooze waker: a worker loop that brings snoozed conversations back when their time
comes, and clears "is replying" marks whose modal never told us it closed.

Safe in every replica: due conversations are claimed with `FOR UPDATE SKIP LOCKED` and each
wake is a conditional UPDATE, so a snooze wakes once however many workers run. Snoozes are rows
in the database, so they survive restarts and a worker moving to another process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from bot.services import Services
from bot.store.models import utcnow

log = logging.getLogger(__name__)


class SnoozeWaker:
    def __init__(
        self,
        services: Services,
        *,
        tick_seconds: float = 15.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.services = services
        self.tick_seconds = tick_seconds
        self.clock = clock  # injectable: tests run a fast clock

    def tick(self) -> list[int]:
        from bot.inbox.triage import wake_due

        return wake_due(self.services, now=self.clock())

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # a bad tick must not end the loop; the next one retries
                log.exception("snooze waker tick failed")
            stop.wait(self.tick_seconds)
