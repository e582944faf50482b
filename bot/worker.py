"""The background worker: the sync scheduler (with IDLE watchers) and the outbox dispatcher.

Both are safe to run in several replicas: accounts and outbox rows are claimed with leases.
"""

from __future__ import annotations

import logging
import threading

from slack_sdk import WebClient

from bot.services import Services

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        services: Services,
        client: WebClient,
        *,
        tick_seconds: float = 5.0,
        sync_threads: int = 3,
        idle: bool = True,
        outbox_runners: int | None = None,
    ) -> None:
        from bot.outbox.dispatch import Dispatcher
        from bot.sync.scheduler import SyncScheduler

        self.services = services
        self.client = client
        self._stop = threading.Event()
        self.scheduler = SyncScheduler(
            services, tick_seconds=tick_seconds, max_workers=sync_threads, idle=idle
        )
        # Outbox effects of different lanes (channels, accounts' sends and write-back) run side
        # by side on the dispatcher's runner threads (docs/outbox.md).
        self.dispatcher = (
            Dispatcher(services, client, runners=outbox_runners)
            if outbox_runners
            else Dispatcher(services, client)
        )
        self._outbox_thread: threading.Thread | None = None
        from bot.sync.snooze import SnoozeWaker

        self.snoozes = SnoozeWaker(services)  # snoozed conversations come back (issue 16)
        self._snooze_thread: threading.Thread | None = None
        from bot.sync.push import PushKeeper

        # Gmail watches and Graph subscriptions: opened, renewed, closed (issue 18).
        self.push = PushKeeper(services, owner=self.scheduler.owner)
        self._push_thread: threading.Thread | None = None
        self._pull_thread: threading.Thread | None = None

    def start(self) -> None:
        self.scheduler.start()
        self._outbox_thread = threading.Thread(
            target=self.dispatcher.run_forever, args=(self._stop,), name="outbox", daemon=True
        )
        self._outbox_thread.start()
        self._snooze_thread = threading.Thread(
            target=self.snoozes.run_forever, args=(self._stop,), name="snoozes", daemon=True
        )
        self._snooze_thread.start()
        self._push_thread = threading.Thread(
            target=self.push.run_forever, args=(self._stop,), name="push", daemon=True
        )
        self._push_thread.start()
        if self.services.settings.gmail_pull_subscription:
            from bot.sync.push import GmailPuller

            puller = GmailPuller(self.services, on_due=self.scheduler.trigger)
            self._pull_thread = threading.Thread(
                target=puller.run_forever, args=(self._stop,), name="gmail-pull", daemon=True
            )
            self._pull_thread.start()
        log.info("worker started: sync scheduler, IDLE watchers and outbox dispatcher")

    def stop(self) -> None:
        self._stop.set()
        self.scheduler.stop()
        if self._outbox_thread is not None:
            self._outbox_thread.join(timeout=30)
        if self._snooze_thread is not None:
            self._snooze_thread.join(timeout=30)
        if self._push_thread is not None:
            self._push_thread.join(timeout=30)
        if self._pull_thread is not None:
            self._pull_thread.join(timeout=70)  # a pull may be held open up to a minute
        self.dispatcher.close()

    def run_forever(self) -> None:
        self.start()
        try:
            self._stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
