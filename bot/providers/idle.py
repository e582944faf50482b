"""Keep one IMAP connection in IDLE on one folder and call back on every change.

IDLE only watches the selected folder, so each watched folder needs its own watcher.
The callback is a trigger for the normal UID/MODSEQ sync, not a data source: it runs
after every reported change and after every (re)connect, since changes made while
disconnected are never reported.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from bot.providers.errors import AuthError, NotSupported, ProviderError
from bot.providers.imap import ImapProvider
from bot.providers.types import ImapSettings

log = logging.getLogger(__name__)


class IdleWatcher:
    """A background thread: IDLE on ``folder``; ``on_change()`` when something happens.

    * IDLE is re-issued at least every ``reissue_seconds`` (default 20 min, well below
      the 29-minute limit; NATs often drop quiet connections sooner).
    * After an error the connection is rebuilt with exponential backoff from
      ``backoff_initial`` to ``backoff_max`` seconds (with jitter), reset after a
      successful connect. ``on_error(exc)`` is told about each error.
    * ``stop()`` returns within about ``poll_seconds`` plus a logout.
    """

    def __init__(
        self,
        settings: ImapSettings,
        password: str,
        folder: str,
        on_change: Callable[[], None],
        *,
        on_error: Callable[[ProviderError], None] | None = None,
        reissue_seconds: float = 20 * 60,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self.settings = settings
        self._password = password
        self.folder = folder
        self._on_change = on_change
        self._on_error = on_error
        self.reissue_seconds = min(reissue_seconds, 25 * 60)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.connects = 0

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("IdleWatcher already started")
        self._thread = threading.Thread(
            target=self._run, name=f"imap-idle-{self.settings.username}-{self.folder}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        delay = self.backoff_initial
        while not self._stop.is_set():
            provider = ImapProvider(self.settings, self._password)
            try:
                provider.connect()
                if "IDLE" not in provider.capabilities:
                    raise NotSupported(
                        f"The IMAP server {self.settings.host} does not support IDLE; "
                        "poll this folder instead."
                    )
                provider.select(self.folder)
                self.connects += 1
                delay = self.backoff_initial
                self._notify()  # anything may have happened while we were away
                self._idle_loop(provider)
            except ProviderError as exc:
                self.errors += 1
                log.warning("IDLE on %s failed: %s", self.folder, type(exc).__name__)
                if self._on_error is not None:
                    self._safe(self._on_error, exc)
                if isinstance(exc, NotSupported):
                    return  # retrying cannot help
                # Credentials will not fix themselves quickly: wait the longest.
                wait = self.backoff_max if isinstance(exc, AuthError) else delay
                self._stop.wait(wait * (0.8 + 0.4 * random.random()))
                delay = min(delay * 2, self.backoff_max)
            finally:
                provider.close()

    def _idle_loop(self, provider: ImapProvider) -> None:
        while not self._stop.is_set():
            # One IDLE per reissue period; the interrupt check keeps stop() prompt.
            changed = provider.idle_wait(
                self.folder,
                self.reissue_seconds,
                interrupt=self._stop.is_set,
                poll_seconds=self.poll_seconds,
            )
            if changed and not self._stop.is_set():
                self._notify()

    def _notify(self) -> None:
        self._safe(self._on_change)

    @staticmethod
    def _safe(fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:  # a broken callback must not kill the watcher
            log.exception("IDLE callback failed")
