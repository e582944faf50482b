"""The background worker: sync scheduler and outbox dispatcher (filled in by the sync engine)."""

from __future__ import annotations

import logging
import threading

from slack_sdk import WebClient

from bot.services import Services

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, services: Services, client: WebClient) -> None:
        self.services = services
        self.client = client
        self._stop = threading.Event()

    def start(self) -> None:
        log.info("worker started (no sync engine yet)")

    def stop(self) -> None:
        self._stop.set()

    def run_forever(self) -> None:
        self.start()
        self._stop.wait()
